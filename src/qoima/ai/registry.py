"""Installed models and the pipelines that run them, discovered from folders of model.json files.

Adding a model is a data change: a folder with ``model.json`` (name, version, ``applies_to``, and
optionally ``pipeline``, default ``chest_triage``) and ``model.onnx``, under the shipped models
folder or a folder named in the ``ai_models_dir`` setting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qoima.ai.models.onnx_classifier import SHIPPED_MODELS_DIR, ModelDescription, OnnxClassifier
from qoima.archive.jobs import CandidateInstance
from qoima.errors import NotFound

logger = logging.getLogger(__name__)

DEFAULT_PIPELINE = "chest_triage"
KNOWN_PIPELINES = frozenset({DEFAULT_PIPELINE})
# Outputs the archive makes itself (SR, SC, SEG...) are never inputs: their origin says so.
AI_ORIGIN_PREFIX = "ai:"


@dataclass(frozen=True)
class AppliesTo:
    """What a model declares it reads. Empty strings in a set mean "attribute absent is fine"."""

    modalities: frozenset[str]
    body_parts: frozenset[str]
    view_positions: frozenset[str]

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AppliesTo:
        def upper_set(key: str) -> frozenset[str]:
            values = data.get(key) or []
            return frozenset(str(v).strip().upper() for v in values)  # type: ignore[attr-defined]

        return cls(upper_set("modalities"), upper_set("body_parts"), upper_set("view_positions"))

    def matches_modality(self, modality: str) -> bool:
        return modality.strip().upper() in self.modalities

    def body_part_reason(self, body_part: str) -> str | None:
        value = body_part.strip().upper()
        if not self.body_parts or value in self.body_parts:
            return None
        return f"body part {value or '(empty)'} is not one of {sorted(self.body_parts)}"

    def view_reason(self, view_position: str) -> str | None:
        value = view_position.strip().upper()
        if not self.view_positions or value in self.view_positions:
            return None
        return f"view position {value or '(empty)'} is not one of {sorted(self.view_positions)}"


@dataclass(frozen=True)
class InstalledModel:
    """One model folder: its description and which pipeline runs it."""

    directory: Path
    description: ModelDescription
    pipeline_kind: str
    applies_to: AppliesTo

    @property
    def name(self) -> str:
        return self.description.name

    @property
    def version(self) -> str:
        return self.description.version

    @property
    def pipeline(self) -> str:
        """The job's pipeline column and the output origin suffix: ``chest_triage:cxr-triage``."""
        return f"{self.pipeline_kind}:{self.name}"

    def is_candidate(self, candidate: CandidateInstance) -> bool:
        # Only the modality decides whether a job is written: body part and view are checked per
        # image by the job, so a study that was not read carries the reason in its job row.
        return (not candidate.origin.startswith(AI_ORIGIN_PREFIX)
                and self.applies_to.matches_modality(candidate.modality))


def load_model_folder(directory: Path) -> InstalledModel:
    description = ModelDescription.from_file(directory / "model.json")
    kind = str(description.raw.get("pipeline", DEFAULT_PIPELINE))
    if kind not in KNOWN_PIPELINES:
        raise NotFound(f"model {description.name}: unknown pipeline {kind!r}")
    return InstalledModel(directory, description, kind,
                          AppliesTo.from_json(description.applies_to))


def model_folders(directories: Iterable[Path]) -> list[Path]:
    found = []
    for directory in directories:
        if (directory / "model.json").is_file():
            found.append(directory)
        elif directory.is_dir():
            found += sorted(p.parent for p in directory.glob("*/model.json"))
    return found


class Registry:
    """The installed models, and one loaded adapter per model (loaded on first use)."""

    def __init__(self, models: Sequence[InstalledModel], intra_op_threads: int = 0) -> None:
        self.models = list(models)
        self.intra_op_threads = intra_op_threads
        self._loaded: dict[tuple[str, str], OnnxClassifier] = {}
        self._lock = threading.Lock()

    @classmethod
    def discover(cls, extra_dirs: Sequence[Path] = (), *, include_shipped: bool = True,
                 intra_op_threads: int = 0) -> Registry:
        directories = [*extra_dirs, SHIPPED_MODELS_DIR] if include_shipped else list(extra_dirs)
        models: list[InstalledModel] = []
        seen: set[tuple[str, str]] = set()
        for folder in model_folders(directories):
            if not (folder / "model.onnx").is_file():
                logger.warning("model folder %s has model.json but no model file", folder)
                continue
            try:
                model = load_model_folder(folder)
            except (KeyError, ValueError, NotFound) as exc:
                logger.warning("model folder %s ignored: %s", folder, exc)
                continue
            if (model.pipeline, model.version) in seen:
                continue
            seen.add((model.pipeline, model.version))
            models.append(model)
        return cls(models, intra_op_threads)

    def get(self, pipeline: str, version: str) -> InstalledModel:
        for model in self.models:
            if model.pipeline == pipeline and model.version == version:
                return model
        raise NotFound(f"model for pipeline {pipeline} version {version} is not installed")

    def by_name(self, name: str) -> InstalledModel:
        """A model by name (newest version first if several), or by ``name:version``."""
        wanted_name, _, wanted_version = name.partition(":")
        matches = [m for m in self.models if m.name == wanted_name
                   and (not wanted_version or m.version == wanted_version)]
        if not matches:
            raise NotFound(f"model {name!r} is not installed")
        return max(matches, key=lambda m: _version_key(m.version))

    def choose_jobs(self, candidates: list[CandidateInstance]) -> list[tuple[str, str]]:
        """(pipeline, model_version) of every model that applies to some instance of a study."""
        return [(model.pipeline, model.version) for model in self.models
                if any(model.is_candidate(candidate) for candidate in candidates)]

    def adapter(self, model: InstalledModel) -> OnnxClassifier:
        key = (model.pipeline, model.version)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = OnnxClassifier(model.directory, self.intra_op_threads)
            return self._loaded[key]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))
