import { t } from "./i18n.js";

// A tiny element builder: h("div", {class: "x", onclick}, child, "text").
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name === "value") element.value = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function personName(value) {
  return (value || "").split("=")[0].split("^").filter(Boolean).join(" ");
}

// DICOM AS "005Y" -> "5 y" in the reader's language.
export function ageFrom(row) {
  if (!row.patient_age || row.patient_age.length !== 4) return row.patient_age || "";
  return `${Number(row.patient_age.slice(0, 3))} ${t(`age.${row.patient_age[3]}`)}`;
}

// The finding and score shown for a study, from the newest finished AI job.
export function aiSummary(row) {
  const job = (row.ai || []).find((j) => j.status === "done" && j.result);
  if (!job) {
    const pending = (row.ai || []).find((j) => j.status === "pending" || j.status === "running");
    return { state: pending ? "pending" : (row.ai || []).length ? (row.ai[0].status) : "none" };
  }
  const result = job.result;
  let best = null;
  for (const image of result.images || []) {
    for (const [name, score] of Object.entries(image.scores || {})) {
      if (name === "abnormal" || name === "abnormality") continue;
      if (!best || score > best.score) best = { name, score };
    }
  }
  const positive = [...new Set((result.images || []).flatMap((i) => i.positive || []))];
  return {
    state: "done", flagged: !!result.flagged, priority: result.priority ?? row.ai_priority,
    finding: positive.find((p) => p !== "abnormal" && p !== "abnormality") || (best && best.name) || "",
    positive, model: `${job.pipeline} ${job.model_version}`,
  };
}

// Acquisition modalities only: AI and report outputs (SR, OT, SEG...) are not what was imaged.
const DERIVED = new Set(["SR", "OT", "SEG", "PR", "KO", "SC"]);
export function modalities(value) {
  const all = (value || "").split("\\").filter(Boolean);
  const acquired = all.filter((m) => !DERIVED.has(m));
  return (acquired.length ? acquired : all).join(" ");
}
