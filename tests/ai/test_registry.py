"""Model discovery from folders, and which studies get a job."""

from __future__ import annotations

import shutil
from pathlib import Path

from qoima.ai.registry import Registry
from qoima.archive.jobs import CandidateInstance
from tests.ai.tiny_model import write_tiny_model


def _candidate(modality: str, origin: str = "dimse-store:CR1") -> CandidateInstance:
    return CandidateInstance("1.2.3", "1.2", "1.2.840.10008.5.1.4.1.1.1", modality, "CHEST",
                             "PA", origin)


def test_discovers_every_model_folder(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "a", name="model-a", version="1.0.0")
    write_tiny_model(tmp_path / "b", name="model-b", version="2.1.0")
    registry = Registry.discover([tmp_path], include_shipped=False)
    assert sorted((m.name, m.version) for m in registry.models) == [
        ("model-a", "1.0.0"), ("model-b", "2.1.0")]


def test_folder_without_model_file_is_ignored(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "incomplete")
    (folder / "model.onnx").unlink()
    assert Registry.discover([tmp_path], include_shipped=False).models == []


def test_by_name_picks_newest_version(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "old", version="1.9.0")
    write_tiny_model(tmp_path / "new", version="1.10.0")
    registry = Registry.discover([tmp_path], include_shipped=False)
    assert registry.by_name("tiny-cxr").version == "1.10.0"
    assert registry.by_name("tiny-cxr:1.9.0").version == "1.9.0"


def test_jobs_only_for_declared_modalities(tiny_models_dir: Path) -> None:
    registry = Registry.discover([tiny_models_dir], include_shipped=False)
    assert registry.choose_jobs([_candidate("CR")]) == [("chest_triage:tiny-cxr", "0.0.1")]
    assert registry.choose_jobs([_candidate("CT")]) == []
    assert registry.choose_jobs([_candidate("SR"), _candidate("OT")]) == []


def test_ai_outputs_never_make_jobs(tiny_models_dir: Path) -> None:
    registry = Registry.discover([tiny_models_dir], include_shipped=False)
    assert registry.choose_jobs([_candidate("CR", origin="ai:chest_triage:tiny-cxr")]) == []


def test_adding_a_model_is_a_folder_copy(tmp_path: Path, tiny_models_dir: Path) -> None:
    shutil.copytree(tiny_models_dir / "tiny", tmp_path / "tiny")
    write_tiny_model(tmp_path / "mammo", name="mammo-density",
                     applies_to={"modalities": ["MG"], "body_parts": ["BREAST"]})
    registry = Registry.discover([tmp_path], include_shipped=False)
    assert registry.choose_jobs([_candidate("MG")]) == [("chest_triage:mammo-density", "0.0.1")]
