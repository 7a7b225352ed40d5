"""Local validation of an installed model on a site's own labelled images (``qoima ai evaluate``).

The CSV has columns ``file,label``; paths are relative to the CSV; PNG, JPEG or DICOM. ``normal``
is the negative class and every other label is positive. WHO's target product profile for
triage asks for local calibration: this reports AUC, sensitivity and specificity with CIs at the
shipped operating point, and the threshold that gives a chosen sensitivity on these images.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qoima.ai import metrics
from qoima.ai.models.onnx_classifier import OnnxClassifier
from qoima.ai.preprocess import is_dicom_file
from qoima.errors import InvalidDicom

logger = logging.getLogger(__name__)

NEGATIVE_LABEL = "normal"
BATCH_SIZE = 8


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str


def read_labels(csv_path: Path) -> list[LabelledImage]:
    """Rows of a ``file,label`` CSV, paths resolved against the CSV's folder."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower() for name in reader.fieldnames or []}
        if not {"file", "label"} <= fields:
            raise ValueError(f"{csv_path.name}: columns must include file,label")
        rows = []
        for row in reader:
            cleaned = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if cleaned.get("file"):
                rows.append(LabelledImage(csv_path.parent / cleaned["file"],
                                          cleaned["label"].lower()))
    return rows


def _input(model: OnnxClassifier, path: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    if is_dicom_file(path):
        from pydicom import dcmread

        ds = dcmread(path)
        reason = model.check_applicable(ds)
        if reason is not None:
            raise InvalidDicom(reason)
        return model.input_from_dataset(ds)
    return model.input_from_file(path)


def score_images(model: OnnxClassifier, images: list[LabelledImage]
                 ) -> tuple[list[tuple[LabelledImage, dict[str, float]]], list[dict[str, str]]]:
    """Scores per output for every readable image, and the skipped ones with the reason."""
    scored: list[tuple[LabelledImage, dict[str, float]]] = []
    skipped: list[dict[str, str]] = []
    pending: list[tuple[LabelledImage, np.ndarray[Any, np.dtype[np.float32]]]] = []

    def flush() -> None:
        batch = np.stack([array for _, array in pending]).astype(np.float32)
        for (image, _), prediction in zip(pending, model.predict(batch), strict=True):
            scored.append((image, prediction.scores))
        pending.clear()

    for image in images:
        try:
            pending.append((image, _input(model, image.path)))
        except (OSError, ValueError, InvalidDicom) as exc:
            skipped.append({"file": str(image.path), "reason": str(exc)[:300]})
            continue
        if len(pending) >= BATCH_SIZE:
            flush()
    if pending:
        flush()
    return scored, skipped


def _binary_report(scores: list[float], labels: list[int], shipped_threshold: float | None,
                   target_sensitivity: float) -> dict[str, Any]:
    site_threshold = metrics.threshold_for_sensitivity(scores, labels, target_sensitivity)
    report: dict[str, Any] = {
        "n_positive": int(sum(labels)),
        "n_negative": len(labels) - int(sum(labels)),
        "auc": metrics.bootstrap_auc(scores, labels).to_json(),
        "site_operating_point": {
            "target_sensitivity": target_sensitivity,
            **metrics.operating_point(scores, labels, site_threshold).to_json(),
        },
    }
    if shipped_threshold is not None:
        report["shipped_operating_point"] = metrics.operating_point(
            scores, labels, shipped_threshold).to_json()
    return report


def evaluate(model: OnnxClassifier, csv_path: Path,
             target_sensitivity: float = 0.9) -> dict[str, Any]:
    """The full report for ``qoima ai evaluate`` as a JSON-ready dict."""
    images = read_labels(csv_path)
    scored, skipped = score_images(model, images)
    description = model.description
    abnormal = description.abnormality_output
    labels = [0 if image.label == NEGATIVE_LABEL else 1 for image, _ in scored]
    if not 0 < sum(labels) < len(labels):
        raise ValueError("evaluation needs at least one normal and one abnormal readable image")
    scores = [values[abnormal] for _, values in scored]
    report: dict[str, Any] = {
        "model": description.name,
        "model_version": description.version,
        "labels_file": str(csv_path),
        "n_images": len(scored),
        "skipped": skipped,
        "output": abnormal,
        **_binary_report(scores, labels, description.thresholds.get(abnormal),
                         target_sensitivity),
        "calibration": metrics.calibration(scores, labels),
        "findings": {},
    }
    # A label that names a finding output is scored on that output, against the normals.
    for finding in description.findings:
        subset = [(values[finding], 0 if image.label == NEGATIVE_LABEL else 1)
                  for image, values in scored if image.label in (NEGATIVE_LABEL, finding)]
        finding_labels = [label for _, label in subset]
        if 0 < sum(finding_labels) < len(finding_labels):
            report["findings"][finding] = _binary_report(
                [score for score, _ in subset], finding_labels,
                description.thresholds.get(finding), target_sensitivity)
    return report
