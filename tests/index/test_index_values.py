"""Indexed values read from raw bytes at ingest equal what pydicom's conversion gives, so the
fast path never changes what a query matches."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from qoima.app import configure_libraries
from qoima.dicom.header import _INDEXED_TAGS, index_value, index_values
from tests.factories import make_instance
from tests.servers import well_formed_samples


def _assert_same_values(data: bytes) -> None:
    configure_libraries()  # the server's lenient reading
    expected_ds = pydicom.dcmread(io.BytesIO(data), force=True)
    expected = {keyword: index_value(expected_ds[tag].value) if tag in expected_ds else None
                for keyword, tag in _INDEXED_TAGS}
    got = index_values(pydicom.dcmread(io.BytesIO(data), force=True))
    assert {k: (type(v).__name__, v) for k, v in got.items()} == {
        k: (type(v).__name__, v) for k, v in expected.items()}


@pytest.mark.parametrize("path", well_formed_samples(), ids=lambda p: p.name)
def test_sample_index_values_match_pydicom(path: Path) -> None:
    _assert_same_values(path.read_bytes())


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian], ids=lambda s: s.name)
@pytest.mark.parametrize(("charset", "name", "extra"), [
    ("ISO_IR 192", "ӘБІЛҚАСЫМОВА^ҰЛЖАН", {"InstitutionName": "Қостанай облыстық аурухана "}),
    ("ISO_IR 144", "ИВАНОВА^ОЛЬГА", {"StudyDescription": "ОГК \\ обзорная  "}),
    ("\\ISO 2022 IR 144", "ИВАНОВА^ОЛЬГА", {"InstitutionName": "Больница"}),
    ("", "DOE^JANE", {"SeriesNumber": " 7", "InstanceNumber": "", "AccessionNumber": " A1 ",
                      "Modality": "CT ", "StudyTime": "101500.5 ", "StudyID": "X\\Y "}),
    ("", "DOE^JOHN", {"SeriesNumber": "2.0", "InstanceNumber": ["1", "2"],
                      "PatientAge": "045Y", "BodyPartExamined": ""}),
    ("ISO_IR 144", "ИВАНОВА^ОЛЬГА=", {"ReferringPhysicianName": " ЕЛЕНА \\БОРИС "}),
    ("ISO_IR 192", " ӘБІЛҚАСЫМОВА^ҰЛЖАН== ", {"ReferringPhysicianName": " "}),
    ("", "\tDOE^JANE", {"ReferringPhysicianName": "\\X"}),
])
def test_edge_case_index_values_match_pydicom(syntax: str, charset: str, name: str,
                                              extra: dict[str, object]) -> None:
    ds = make_instance(charset=charset, patient_name=name, extra=extra)
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    _assert_same_values(buffer.getvalue())
