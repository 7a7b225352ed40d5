// Kazakh, Russian and English catalogs from /api/i18n; dates in the reader's local format.
let catalog = {};
let language = "kk";
const LOCALES = { kk: "kk-KZ", ru: "ru-RU", en: "en-GB" };

export function currentLanguage() {
  return language;
}

export async function loadLanguage(lang) {
  const response = await fetch(`/api/i18n/${lang}`);
  catalog = await response.json();
  language = lang;
  localStorage.setItem("qoima.lang", lang);
  document.documentElement.lang = lang;
}

export function initialLanguage() {
  const saved = localStorage.getItem("qoima.lang");
  if (saved && LOCALES[saved]) return saved;
  const browser = (navigator.language || "kk").slice(0, 2);
  return LOCALES[browser] ? browser : "kk";
}

export function t(key, vars = {}) {
  let text = catalog[key] ?? (key.startsWith("finding.") ? key.slice(8) : key);
  for (const [name, value] of Object.entries(vars)) text = text.replace(`{${name}}`, value);
  return text;
}

// DICOM DA "YYYYMMDD" -> the local short date.
export function formatDicomDate(value) {
  if (!value || value.length !== 8) return value || "";
  // Browsers' ICU data for kk-KZ lacks month names ("2026 M11 25"): use the usual DD.MM.YYYY.
  if (language === "kk") return `${value.slice(6, 8)}.${value.slice(4, 6)}.${value.slice(0, 4)}`;
  const date = new Date(Date.UTC(+value.slice(0, 4), +value.slice(4, 6) - 1, +value.slice(6, 8)));
  return new Intl.DateTimeFormat(LOCALES[language], { dateStyle: "medium", timeZone: "UTC" }).format(date);
}

export function formatEpoch(seconds) {
  if (!seconds) return "";
  return new Intl.DateTimeFormat(LOCALES[language], { dateStyle: "short", timeStyle: "short" })
    .format(new Date(seconds * 1000));
}

export function formatWaiting(seconds) {
  const minutes = Math.max(0, Math.round((Date.now() / 1000 - seconds) / 60));
  if (minutes < 60) return t("waiting.minutes", { n: minutes });
  const hours = Math.round(minutes / 60);
  if (hours < 48) return t("waiting.hours", { n: hours });
  return t("waiting.days", { n: Math.round(hours / 24) });
}
