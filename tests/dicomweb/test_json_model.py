"""The DICOM JSON of a stored header (WADO-RS metadata) is exactly pydicom's ``to_json_dict``,
whichever elements the fast raw-bytes conversion takes and whichever it leaves to pydicom."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from qoima.dicom.header import scan
from qoima.dicom.json_model import dataset_to_json
from tests.factories import make_instance
from tests.servers import well_formed_samples


def _bulk_uri(element: object) -> str:
    return f"http://archive/bulkdata/{element.tag:08X}"  # type: ignore[attr-defined]


def _assert_same_json(data: bytes) -> None:
    """Both readings of a stored header (pydicom's, and ``scan``'s where it reads the file)
    convert to what pydicom makes of it."""
    for handler, threshold in ((None, 1 << 62), (_bulk_uri, 1024)):
        expected = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        want = json.dumps(expected.to_json_dict(bulk_data_threshold=threshold,
                                                bulk_data_element_handler=handler),
                          sort_keys=True)
        got = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        assert json.dumps(dataset_to_json(got, handler), sort_keys=True) == want
        scanned = scan(data, 64, whole_header=True)
        if scanned is not None:
            assert json.dumps(dataset_to_json(scanned, handler), sort_keys=True) == want


@pytest.mark.parametrize("path", well_formed_samples(), ids=lambda p: p.name)
def test_every_sample_header_converts_as_pydicom_does(path: Path) -> None:
    _assert_same_json(path.read_bytes())


def _edge_case_instance(charset: str, name: str) -> Dataset:
    item = Dataset()
    item.CodeValue = "T-D3000 "
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = name
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3.4"
    item.ReferencedImageSequence = Sequence([inner])
    return make_instance(charset=charset, patient_name=name, extra={
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "OtherPatientNames": [name, "IVANOV^IVAN"],
        "PixelSpacing": ["0.5", "0.75"],
        "SliceThickness": "1.25",
        "WindowCenter": ["40", "-600"],
        "ImagesInAcquisition": "120",
        "RetrieveAETitle": "  QOIMA ",
        "StudyDescription": f"{name}  ",
        "ImageComments": "line one\\with backslash  ",
        "AdditionalPatientHistory": "",
        "PatientWeight": None,
        "LargestImagePixelValue": 4095,
        "ReferencedFrameNumber": [1, 2, 3],
        "FrameIncrementPointer": 0x00181063,
        "RedPaletteColorLookupTableData": b"\x01\x02" * 8,
        "AnatomicRegionSequence": Sequence([item]),
        "ConsultingPhysicianName": f"{name}={name}",
    })


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian], ids=lambda s: s.name)
@pytest.mark.parametrize(("charset", "name"), [
    ("ISO_IR 192", "ӘБІЛҚАСЫМОВА^ҰЛЖАН^ҒАЛЫМҚЫЗЫ"),
    ("ISO_IR 144", "ИВАНОВА^ОЛЬГА"),
    ("ISO_IR 100", "MÜLLER^JÜRGEN"),
    ("\\ISO 2022 IR 144", "ИВАНОВА^ОЛЬГА"),
    ("", "DOE^JANE"),
])
def test_edge_cases_convert_as_pydicom_does(syntax: str, charset: str, name: str) -> None:
    ds = _edge_case_instance(charset, name)
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    _assert_same_json(buffer.getvalue())


def test_a_dataset_built_in_memory_converts_as_pydicom_does() -> None:
    """What a STOW-RS answer is made of: decoded strings, UIDs, URLs and numbers, some empty."""
    ds = Dataset()
    ds.RetrieveURL = "http://127.0.0.1:8080/dicomweb/studies/1.2.3"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StationName = ""
    ds.RetrieveAETitle = "QOIMA"
    ds.Manufacturer = "Qoima ÄŞ"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.FailureReason = 0
    item.WarningReason = 0xB000
    item.ImageType = ["ORIGINAL", "PRIMARY"]
    item.SimpleFrameList = [1, 2]
    ds.FailedSOPSequence = Sequence([item])
    ds.AccessionNumber = None
    assert dataset_to_json(ds) == ds.to_json_dict()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                         ids=lambda s: s.name)
def test_a_header_read_from_the_start_of_a_file_is_whole_or_not_read(syntax: str) -> None:
    """WADO-RS reads the first bytes of a blob for its header: what ``scan`` reads from them
    is the whole header up to the pixel data, with its sequences, or nothing (then pydicom
    reads the file)."""
    ds = _edge_case_instance("ISO_IR 192", "ӘБІЛҚАСЫМОВА^ҰЛЖАН")
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    pixels_at = data.rindex(b"\xe0\x7f\x10\x00")
    want = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).to_json_dict()
    read = scan(data[:pixels_at + 8], 64, whole_header=True, complete=False)
    assert read is not None
    assert dataset_to_json(read) == want
    assert len(read.AnatomicRegionSequence) == 1
    # Cut at the pixel data, in an element, in a sequence: the rest may follow, so no reading.
    sequence_at = data.index(b"\x08\x00\x18\x22")  # AnatomicRegionSequence
    for cut in (pixels_at, pixels_at - 3, sequence_at + 20):
        assert scan(data[:cut], 64, whole_header=True, complete=False) is None
    assert dataset_to_json(scan(data[:pixels_at], 64, whole_header=True)) == want
