// Study page: the viewer (with the prior side by side), AI result, and the report.
import { api, currentUser, renderedUrl } from "./api.js";
import { aiSummary, ageFrom, h, personName } from "./dom.js";
import { formatDicomDate, formatEpoch, t } from "./i18n.js";

const CLAIM_RENEW_MS = 60000;
const TEMPLATES = {
  fluorography: ["normal", "suspected_tb", "pneumonia", "nodule_mass", "other"],
  mammography: ["birads_0", "birads_1", "birads_2", "birads_3", "birads_4", "birads_5", "birads_6"],
};

function imageSeriesList(study) {
  return (study.series || []).filter((s) => !String(s.origin || "").startsWith("ai:") && s.modality !== "SR" && s.rows);
}

function imageSeries(study) {
  return imageSeriesList(study)[0];
}

function heatmapSeries(study) {
  return (study.series || []).find((s) => String(s.origin || "").startsWith("ai:") && s.modality !== "SR" && s.rows);
}

export async function renderStudy(root, navigate, uid) {
  let study;
  try {
    study = await api(`/api/studies/${uid}`);
  } catch (error) {
    root.replaceChildren(h("p", { class: "error" }, error.message));
    return () => {};
  }
  const ai = aiSummary(study);
  // Cornerstone3D is large: load it only when a study is opened.
  const { Viewer } = await import("./viewer.js");
  const current = new Viewer({ label: `${t("viewer.current")} · ${formatDicomDate(study.study_date)}` });
  const prior = new Viewer({ label: t("viewer.prior") });
  const viewers = h("div", { class: "viewers" }, current.element);
  const toolButtons = {};
  const setTool = (tool) => {
    for (const viewer of [current, prior]) viewer.setTool(tool);
    for (const [name, button] of Object.entries(toolButtons)) button.classList.toggle("active", name === tool);
  };
  for (const tool of ["wl", "pan", "zoom", "length"]) {
    toolButtons[tool] = h("button", { type: "button", "data-tool": tool, onclick: () => setTool(tool) }, t(`tool.${tool}`));
  }
  const heat = heatmapSeries(study);
  const heatmapButton = h("button", {
    type: "button", "data-testid": "heatmap-toggle", disabled: !heat, "aria-pressed": "false",
    title: heat ? t("viewer.heatmap_note") : t("viewer.no_heatmap"),
    onclick: () => {
      const on = heatmapButton.getAttribute("aria-pressed") !== "true";
      heatmapButton.setAttribute("aria-pressed", String(on));
      heatmapButton.classList.toggle("active", on);
      current.toggleHeatmap(on);
    },
  }, t("tool.heatmap"));
  const opacity = h("input", { type: "range", min: 0, max: 100, value: 60, title: t("tool.opacity"),
    oninput: () => { current.heatmapOpacity = opacity.value / 100; current.draw(); } });
  const priorSelect = h("select", { "data-testid": "prior-select", onchange: () => showPrior(priorSelect.value) },
    h("option", { value: "" }, t("viewer.no_prior")),
    study.priors.map((p) => h("option", { value: p.study_instance_uid }, `${formatDicomDate(p.study_date)} · ${p.institution_name || ""}`)));
  const PRESETS = { lung: [-600, 1500], mediastinum: [40, 400], bone: [400, 1800], brain: [40, 80] };
  const preset = h("select", { "data-testid": "window-preset", title: t("tool.preset"), onchange: () => {
    if (preset.value === "") current.reset();
    else current.setWindow(...PRESETS[preset.value]);
  } }, h("option", { value: "" }, t("preset.default")), Object.keys(PRESETS).map((name) => h("option", { value: name }, t(`preset.${name}`))));
  const toolbar = h("div", { class: "toolbar" }, Object.values(toolButtons), preset,
    h("button", { type: "button", onclick: () => [current, prior].forEach((v) => v.reset()) }, t("tool.reset")),
    h("button", { type: "button", onclick: () => current.invert() }, t("tool.invert")),
    heatmapButton, opacity, h("label", {}, t("viewer.compare"), priorSelect));

  async function showPrior(priorUid) {
    if (!priorUid) { prior.element.remove(); viewers.classList.remove("two"); return; }
    const chosen = study.priors.find((p) => p.study_instance_uid === priorUid);
    const image = chosen && imageSeries(chosen);
    if (!image) return;
    prior.setLabel(`${t("viewer.prior")} · ${formatDicomDate(chosen.study_date)} · ${chosen.institution_name || ""}`);
    viewers.append(prior.element);
    viewers.classList.add("two");
    const { instances } = await api(`/api/series/${image.series_instance_uid}/instances`);
    await prior.setStack(chosen.study_instance_uid, image.series_instance_uid, instances);
  }

  const header = h("div", { class: "study-header" },
    h("h1", {}, personName(study.patient_name)),
    h("div", {}, h("a", { href: `#/patient/${study.patient_id}` }, study.patient_id || ""),
      ` · ${ageFrom(study)} ${t(`sex.${study.patient_sex || "O"}`)} · ${study.institution_name || ""}`,
      study.region ? ` (${study.region})` : "", ` · ${formatDicomDate(study.study_date)} · ${study.study_description || ""}`),
    h("div", { class: "ai-line", "data-testid": "ai-line" }, ai.state === "done"
      ? h("span", { class: `ai ${ai.flagged ? "flagged" : "clear"}` }, `${t("col.ai")}: `,
        ai.positive.length ? ai.positive.map((p) => t(`finding.${p}`)).join(", ") : t("ai.no_finding"),
        ` · ${t("ai.score")} ${(ai.priority ?? 0).toFixed(2)} · ${ai.model}`)
      : h("span", { class: "muted" }, `${t("col.ai")}: ${t(`ai.state.${ai.state}`)}`)));

  const reportPanel = h("aside", { class: "report", "data-testid": "report-panel" });
  root.replaceChildren(h("section", { class: "page study" }, header, toolbar,
    h("div", { class: "study-body" }, viewers, reportPanel)));
  setTool("wl");
  renderReport(reportPanel, study, ai, () => renderStudy(root, navigate, uid));

  // Series buttons and a slider (or arrow keys) to move through the instances of one series.
  const stack = { instances: [], count: 0, index: 0, heatmaps: [] };
  const slider = h("input", { type: "range", min: 0, max: 0, value: 0, class: "stack", "data-testid": "stack-slider",
    oninput: () => showInstance(Number(slider.value)) });
  const position = h("span", { class: "muted", "data-testid": "stack-position" });
  function onIndex(index) {
    stack.index = index;
    slider.value = index;
    position.textContent = `${index + 1} / ${stack.count}`;
    // the AI stores one heatmap per analysed image, in the same order
    const heatmap = stack.heatmaps[index] || (stack.count === 1 ? stack.heatmaps[0] : null);
    current.setHeatmap(heatmap ? renderedUrl(study.study_instance_uid, heat.series_instance_uid, heatmap) : null);
  }
  async function showInstance(index) {
    if (!stack.count) return;
    await current.setIndex(Math.max(0, Math.min(stack.count - 1, index)));
  }
  current.element.addEventListener("indexchange", (event) => onIndex(event.detail));
  async function showSeries(series, button) {
    for (const other of seriesBar.querySelectorAll("button")) other.classList.toggle("active", other === button);
    stack.instances = (await api(`/api/series/${series.series_instance_uid}/instances`)).instances;
    stack.count = await current.setStack(study.study_instance_uid, series.series_instance_uid, stack.instances, 0);
    slider.max = Math.max(0, stack.count - 1);
    slider.hidden = stack.count < 2;
    onIndex(0);
  }
  const seriesBar = h("div", { class: "series-bar", "data-testid": "series-bar" });
  for (const series of imageSeriesList(study)) {
    const button = h("button", { type: "button", onclick: () => showSeries(series, button) },
      `${series.series_number ?? ""} ${series.modality || ""} ${series.series_description || ""} (${series.number_of_instances})`);
    seriesBar.append(button);
  }
  toolbar.after(h("div", { class: "toolbar" }, seriesBar, slider, position));
  const onKey = (event) => {
    if (event.target.closest && event.target.closest("textarea, input, select")) return;
    const step = { ArrowDown: 1, PageDown: 10, ArrowUp: -1, PageUp: -10 }[event.key];
    if (step) { event.preventDefault(); showInstance(stack.index + step); }
  };
  document.addEventListener("keydown", onKey);
  if (heat) stack.heatmaps = (await api(`/api/series/${heat.series_instance_uid}/instances`)).instances;
  if (seriesBar.firstChild) await showSeries(imageSeriesList(study)[0], seriesBar.firstChild);
  // Compare with the newest earlier study; a later one only when there is no earlier one.
  const earlier = study.priors.find((p) => (p.study_date || "") < (study.study_date || ""));
  const comparison = earlier || study.priors[0];
  if (comparison) { priorSelect.value = comparison.study_instance_uid; showPrior(priorSelect.value); }

  let timer = null;
  if (!study.report || study.report.status !== "signed") {
    timer = setInterval(() => api(`/api/studies/${uid}/claim`, { method: "POST" }).catch(() => {}), CLAIM_RENEW_MS);
  }
  return () => { clearInterval(timer); document.removeEventListener("keydown", onKey); };
}

