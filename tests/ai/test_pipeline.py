"""The chest triage pipeline as a plain function, on real radiographs, with the tiny model."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from qoima.ai.pipelines.chest_triage import (
    ChestTriageInput,
    ChestTriageResult,
    FindingScore,
    NotApplicable,
    Radiograph,
    operating_point_score,
    run_chest_triage,
)
from qoima.ai.registry import Registry
from qoima.errors import InvalidDicom
from tests.ai.conftest import CHEST_CR, CHEST_JPEG, EXTREMITY_CR, chest_bytes


def _radiograph(path: Path) -> Radiograph:
    ds = pydicom.dcmread(path)
    return Radiograph(ds.SOPInstanceUID, ds.SeriesInstanceUID, ds)


def _run(registry: Registry, *radiographs: Radiograph) -> ChestTriageResult:
    [model] = registry.models
    request = ChestTriageInput("1.2.3", list(radiographs), model.applies_to)
    return run_chest_triage(request, registry.adapter(model))


def test_scores_every_output_of_a_frontal_chest(registry: Registry) -> None:
    result = _run(registry, _radiograph(CHEST_CR))
    [image] = result.results
    assert image.abnormality.name == "abnormal"
    assert [f.name for f in image.findings] == ["tuberculosis", "pneumonia"]
    assert all(0.0 <= s.probability <= 1.0 for s in (image.abnormality, *image.findings))
    scores = (image.abnormality, *image.findings)
    assert result.priority == max(operating_point_score(s) for s in scores)
    assert result.is_flagged == (result.priority >= 0.5)
    assert (result.model_name, result.model_version) == ("tiny-cxr", "0.0.1")


def test_mixed_study_scores_chest_and_lists_the_skipped(registry: Registry) -> None:
    result = _run(registry, _radiograph(CHEST_JPEG), _radiograph(EXTREMITY_CR))
    assert [r.radiograph.sop_instance_uid for r in result.results] == [
        _radiograph(CHEST_JPEG).sop_instance_uid]
    [skipped] = result.skipped
    assert "EXTREMITY" in skipped.reason


def test_lateral_only_study_is_not_applicable(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "lateral.dcm"
    path.write_bytes(chest_bytes("pipeline-lateral", view_position="LL"))
    with pytest.raises(NotApplicable, match="view position LL"):
        _run(registry, _radiograph(path))


def test_undecodable_study_raises_invalid_dicom(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "broken.dcm"
    path.write_bytes(chest_bytes("pipeline-broken", corrupt_pixels=True))
    with pytest.raises(InvalidDicom, match="cannot decode pixel data"):
        _run(registry, _radiograph(path))


@pytest.mark.parametrize(("probability", "threshold", "expected"), [
    (0.0, 0.97, 0.0), (0.485, 0.97, 0.25), (0.97, 0.97, 0.5), (1.0, 0.97, 1.0),
    (0.25, 0.5, 0.25), (0.75, 0.5, 0.75), (0.3, None, 0.3),
])
def test_operating_point_score_puts_every_threshold_at_one_half(
        probability: float, threshold: float | None, expected: float) -> None:
    score = FindingScore("abnormal", probability, threshold,
                         threshold is not None and probability >= threshold)
    assert operating_point_score(score) == pytest.approx(expected)
