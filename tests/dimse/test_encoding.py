"""What ``qoima.dimse.reactor`` encodes itself is byte for byte what pynetdicom would send."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from qoima.dimse.reactor import c_store_rsp_command, frame_p_data_tf


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
