"""Chest radiograph triage: frontal chest images of one study in, per-finding scores out.

A plain function over typed dataclasses; no I/O, no archive, no DICOM writing (see outputs.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from qoima.ai.models.onnx_classifier import ModelDescription, Prediction
from qoima.ai.preprocess import model_input, pixels_from_dataset, to_unit_range
from qoima.ai.registry import AppliesTo
from qoima.errors import InvalidDicom

MAX_BATCH = 8
DISPLAY_MAX_PX = 512  # longest side of the heatmap overlay: the CAM is 14x14, this is plenty


class TriageModel(Protocol):
    """The part of a model adapter the pipeline uses (OnnxClassifier implements it)."""

    @property
    def description(self) -> ModelDescription: ...

    def check_applicable(self, ds: Dataset) -> str | None: ...

    def predict(self, batch: npt.NDArray[np.float32]) -> list[Prediction]: ...


@dataclass(frozen=True)
class Radiograph:
    sop_instance_uid: str
    series_instance_uid: str
    dataset: Dataset


@dataclass(frozen=True)
class ChestTriageInput:
    study_instance_uid: str
    radiographs: list[Radiograph]
    applies_to: AppliesTo | None = None


@dataclass(frozen=True)
class FindingScore:
    name: str  # an output name of the model: "abnormal", "tuberculosis", ...
    probability: float
    threshold: float | None
    is_positive: bool


@dataclass(frozen=True)
class RadiographResult:
    radiograph: Radiograph
    abnormality: FindingScore
    findings: list[FindingScore]
    heatmap: npt.NDArray[np.float32]  # 0..1, model crop size, for the abnormality output
    display: npt.NDArray[np.uint8]  # the radiograph, bright = dense, at most DISPLAY_MAX_PX


@dataclass(frozen=True)
class SkippedImage:
    sop_instance_uid: str
    reason: str


@dataclass(frozen=True)
class ChestTriageResult:
    study_instance_uid: str
    model_name: str
    model_version: str
    results: list[RadiographResult] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)

    @property
    def priority(self) -> float:
        """Worklist priority in [0, 1], the same scale for every model: 0.5 is the operating
        point, so a study is flagged exactly when its priority is at least 0.5. It is the
        highest, over the study's images and every output, of the probability placed relative
        to that output's threshold (a model's thresholds differ widely, e.g. 0.97 and 0.50)."""
        return max((operating_point_score(score) for r in self.results
                    for score in (r.abnormality, *r.findings)), default=0.0)

    @property
    def is_flagged(self) -> bool:
        """Any output of any image at or above its operating point (the abnormality output
        alone misses part of the pneumonia cases: see the model card)."""
        return any(score.is_positive for r in self.results
                   for score in (r.abnormality, *r.findings))


def operating_point_score(score: FindingScore) -> float:
    """Map [0, t) to [0, 0.5) and [t, 1] to [0.5, 1] linearly, t being the threshold."""
    threshold = score.threshold
    if threshold is None or not 0.0 < threshold < 1.0:
        return score.probability
    if score.probability < threshold:
        return 0.5 * score.probability / threshold
    return 0.5 + 0.5 * (score.probability - threshold) / (1.0 - threshold)


class NotApplicable(Exception):
    """No image of the study is one the model reads; the message says why."""


def _score(name: str, prediction: Prediction, description: ModelDescription) -> FindingScore:
    threshold = description.thresholds.get(name)
    probability = prediction.scores[name]
    return FindingScore(name, probability, threshold,
                        threshold is not None and probability >= threshold)


def _skip_reason(radiograph: Radiograph, request: ChestTriageInput,
                 model: TriageModel) -> str | None:
    ds = radiograph.dataset
    if request.applies_to is not None:
        reason = (request.applies_to.body_part_reason(str(ds.get("BodyPartExamined", "")))
                  or request.applies_to.view_reason(str(ds.get("ViewPosition", ""))))
        if reason:
            return reason
    return model.check_applicable(ds)


def run_chest_triage(request: ChestTriageInput, model: TriageModel) -> ChestTriageResult:
    """Score every applicable radiograph; raise NotApplicable if there is none, InvalidDicom if
    none of the applicable ones can be decoded."""
    description = model.description
    inputs: list[tuple[Radiograph, npt.NDArray[np.float32], npt.NDArray[np.uint8]]] = []
    skipped: list[SkippedImage] = []
    decode_errors: list[str] = []
    for radiograph in request.radiographs:
        reason = _skip_reason(radiograph, request, model)
        if reason is not None:
            skipped.append(SkippedImage(radiograph.sop_instance_uid, reason))
            continue
        try:
            pixels = pixels_from_dataset(radiograph.dataset)
        except InvalidDicom as exc:
            skipped.append(SkippedImage(radiograph.sop_instance_uid, str(exc)))
            decode_errors.append(str(exc))
            continue
        inputs.append((radiograph, model_input(pixels, description.preprocessing),
                       display_image(pixels)))
    if not inputs:
        reasons = "; ".join(sorted({s.reason for s in skipped})) or "no images in the study"
        if decode_errors:
            raise InvalidDicom(reasons)
        raise NotApplicable(reasons)
    results: list[RadiographResult] = []
    for start in range(0, len(inputs), MAX_BATCH):
        chunk = inputs[start:start + MAX_BATCH]
        batch = np.stack([array for _, array, _ in chunk]).astype(np.float32)
        for (radiograph, _, display), prediction in zip(chunk, model.predict(batch),
                                                         strict=True):
            abnormal = description.abnormality_output
            results.append(RadiographResult(
                radiograph=radiograph,
                abnormality=_score(abnormal, prediction, description),
                findings=[_score(name, prediction, description)
                          for name in description.findings],
                heatmap=prediction.heatmaps[abnormal],
                display=display,
            ))
    return ChestTriageResult(request.study_instance_uid, description.name, description.version,
                             results, skipped)


def display_image(pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """The radiograph as 8-bit greyscale, longest side at most DISPLAY_MAX_PX, aspect kept."""
    from PIL import Image

    rows, columns = pixels.shape
    scale = min(1.0, DISPLAY_MAX_PX / max(rows, columns))
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    unit = Image.fromarray(to_unit_range(pixels).astype(np.float32)).resize(
        size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(unit) * 255.0 + 0.5, 0, 255).astype(np.uint8)
