// The AI-prioritised worklist: filters, paging, live refresh, claim-and-open.
import { api, currentUser } from "./api.js";
import { aiSummary, ageFrom, h, modalities, personName } from "./dom.js";
import { formatDicomDate, formatWaiting, t } from "./i18n.js";

const REFRESH_MS = 5000;
const PAGE = 50;

export function renderWorklist(root, navigate) {
  const state = JSON.parse(sessionStorage.getItem("qoima.filters") || "{}");
  state.status = state.status || "unreported";
  let offset = 0;
  let timer = null;
  const body = h("tbody");
  const summary = h("div", { class: "summary", "data-testid": "worklist-summary" });
  const pager = h("div", { class: "pager" });
  const filters = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); offset = 0; refresh(); } });

  function select(name, options, labelKey) {
    const element = h("select", { name, onchange: () => { state[name] = element.value; offset = 0; refresh(); } },
      h("option", { value: "" }, t("filter.any")),
      options.map(([value, label]) => h("option", { value, selected: state[name] === value }, label)));
    if (name === "status") element.firstChild.remove();
    return h("label", {}, t(labelKey), element);
  }

  function dateInput(name, labelKey) {
    const element = h("input", { type: "date", name, value: state[name] || "",
      onchange: () => { state[name] = element.value; offset = 0; refresh(); } });
    return h("label", {}, t(labelKey), element);
  }

  api("/api/facets").then((facets) => {
    filters.append(
      select("status", ["unreported", "claimed", "draft", "signed", "all"].map((s) => [s, t(`status.${s}`)]), "filter.status"),
      select("ai", ["flagged", "clear", "pending"].map((s) => [s, t(`ai.${s}`)]), "filter.ai"),
      select("region", facets.regions.map((r) => [r, r]), "filter.region"),
      select("facility", facets.institutions.map((r) => [r, r]), "filter.facility"),
      select("modality", facets.modalities.map((r) => [r, r]), "filter.modality"),
      dateInput("date_from", "filter.date_from"),
      dateInput("date_to", "filter.date_to"),
    );
  });

  const table = h("table", { class: "worklist", "data-testid": "worklist" },
    h("thead", {}, h("tr", {}, ["col.priority", "col.patient", "col.iin", "col.age_sex", "col.facility",
      "col.modality", "col.study_date", "col.ai", "col.waiting", "col.status"].map((k) => h("th", {}, t(k))))),
    body);

  // Opening claims the study; when a colleague holds it, it opens to view only (the report
  // panel says who is reading it).
  async function open(row) {
    try {
      if (row.report_status !== "signed") await api(`/api/studies/${row.study_instance_uid}/claim`, { method: "POST" });
    } catch (error) {
      if (error.status !== 409) { summary.textContent = error.message; return; }
    }
    navigate(`#/study/${row.study_instance_uid}`);
  }

  function statusCell(row) {
    if (row.report_status === "signed") return h("span", { class: "badge signed" }, t("status.signed"));
    if (row.claim_owner) {
      const mine = row.claim_owner === currentUser();
      return h("span", { class: `badge ${mine ? "mine" : "claimed"}` }, t(mine ? "status.claimed_by_me" : "status.claimed_by", { owner: row.claim_owner }));
    }
    if (row.report_status === "draft") return h("span", { class: "badge draft" }, t("status.draft"));
    return h("span", { class: "badge new" }, t("status.unread"));
  }

  function aiCell(row) {
    const ai = aiSummary(row);
    if (ai.state !== "done") return h("span", { class: "ai muted" }, t(`ai.state.${ai.state}`));
    return h("span", { class: `ai ${ai.flagged ? "flagged" : "clear"}`, title: ai.model },
      ai.flagged ? `⚠ ${t(`finding.${ai.finding}`) || ai.finding}` : t("ai.no_finding"),
      " ", h("b", {}, (ai.priority ?? 0).toFixed(2)));
  }

  function renderRows(items) {
    body.replaceChildren(...items.map((row) => h("tr", {
      class: aiSummary(row).flagged ? "row flagged" : "row", tabindex: 0, "data-study": row.study_instance_uid,
      "data-priority": row.ai_priority ?? -1, "data-created": row.created_at,
      onclick: () => open(row), onkeydown: (e) => { if (e.key === "Enter") open(row); },
    },
    h("td", {}, row.ai_priority === null ? "–" : h("div", { class: "bar" }, h("i", { style: `width:${Math.round(row.ai_priority * 100)}%` }))),
    h("td", { class: "name" }, personName(row.patient_name)),
    h("td", {}, h("a", { href: `#/patient/${row.patient_id}`, onclick: (e) => e.stopPropagation() }, row.patient_id || "")),
    h("td", {}, `${ageFrom(row)} ${t(`sex.${row.patient_sex || "O"}`)}`),
    h("td", {}, row.institution_name || "", h("div", { class: "muted" }, row.region || "")),
    h("td", {}, modalities(row.modalities_in_study)),
    h("td", {}, formatDicomDate(row.study_date)),
    h("td", {}, aiCell(row)),
    h("td", {}, formatWaiting(row.created_at)),
    h("td", {}, statusCell(row)))));
  }

  async function refresh() {
    sessionStorage.setItem("qoima.filters", JSON.stringify(state));
    const params = new URLSearchParams({ limit: PAGE, offset });
    for (const [name, value] of Object.entries(state)) if (value) params.set(name, value);
    try {
      const data = await api(`/api/worklist?${params}`);
      renderRows(data.items);
      const total = data.is_total_capped ? `${data.total}+` : data.total;
      summary.textContent = t("worklist.total", { n: total });
      pager.replaceChildren(
        h("button", { type: "button", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); refresh(); } }, "‹"),
        ` ${data.total ? offset + 1 : 0}–${offset + data.items.length} / ${total} `,
        h("button", { type: "button", disabled: offset + PAGE >= data.total, onclick: () => { offset += PAGE; refresh(); } }, "›"));
      root.dataset.loaded = "1";
    } catch (error) {
      summary.textContent = error.message;
    }
  }

  root.replaceChildren(h("section", { class: "page" }, h("h1", {}, t("worklist.title")), filters, summary, table, pager));
  refresh();
  timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  return () => clearInterval(timer);
}
