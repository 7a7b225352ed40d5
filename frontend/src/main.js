// Qoima web app: hash router, language switch and the "who are you" prompt.
import "./style.css";
import { currentUser, setCurrentUser } from "./api.js";
import { h } from "./dom.js";
import { initialLanguage, loadLanguage, t, currentLanguage } from "./i18n.js";
import { renderPatientSearch } from "./patient.js";
import { renderStudy } from "./study.js";
import { renderWorklist } from "./worklist.js";

const app = document.getElementById("app");
const main = h("main", { id: "main" });
let cleanup = () => {};

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function header() {
  const language = h("select", { "data-testid": "language", onchange: async () => { await loadLanguage(language.value); render(); } },
    [["kk", "Қазақша"], ["ru", "Русский"], ["en", "English"]].map(([code, label]) => h("option", { value: code, selected: currentLanguage() === code }, label)));
  return h("header", { class: "top" },
    h("a", { class: "brand", href: "#/" }, "Qoima"),
    h("nav", {}, h("a", { href: "#/" }, t("nav.worklist")), h("a", { href: "#/patient" }, t("nav.patient"))),
    h("div", { class: "who" }, `${t("who.you_are")}: `, h("b", { "data-testid": "user-name" }, currentUser()),
      h("button", { type: "button", class: "link", onclick: () => { setCurrentUser(""); render(); } }, t("who.change"))),
    language);
}

function whoAreYou() {
  const input = h("input", { name: "user", required: true, autofocus: true, "data-testid": "who-input" });
  main.replaceChildren(h("form", { class: "who-form", onsubmit: (e) => { e.preventDefault(); setCurrentUser(input.value); render(); } },
    h("h1", {}, t("who.title")), h("p", { class: "muted" }, t("who.note")), input, h("button", { type: "submit", "data-testid": "who-submit" }, t("who.continue"))));
}

async function route() {
  cleanup();
  cleanup = () => {};
  if (!currentUser()) { whoAreYou(); return; }
  const [, page, arg] = (location.hash || "#/").split("/");
  if (page === "study" && arg) cleanup = (await renderStudy(main, navigate, arg)) || (() => {});
  else if (page === "patient") renderPatientSearch(main, navigate, decodeURIComponent(arg || ""));
  else cleanup = renderWorklist(main, navigate);
}

function render() {
  app.replaceChildren(header(), main);
  route();
}

window.addEventListener("hashchange", route);
loadLanguage(initialLanguage()).then(render);
