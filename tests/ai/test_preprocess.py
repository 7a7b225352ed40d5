"""DICOM and image preprocessing for the chest models: decoding, LUTs, applicability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from qoima.ai.preprocess import (
    Preprocessing,
    check_applicable,
    equalize_histogram,
    model_input,
    model_input_from_file,
    pixels_from_dataset,
)
from qoima.errors import InvalidDicom

CR_DX = Path(__file__).parents[2] / ".." / "shared" / "data" / "dicom-samples" / "cr_dx"
needs_samples = pytest.mark.skipif(not CR_DX.is_dir(), reason=f"{CR_DX} (shared samples) absent")


def radiograph(pixels: np.ndarray, **attributes: object) -> Dataset:
    """A minimal uncompressed single-frame DX dataset around the given pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def gradient(size: int = 64) -> np.ndarray:
    return np.add.outer(np.arange(size), np.arange(size)).astype(np.uint16) * 30


@needs_samples
@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "RG1_J2KI.dcm", "SIIM_chest_CR_850819.dcm"])
def test_chest_samples_apply_and_give_model_input(name: str) -> None:
    ds = pydicom.dcmread(CR_DX / name)
    assert check_applicable(ds) is None
    image = model_input(pixels_from_dataset(ds), Preprocessing())
    assert image.shape == (1, 224, 224)
    assert image.dtype == np.float32
    assert np.isfinite(image).all()


@needs_samples
def test_jpeg2000_and_uncompressed_copies_give_the_same_input() -> None:
    uncompressed = model_input_from_file(CR_DX / "RG1_UNCI.dcm", Preprocessing())
    jpeg2000 = model_input_from_file(CR_DX / "RG1_J2KI.dcm", Preprocessing())
    assert np.abs(uncompressed - jpeg2000).mean() < 0.05


@needs_samples
def test_monochrome1_chest_is_shown_with_dark_lungs() -> None:
    # RG1 is MONOCHROME1: after inversion the lungs (left and right of centre) are darker than
    # the mediastinum between them.
    image = model_input_from_file(CR_DX / "RG1_UNCI.dcm", Preprocessing())[0]
    band = image[80:140]
    lungs = (band[:, 40:80].mean() + band[:, 144:184].mean()) / 2
    mediastinum = band[:, 100:124].mean()
    assert lungs < mediastinum


@needs_samples
@pytest.mark.parametrize("name", ["RG2_J2KI.dcm", "RG3_RLE.dcm"])
def test_non_chest_samples_are_skipped_with_the_body_part(name: str) -> None:
    reason = check_applicable(pydicom.dcmread(CR_DX / name))
    assert reason is not None
    assert "body part" in reason


@needs_samples
def test_lateral_veterinary_sample_is_skipped() -> None:
    # A DX "THORAX" with no ViewPosition; only its processing description says
    # "CANINE LATERAL THORAX".
    reason = check_applicable(pydicom.dcmread(CR_DX / "dx_image.dcm"))
    assert reason is not None
    assert "lateral" in reason


@needs_samples
def test_undecodable_pixels_raise_invalid_dicom() -> None:
    ds = pydicom.dcmread(CR_DX / "RG2_JPLY.dcm")
    with pytest.raises(InvalidDicom, match="cannot decode pixel data"):
        pixels_from_dataset(ds)


def test_monochrome1_is_inverted() -> None:
    pixels = gradient()
    normal = pixels_from_dataset(radiograph(pixels))
    inverted = pixels_from_dataset(
        radiograph(pixels.max() - pixels, PhotometricInterpretation="MONOCHROME1")
    )
    np.testing.assert_allclose(normal, inverted)


def test_rescale_and_window_are_applied() -> None:
    ds = radiograph(
        gradient(), RescaleSlope=2, RescaleIntercept=-100, WindowCenter=1000, WindowWidth=400
    )
    pixels = pixels_from_dataset(ds)
    stored = gradient().astype(np.float64) * 2 - 100
    # Below the window everything maps to its minimum, above it to its maximum.
    assert np.ptp(pixels[stored < 790]) == 0
    assert np.ptp(pixels[stored > 1210]) == 0
    assert pixels[stored > 1210].min() > pixels[stored < 790].max()


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"ViewPosition": "LL"}, "lateral"),
        ({"ViewPosition": "LATERAL"}, "lateral"),
        ({"SeriesDescription": "Chest LAT"}, "lateral"),
        ({"AcquisitionDeviceProcessingDescription": "THORAX LATERAL"}, "lateral"),
        ({"ViewPosition": "", "ImageLaterality": "L"}, "image laterality L"),
        ({"PatientSpeciesDescription": "Canis lupus familiaris"}, "veterinary"),
        ({"Modality": "CT"}, "modality CT"),
        ({"BodyPartExamined": "KNEE"}, "body part KNEE"),
        ({"NumberOfFrames": 3}, "multi-frame"),
    ],
)
def test_inapplicable_instances_are_skipped_with_a_reason(
    attributes: dict[str, object], expected: str
) -> None:
    reason = check_applicable(radiograph(gradient(), **attributes))
    assert reason is not None
    assert expected in reason


def test_frontal_chest_without_body_part_applies() -> None:
    assert check_applicable(radiograph(gradient(), BodyPartExamined="", ViewPosition="")) is None


def test_frontal_view_with_laterality_applies() -> None:
    ds = radiograph(gradient(), ViewPosition="AP", ImageLaterality="L", StudyDescription="PA+LAT")
    assert check_applicable(ds) is None


def test_equalisation_spreads_values_over_the_range() -> None:
    unit = np.linspace(0.4, 0.6, 10_000, dtype=np.float32).reshape(100, 100)
    equalised = equalize_histogram(unit)
    assert equalised.min() == 0.0
    assert equalised.max() == 1.0


def test_png_and_dicom_paths_agree(tmp_path: Path) -> None:
    from PIL import Image

    pixels = (gradient() // 16).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    ds = radiograph(pixels.astype(np.uint16))
    np.testing.assert_allclose(
        model_input_from_file(tmp_path / "image.png", Preprocessing()),
        model_input(pixels_from_dataset(ds), Preprocessing()),
        atol=1e-5,
    )
