// Patient page: every study of one IIN across facilities, as a timeline with thumbnails.
import { api, thumbnailUrl } from "./api.js";
import { aiSummary, h, modalities, personName } from "./dom.js";
import { formatDicomDate, t } from "./i18n.js";

export function renderPatientSearch(root, navigate, iin = "") {
  const input = h("input", { name: "iin", value: iin, inputmode: "numeric", maxlength: 12, placeholder: t("patient.iin_placeholder"), "data-testid": "iin-input" });
  const result = h("div", { class: "patient-result" });
  const form = h("form", { class: "iin-search", onsubmit: (e) => { e.preventDefault(); navigate(`#/patient/${input.value.trim()}`); } },
    h("label", {}, t("patient.iin"), input), h("button", { type: "submit" }, t("patient.search")));
  root.replaceChildren(h("section", { class: "page" }, h("h1", {}, t("patient.title")), form, result));
  if (iin) loadPatient(result, iin);
}

function firstImage(study) {
  return (study.series || []).find((s) => !String(s.origin || "").startsWith("ai:") && s.modality !== "SR" && s.rows);
}

async function loadPatient(container, iin) {
  try {
    const data = await api(`/api/patients/${encodeURIComponent(iin)}`);
    const name = data.studies.length ? personName(data.studies[0].patient_name) : "";
    const header = h("div", { class: "patient-header" },
      h("h2", {}, name || t("patient.unknown")),
      h("div", {}, `${t("patient.iin")}: ${data.iin} · ${t("patient.birth_date")}: ${formatDicomDate(data.birth_date.replaceAll("-", ""))} · ${t(`sex.${data.sex}`)}`));
    if (!data.studies.length) {
      container.replaceChildren(header, h("p", { class: "muted" }, t("patient.no_studies")));
      return;
    }
    const items = data.studies.map((study) => {
      const image = firstImage(study);
      const ai = aiSummary(study);
      return h("li", { class: "timeline-item", "data-testid": "timeline-item" },
        h("div", { class: "timeline-date" }, formatDicomDate(study.study_date)),
        image ? h("img", { class: "thumb", alt: "", loading: "lazy", src: thumbnailUrl(study.study_instance_uid, image.series_instance_uid, image.sop_instance_uid) }) : h("div", { class: "thumb" }),
        h("div", { class: "timeline-body" },
          h("a", { href: `#/study/${study.study_instance_uid}` }, `${modalities(study.modalities_in_study)} · ${study.study_description || ""}`),
          h("div", {}, study.institution_name || "", study.region ? ` · ${study.region}` : ""),
          h("div", {}, ai.state === "done" ? h("span", { class: `ai ${ai.flagged ? "flagged" : "clear"}` },
            `${t("col.ai")}: ${ai.flagged ? t(`finding.${ai.finding}`) : t("ai.no_finding")} ${(ai.priority ?? 0).toFixed(2)}`) : h("span", { class: "muted" }, t(`ai.state.${ai.state}`))),
          h("div", {}, h("span", { class: `badge ${study.report_status || "new"}` }, t(`status.${study.report_status || "unread"}`)),
            study.report_author ? ` ${study.report_author}` : "")));
    });
    container.replaceChildren(header, h("ol", { class: "timeline" }, items));
  } catch (error) {
    const reason = error.body && error.body.reason;
    container.replaceChildren(h("p", { class: "error", "data-testid": "iin-error" },
      reason ? t(`iin.invalid.${reason}`) : error.message));
  }
}
