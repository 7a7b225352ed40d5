"""The SR and heatmap objects: valid DICOM, written and read back, saying what the model said."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
import pytest
from pydicom.dataset import Dataset

from qoima.ai.outputs import OutputUids, build_heatmap_overlay, build_measurement_report
from qoima.ai.pipelines.chest_triage import (
    ChestTriageInput,
    ChestTriageResult,
    Radiograph,
    run_chest_triage,
)
from qoima.ai.registry import Registry
from tests.ai.conftest import CHEST_CR
from tests.ai.sr_content import finding_codes, probabilities, texts


@pytest.fixture
def strict_writing() -> Iterator[None]:
    """Everything we create must be valid: writing raises on bad values here."""
    settings = pydicom.config.settings
    before = settings.writing_validation_mode
    settings.writing_validation_mode = pydicom.config.RAISE
    yield
    settings.writing_validation_mode = before


@pytest.fixture(scope="module")
def result(tiny_models_dir: Path) -> ChestTriageResult:
    registry = Registry.discover([tiny_models_dir], include_shipped=False)
    [model] = registry.models
    ds = pydicom.dcmread(CHEST_CR)
    request = ChestTriageInput(ds.StudyInstanceUID,
                               [Radiograph(ds.SOPInstanceUID, ds.SeriesInstanceUID, ds)],
                               model.applies_to)
    return run_chest_triage(request, registry.adapter(model))


def _round_trip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


UIDS = OutputUids.for_job("1.2.3.4", "chest_triage:tiny-cxr", "0.0.1")


@pytest.mark.usefixtures("strict_writing")
def test_sr_reports_findings_probabilities_and_model(result: ChestTriageResult) -> None:
    sr = _round_trip(build_measurement_report(result, UIDS))
    image = result.results[0]
    expected = [image.abnormality.probability, *(f.probability for f in image.findings)]
    assert probabilities(sr) == pytest.approx(expected, abs=1e-6)
    assert finding_codes(sr) == {("SCT", "263654008"), ("SCT", "56717001"),
                                 ("SCT", "233604007")}
    assert texts(sr, "Algorithm Name") == {"tiny-cxr"}
    assert texts(sr, "Algorithm Version") == {"0.0.1"}
    assert sr.SOPInstanceUID == UIDS.sr_instance
    assert sr.StudyInstanceUID == image.radiograph.dataset.StudyInstanceUID
    assert sr.Modality == "SR"


@pytest.mark.usefixtures("strict_writing")
def test_sr_references_the_source_image(result: ChestTriageResult) -> None:
    sr = _round_trip(build_measurement_report(result, UIDS))
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == result.results[0].radiograph.sop_instance_uid


@pytest.mark.usefixtures("strict_writing")
def test_heatmap_is_a_new_rgb_series_of_the_study(result: ChestTriageResult) -> None:
    image = result.results[0]
    sc = _round_trip(build_heatmap_overlay(image, UIDS, "tiny-cxr", "0.0.1", 256, 224))
    assert sc.SeriesInstanceUID == UIDS.heatmap_series
    assert sc.StudyInstanceUID == image.radiograph.dataset.StudyInstanceUID
    assert sc.PhotometricInterpretation == "RGB"
    pixels = sc.pixel_array
    assert pixels.shape == (*image.display.shape, 3)
    # Where the heatmap is hot, the overlay is redder than the grey radiograph under it.
    red_excess = pixels[..., 0].astype(int) - pixels[..., 2].astype(int)
    assert red_excess.max() > 0
    assert np.all(red_excess >= 0)


def test_output_uids_are_stable_per_job() -> None:
    again = OutputUids.for_job("1.2.3.4", "chest_triage:tiny-cxr", "0.0.1")
    other = OutputUids.for_job("1.2.3.4", "chest_triage:tiny-cxr", "0.0.2")
    assert again == UIDS
    assert other.sr_instance != UIDS.sr_instance
