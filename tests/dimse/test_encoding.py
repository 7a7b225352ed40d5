"""What ``qoima.dimse.reactor`` encodes itself is byte for byte what pynetdicom would send."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dimse_messages import (
    C_ECHO_RSP,
    C_FIND_RSP,
    C_GET_RSP,
    C_MOVE_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
)
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.pdu import P_DATA_TF

from qoima.dicom.attributes import COMPUTED_BY_KEYWORD, INDEXED_ATTRIBUTES, Level
from qoima.dimse.handlers import (
    encode_identifier,
    identifier_layout,
    response_identifier,
    response_keywords,
)
from qoima.dimse.reactor import _dataset_offset, _fragments, command_set
from tests.factories import make_instance, to_bytes


def _primitive(cls: type, **values: object) -> object:
    primitive = cls()
    for keyword, value in values.items():
        setattr(primitive, keyword, value)
    return primitive


CT = "1.2.840.10008.5.1.4.1.1.2"
LONG_UID = "1.2.826.0.1.3680043.8.498.36673580006242590141593211010267109865"


@pytest.mark.parametrize(("message_class", "primitive"), [
    (C_STORE_RSP, _primitive(C_STORE, MessageIDBeingRespondedTo=7, Status=0x0000,
                             AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.3.4.5")),
    (C_STORE_RSP, _primitive(C_STORE, MessageIDBeingRespondedTo=65535, Status=0xB000,
                             AffectedSOPClassUID=CT + ".1", AffectedSOPInstanceUID=LONG_UID)),
    (C_STORE_RQ, _primitive(C_STORE, MessageID=3, Priority=2, AffectedSOPClassUID=CT,
                            AffectedSOPInstanceUID="1.2.3", DataSet=io.BytesIO(b"\0\0"))),
    (C_STORE_RQ, _primitive(C_STORE, MessageID=4, Priority=0, AffectedSOPClassUID=CT,
                            AffectedSOPInstanceUID="1.2.34", DataSet=io.BytesIO(b"\0\0"),
                            MoveOriginatorApplicationEntityTitle="MOVESCU",
                            MoveOriginatorMessageID=9)),
    (C_STORE_RQ, _primitive(C_STORE, MessageID=5, Priority=2, AffectedSOPClassUID=CT,
                            AffectedSOPInstanceUID="1.2.3", _dataset_path=(Path("f"), 132))),
    (C_GET_RSP, _primitive(C_GET, MessageIDBeingRespondedTo=1, Status=0xFF00,
                           NumberOfRemainingSuboperations=119,
                           NumberOfCompletedSuboperations=1, NumberOfFailedSuboperations=0,
                           NumberOfWarningSuboperations=0)),
    (C_GET_RSP, _primitive(C_GET, MessageIDBeingRespondedTo=1, Status=0x0000,
                           AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.2.3",
                           NumberOfCompletedSuboperations=120, NumberOfFailedSuboperations=0,
                           NumberOfWarningSuboperations=0)),
    (C_MOVE_RSP, _primitive(C_MOVE, MessageIDBeingRespondedTo=2, Status=0xFF00,
                            NumberOfRemainingSuboperations=3,
                            NumberOfCompletedSuboperations=0, NumberOfFailedSuboperations=0,
                            NumberOfWarningSuboperations=0)),
    (C_FIND_RSP, _primitive(C_FIND, MessageIDBeingRespondedTo=5, Status=0xFF00,
                            AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.2.1",
                            Identifier=io.BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "))),
    (C_FIND_RSP, _primitive(C_FIND, MessageIDBeingRespondedTo=5, Status=0x0000,
                            AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.2.1")),
    (C_ECHO_RSP, _primitive(C_ECHO, MessageIDBeingRespondedTo=1, Status=0x0000,
                            AffectedSOPClassUID="1.2.840.10008.1.1")),
])
def test_command_sets_are_encoded_as_pynetdicom_does(message_class: type,
                                                     primitive: object) -> None:
    message = message_class()
    message.primitive_to_message(primitive)
    assert command_set(message_class.__name__, primitive) == encode(
        message.command_set, True, True)


def test_command_sets_with_an_error_comment_are_left_to_pydicom() -> None:
    primitive = _primitive(C_STORE, MessageIDBeingRespondedTo=3, Status=0xC000,
                           AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.3",
                           ErrorComment="cannot understand")
    assert command_set("C_STORE_RSP", primitive) is None


def _store_request(data: bytes | None = None) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageID = 9
    primitive.Priority = 2
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    primitive.AffectedSOPInstanceUID = "1.2.3.4.5.6"
    if data is not None:
        primitive.DataSet = io.BytesIO(data)
    return primitive


def _framed(fragments: Iterator[tuple[bytes, memoryview]]) -> bytes:
    return b"".join(bytes(header) + bytes(chunk) for header, chunk in fragments)


@pytest.mark.parametrize("max_pdu", [16384, 16390, 0, 262144])
@pytest.mark.parametrize("length", [0, 1, 16378, 16379, 525000, 3 * 1048576 + 17])
def test_messages_are_framed_as_pynetdicom_frames_them(tmp_path: Path, max_pdu: int,
                                                       length: int) -> None:
    data = bytes(range(256)) * (length // 256) + b"\x07" * (length % 256)
    message = C_STORE_RQ()
    message.primitive_to_message(_store_request(data))
    expected = b"".join(P_DATA_TF(p).encode() for p in message.encode_msg(3, max_pdu))
    command = encode(message.command_set, True, True)
    ours = _framed(_fragments(3, 0x01, io.BytesIO(command), len(command), max_pdu))
    if data:
        ours += _framed(_fragments(3, 0x00, io.BytesIO(data), len(data), max_pdu))
    assert ours == expected

    # the same dataset sent from a file, as C-GET and C-MOVE send stored instances
    path = tmp_path / "instance.dcm"
    path.write_bytes(b"preamble" + data)
    request = _store_request()
    request._dataset_path = (path, 8)  # as pynetdicom's send_c_store of a file sets it
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    expected = b"".join(P_DATA_TF(p).encode() for p in message.encode_msg(3, max_pdu))
    command = encode(message.command_set, True, True)
    with open(path, "rb") as fh:
        fh.seek(8)
        ours = _framed(_fragments(3, 0x01, io.BytesIO(command), len(command), max_pdu))
        ours += _framed(_fragments(3, 0x00, fh, length, max_pdu))
    assert ours == expected


def test_dataset_offset_is_where_pynetdicom_finds_it(tmp_path: Path) -> None:
    data = to_bytes(make_instance())
    assert data[132:138] == b"\x02\x00\x00\x00UL"  # (0002,0000) File Meta Group Length
    with_group_length = tmp_path / "qoima.dcm"
    with_group_length.write_bytes(data)
    without = tmp_path / "other.dcm"  # a writer that left the group length out
    without.write_bytes(data[:132] + data[144:])
    for path in (with_group_length, without):
        with path.open("rb") as fh:
            assert _dataset_offset(fh, str(path)) == split_dataset(path)[1]


def _find_identifier(level: str, keywords: list[str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in keywords:
        setattr(ds, keyword, [] if keyword.endswith("Sequence") else None)
    return ds


_ALL_KEYS = [a.keyword for a in INDEXED_ATTRIBUTES] + list(COMPUTED_BY_KEYWORD)
_ROWS = [
    {"PatientID": "123456789012", "PatientName": "Әбілқайыр^Айгүл", "PatientSex": "F",
     "StudyInstanceUID": "1.2.3.4.5", "StudyDate": "20240101", "ModalitiesInStudy": "CT\\MR",
     "NumberOfStudyRelatedInstances": 120, "SeriesInstanceUID": "1.2.3.4.5.6",
     "SeriesNumber": 3, "SOPInstanceUID": LONG_UID, "SOPClassUID": CT, "Rows": 512,
     "Columns": 511, "BitsAllocated": 16, "InstanceNumber": 7, "PatientAge": "041Y"},
    {"PatientID": "X", "PatientName": "Doe^John", "StudyInstanceUID": "1.2.3",
     "SeriesInstanceUID": "1.2.3.4", "SOPInstanceUID": "1.2.3.4.5", "AccessionNumber": "A1",
     "StudyDescription": "CT CHEST ", "InstitutionName": "Almaty"},
    {},
]


@pytest.mark.parametrize("level", ["PATIENT", "STUDY", "SERIES", "IMAGE"])
@pytest.mark.parametrize("row", _ROWS)
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_c_find_identifiers_are_what_pydicom_encodes(level: str, row: dict[str, object],
                                                       syntax: str) -> None:
    for requested in (["PatientID"], _ALL_KEYS,
                      [*_ALL_KEYS, "RetrieveAETitle", "InstanceAvailability",
                       "ReferencedStudySequence", "OtherPatientIDsSequence"]):
        identifier = _find_identifier(level, requested)
        keywords = response_keywords(identifier, Level(level))
        layout = identifier_layout(identifier, keywords)
        assert layout is not None
        implicit = syntax == ImplicitVRLittleEndian
        expected = encode(response_identifier(identifier, keywords, row, Level(level), "QOIMA"),
                          implicit, True)
        assert encode_identifier(layout, row, Level(level), "QOIMA", implicit) == expected


def test_c_find_identifiers_with_binary_keys_are_left_to_pydicom() -> None:
    identifier = _find_identifier("IMAGE", ["PixelSpacing", "WindowCenter"])
    assert identifier_layout(identifier, response_keywords(identifier, Level.IMAGE)) is not None
    identifier = _find_identifier("IMAGE", ["SmallestImagePixelValue"])  # US or SS
    assert identifier_layout(identifier, response_keywords(identifier, Level.IMAGE)) is None
