"""Model adapter for image classifiers exported as model.onnx + model.json (onnxruntime only).

Loads the description, preprocesses with qoima.ai.preprocess and returns a score per output
and a heatmap per output. Must not import torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from qoima.ai.preprocess import (
    Preprocessing,
    check_applicable,
    model_input,
    model_input_from_file,
    pixels_from_dataset,
)

logger = logging.getLogger(__name__)

SHIPPED_MODELS_DIR = Path(__file__).parent
CXR_TRIAGE_DIR = SHIPPED_MODELS_DIR / "cxr_triage"


@dataclass(frozen=True)
class Prediction:
    """Scores (0..1) per output name, and a 0..1 heatmap per output at the input's crop size."""

    scores: dict[str, float]
    heatmaps: dict[str, npt.NDArray[np.float32]]
    flagged: dict[str, bool]


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: str
    output_names: list[str]
    abnormality_output: str
    findings: list[str]
    thresholds: dict[str, float]
    preprocessing: Preprocessing
    applies_to: dict[str, Any]
    raw: dict[str, Any]

    @classmethod
    def from_file(cls, path: Path) -> ModelDescription:
        data = json.loads(path.read_text())
        return cls(
            name=data["name"],
            version=data["version"],
            output_names=list(data["output_names"]),
            abnormality_output=data["abnormality_output"],
            findings=list(data["findings"]),
            thresholds={k: float(v) for k, v in data["thresholds"].items()},
            preprocessing=Preprocessing.from_json(data["preprocessing"]),
            applies_to=dict(data["applies_to"]),
            raw=data,
        )


class OnnxClassifier:
    """An ONNX image classifier with per-output scores and class activation maps."""

    def __init__(self, model_dir: Path = CXR_TRIAGE_DIR, intra_op_threads: int = 0) -> None:
        import onnxruntime  # type: ignore[import-untyped]

        self.description = ModelDescription.from_file(model_dir / "model.json")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        logger.info(
            "loaded model %s %s from %s",
            self.description.name,
            self.description.version,
            model_dir,
        )

    @property
    def name(self) -> str:
        return self.description.name

    @property
    def version(self) -> str:
        return self.description.version

    def check_applicable(self, ds: Dataset) -> str | None:
        """Why this model must skip the instance, or None if it applies."""
        return check_applicable(ds)

    def input_from_dataset(self, ds: Dataset) -> npt.NDArray[np.float32]:
        return model_input(pixels_from_dataset(ds), self.description.preprocessing)

    def input_from_file(self, path: Path) -> npt.NDArray[np.float32]:
        return model_input_from_file(path, self.description.preprocessing)

    def run(
        self, batch: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Raw outputs for a (N, 1, H, W) batch: scores (N, K) and CAM logits (N, K, h, w)."""
        scores, cam = self.session.run(None, {self.input_name: batch.astype(np.float32)})
        return np.asarray(scores, dtype=np.float32), np.asarray(cam, dtype=np.float32)

    def predict(self, batch: npt.NDArray[np.float32]) -> list[Prediction]:
        """Scores, threshold calls and upsampled heatmaps for each image of a batch."""
        scores, cam = self.run(batch)
        size = batch.shape[-1]
        predictions = []
        for image_scores, image_cam in zip(scores, cam, strict=True):
            named = {
                name: float(value)
                for name, value in zip(self.description.output_names, image_scores, strict=True)
            }
            predictions.append(
                Prediction(
                    scores=named,
                    heatmaps={
                        name: heatmap_from_cam(plane, size)
                        for name, plane in zip(
                            self.description.output_names, image_cam, strict=True
                        )
                    },
                    flagged={
                        name: named[name] >= threshold
                        for name, threshold in self.description.thresholds.items()
                    },
                )
            )
        return predictions


def heatmap_from_cam(plane: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.float32]:
    """A CAM plane, positive part only, scaled to 0..1 and resized to size x size (bilinear)."""
    from PIL import Image

    positive = np.maximum(plane, 0.0)
    peak = float(positive.max())
    if peak > 0:
        positive = positive / peak
    image = Image.fromarray(positive.astype(np.float32), mode="F")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