function renderReport(panel, study, ai, reload) {
  const report = study.report;
  const uid = study.study_instance_uid;
  if (report && report.status === "signed") {
    const addendum = h("textarea", { rows: 3, "data-testid": "addendum-text" });
    panel.replaceChildren(
      h("h2", {}, t("report.signed")),
      h("div", { class: "muted" }, `${report.author} · ${formatEpoch(report.signed_at)}`),
      h("h3", {}, t("report.findings")), h("p", { class: "report-text", "data-testid": "signed-findings" }, report.findings || ""),
      h("h3", {}, t("report.impression")), h("p", { class: "report-text" }, report.impression || ""),
      report.ai_agreement ? h("p", {}, t(`report.ai_${report.ai_agreement}`)) : null,
      h("p", { class: "muted" }, `SR ${report.sr_sop_instance_uid}`),
      report.addenda.map((a) => h("div", { class: "addendum" }, h("b", {}, `${t("report.addendum")} · ${a.author} · ${formatEpoch(a.created_at)}`), h("p", {}, a.text))),
      h("h3", {}, t("report.add_addendum")), addendum,
      h("button", { type: "button", onclick: async () => {
        try { await api(`/api/studies/${uid}/report/addenda`, { method: "POST", body: { text: addendum.value } }); reload(); }
        catch (error) { alert(error.message); }
      } }, t("report.add_addendum")));
    return;
  }
  const owner = study.claim_owner;
  if (owner && owner !== currentUser()) {
    panel.replaceChildren(h("p", { class: "error" }, t("claim.taken", { owner })));
    return;
  }
  const family = (study.modalities_in_study || "").includes("MG") ? "mammography" : "fluorography";
  const findings = h("textarea", { rows: 6, "data-testid": "findings", value: report?.findings || "" });
  const impression = h("textarea", { rows: 3, "data-testid": "impression", value: report?.impression || "" });
  const template = h("select", { "data-testid": "template", onchange: () => {
    if (!template.value) return;
    findings.value = t(`tpl.${template.value}.findings`);
    impression.value = t(`tpl.${template.value}.impression`);
  } }, h("option", { value: "" }, "—"), TEMPLATES[family].map((name) => h("option", { value: name, selected: report?.template === name }, t(`tpl.${name}`))));
  const agreement = h("div", { class: "agreement" }, ai.state === "done"
    ? ["agree", "disagree"].map((value) => h("label", {}, h("input", { type: "radio", name: "agreement", value, "data-testid": `ai-${value}`, checked: report?.ai_agreement === value }), t(`report.ai_${value}`)))
    : h("span", { class: "muted" }, t("report.no_ai")));
  const message = h("div", { class: "message", "data-testid": "report-message" });
  const draftBody = () => ({
    template: template.value, findings: findings.value, impression: impression.value,
    ai_agreement: agreement.querySelector("input:checked")?.value || "",
    ai_finding: ai.state === "done" ? (ai.positive.join(",") || "none") : "",
  });
  async function save() {
    await api(`/api/studies/${uid}/claim`, { method: "POST" });
    await api(`/api/studies/${uid}/report`, { method: "PUT", body: draftBody() });
  }
  panel.replaceChildren(
    h("h2", {}, t("report.title")),
    h("label", {}, t(`report.template.${family}`), template),
    h("label", {}, t("report.findings"), findings),
    h("label", {}, t("report.impression"), impression),
    h("fieldset", {}, h("legend", {}, t("report.ai_question")), agreement),
    h("div", { class: "buttons" },
      h("button", { type: "button", "data-testid": "save-draft", onclick: async () => {
        try { await save(); message.textContent = t("report.saved"); } catch (error) { message.textContent = error.message; }
      } }, t("report.save")),
      h("button", { type: "button", class: "primary", "data-testid": "sign", onclick: async () => {
        if (!findings.value.trim() && !impression.value.trim()) { message.textContent = t("report.empty"); return; }
        try {
          await save();
          await api(`/api/studies/${uid}/report/sign`, { method: "POST" });
          reload();
        } catch (error) { message.textContent = error.message; }
      } }, t("report.sign")),
      h("button", { type: "button", onclick: async () => {
        await api(`/api/studies/${uid}/claim`, { method: "DELETE" }).catch(() => {});
        location.hash = "#/";
      } }, t("report.release"))),
    message);
}
