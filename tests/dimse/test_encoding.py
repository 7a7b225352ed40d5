"""What ``qoima.dimse.reactor`` encodes itself is byte for byte what pynetdicom would send."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.pdu import P_DATA_TF

from qoima.dimse.reactor import _dataset_offset, _fragments, c_store_rsp_command, frame_p_data_tf
from tests.factories import make_instance, to_bytes


def _response(uid: str, status: int, message_id: int) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.Status = status
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    primitive.AffectedSOPInstanceUID = uid
    return primitive


@pytest.mark.parametrize(("uid", "status", "message_id"), [
    ("1.2.3.4.5", 0x0000, 7),  # odd length: padded with a NUL
    ("1.2.840.10008.5.1.4.1.1.2.1", 0xB000, 65535),
    ("1.2.826.0.1.3680043.8.498.36673580006242590141593211010267109865", 0xA700, 1),
])
def test_c_store_response_is_encoded_as_pynetdicom_does(uid: str, status: int,
                                                        message_id: int) -> None:
    primitive = _response(uid, status, message_id)
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    [pdata] = list(message.encode_msg(5, 16384))
    command = c_store_rsp_command(primitive)
    assert command is not None
    assert [(5, b"\x03" + command)] == pdata.presentation_data_value_list
    # and the PDU framing matches pynetdicom's P-DATA-TF encoding
    assert frame_p_data_tf(pdata.presentation_data_value_list) == P_DATA_TF(pdata).encode()


def test_c_store_response_with_an_error_comment_is_left_to_pynetdicom() -> None:
    primitive = _response("1.2.3", 0xC000, 3)
    primitive.ErrorComment = "cannot understand"
    assert c_store_rsp_command(primitive) is None


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
        assert _dataset_offset(str(path)) == split_dataset(path)[1]
