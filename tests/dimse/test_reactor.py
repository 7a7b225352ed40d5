"""The association reactor and a ``send_*`` call that pauses it: the reactor must not take a
message off the queue while the call has it paused (the response it waits for).

pynetdicom's ``send_*`` methods clear ``_reactor_checkpoint`` and wait until the reactor reads
as paused, then send and wait for the response on the same queue the reactor reads. Here the
checkpoint is cleared at the worst moment, as the reactor passes it, which in a real run happened
about once in a few thousand C-MOVE sub-operations (the move then stalled until the DIMSE
timeout). The association is a stand-in for pynetdicom's: only what the loop touches."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from io import BytesIO
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.uid import UID
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import (
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_MOVE_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    DIMSEMessage,
)
from pynetdicom.dimse_primitives import C_CANCEL, C_ECHO, C_MOVE, C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import build_context
from pynetdicom.utils import set_uid

from qoima.dicom.header import part10
from qoima.dimse import reactor
from tests.factories import make_instance


class _ClearedAsPassed(threading.Event):
    """A checkpoint that a ``send_*`` call clears just as the reactor first passes it."""

    def __init__(self) -> None:
        super().__init__()
        self.set()
        self.calls = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.calls += 1
        result = super().wait(timeout)
        if self.calls == 1:
            self.clear()
        return result


def _association(checkpoint: threading.Event, taken: list[bool]) -> Any:
    assoc = SimpleNamespace(_kill=False, _is_paused=False, _qoima_wake=threading.Event(),
                            _reactor_checkpoint=checkpoint, is_established=True)

    def get_msg(block: bool = False) -> tuple[None, None]:
        taken.append(checkpoint.is_set())  # False: taken while a sender has it paused
        assoc._kill = True
        return None, None

    assoc.dimse = SimpleNamespace(get_msg=get_msg)
    assoc.acse = SimpleNamespace(is_release_requested=lambda: False,
                                 is_aborted=lambda *args: False)
    assoc.dul = SimpleNamespace(is_alive=lambda: True, idle_timer_expired=lambda: False)
    assoc.kill = lambda: None
    assoc._qoima_wake.set()  # a message has arrived
    return assoc


def test_reactor_leaves_the_queue_to_a_sender_that_paused_it() -> None:
    checkpoint = _ClearedAsPassed()
    taken: list[bool] = []
    assoc = _association(checkpoint, taken)
    loop = threading.Thread(target=reactor._association_run_reactor, args=(assoc,), daemon=True)
    loop.start()
    deadline = time.monotonic() + 5
    while not (taken or (checkpoint.calls >= 2 and assoc._is_paused)):
        assert time.monotonic() < deadline, "the reactor neither paused nor read the queue"
        time.sleep(0.001)
    assert taken == [], "the reactor read the queue while a sender had it paused"
    checkpoint.set()  # the sender has its response
    loop.join(5)
    assert taken == [True]


def test_buffers_sent_with_sendmsg_arrive_whole_and_in_order_through_partial_sends() -> None:
    """A batch of framed PDUs goes out as a list of buffers with ``sendmsg``; a reader slower
    than the sender (a small send buffer) makes the kernel take a part at a time, and the
    send resumes inside a buffer. The peer must read exactly the joined bytes (a send that
    did not resume where the kernel stopped fails this)."""
    listener = socket.create_server(("127.0.0.1", 0))
    left = socket.create_connection(listener.getsockname())
    right, _ = listener.accept()
    listener.close()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    left.settimeout(30)  # as pynetdicom's sockets: sends may then be partial
    parts: list[bytes | memoryview] = []
    block = memoryview(bytes(range(256)) * 4096)  # 1 MiB, as a file block is read
    for index in range(64):
        parts += (struct.pack(">I", index) * 3, block[index * 16384:(index + 1) * 16384])
    expected = b"".join(parts)
    received = bytearray()

    def read_slowly() -> None:
        while len(received) < len(expected):
            chunk = right.recv(7000)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    closed: list[str] = []
    sender = SimpleNamespace(socket=left, assoc=SimpleNamespace(get_handlers=lambda event: []),
                             event_queue=SimpleNamespace(put=closed.append))
    try:
        reactor._socket_send(lambda self, data: None)(sender, parts)
        reader.join(30)
    finally:
        left.close()
        right.close()
    assert closed == []
    assert bytes(received) == expected


def _encoded(primitive: Any, message_class: Any) -> bytes:
    message = message_class()
    message.primitive_to_message(primitive)
    return bytes(encode(message.command_set, True, True))


def _pynetdicom_decoded(command: bytes) -> Any:
    message = DIMSEMessage()
    p_data = P_DATA()
    p_data.presentation_data_value_list = [[1, b"\x03" + command]]
    assert message.decode_msg(p_data)
    return message.message_to_primitive()


def test_command_sets_decode_to_what_pynetdicom_makes_of_them() -> None:
    """``_decode_command`` against pynetdicom's own decoding of the same bytes: every
    parameter equal, or None where the command holds what only pydicom decodes."""
    store_rsp = C_STORE()
    store_rsp.MessageIDBeingRespondedTo = 7
    store_rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    store_rsp.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    store_rsp.Status = 0xB007
    echo_rq = C_ECHO()
    echo_rq.MessageID = 3
    echo_rq.AffectedSOPClassUID = "1.2.840.10008.1.1"
    move_rsp = C_MOVE()
    move_rsp.MessageIDBeingRespondedTo = 2
    move_rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
    move_rsp.Status = 0xFF00
    move_rsp.NumberOfRemainingSuboperations = 9
    move_rsp.NumberOfCompletedSuboperations = 3
    move_rsp.NumberOfFailedSuboperations = 0
    move_rsp.NumberOfWarningSuboperations = 1
    cancel = C_CANCEL()
    cancel.MessageIDBeingRespondedTo = 2
    for primitive, message_class in ((store_rsp, C_STORE_RSP), (echo_rq, C_ECHO_RQ),
                                     (move_rsp, C_MOVE_RSP), (cancel, C_CANCEL_RQ)):
        command = _encoded(primitive, message_class)
        values = reactor._decode_command(memoryview(command))
        assert values is not None, message_class.__name__
        expected = _pynetdicom_decoded(command)
        for keyword, value in values.items():
            if hasattr(expected, keyword):
                assert getattr(expected, keyword) == value, keyword
        assert values["CommandDataSetType"] == 0x0101
    # an error comment (LO) is left to pydicom; so is a truncated command set
    store_rsp.ErrorComment = "disk full"
    command = _encoded(store_rsp, C_STORE_RSP)
    assert reactor._decode_command(memoryview(command)) is None
    assert reactor._decode_command(memoryview(command[:-3])) is None


def test_received_messages_become_the_primitives_pynetdicom_makes() -> None:
    """A C-STORE request whose data set comes in many fragments, over several P-DATA
    primitives, and a C-STORE response: Qoima's receive path and pynetdicom's own give
    equal primitives; a command fragment inside a data set is refused as an invalid PDU."""
    request = C_STORE()
    request.MessageID = 11
    request.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    request.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.7"
    request.Priority = 2
    request.MoveOriginatorApplicationEntityTitle = "MOVER"
    request.MoveOriginatorMessageID = 3
    request.DataSet = BytesIO(bytes(range(256)) * 40)
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 11
    response.AffectedSOPClassUID = request.AffectedSOPClassUID
    response.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
    response.Status = 0
    for primitive, message_class in ((request, C_STORE_RQ), (response, C_STORE_RSP)):
        message = message_class()
        message.primitive_to_message(primitive)
        p_datas = list(message.encode_msg(1, 1000))
        received = []
        for receive in (reactor_receive, pynetdicom_receive):
            dimse = _dimse_provider()
            for p_data in p_datas:
                receive(dimse, p_data)
            received.append(dimse.msg_queue.get_nowait()[1])
        ours, theirs = received
        assert type(ours) is type(theirs)
        for name in ("MessageID", "MessageIDBeingRespondedTo", "AffectedSOPClassUID",
                     "AffectedSOPInstanceUID", "Priority", "Status",
                     "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID"):
            assert getattr(ours, name, None) == getattr(theirs, name, None), name
        if primitive is request:
            assert len(p_datas) > 3
            assert ours.DataSet.getvalue() == theirs.DataSet.getvalue() == \
                bytes(range(256)) * 40
    dimse = _dimse_provider()
    p_datas = list(message_with_data(request))
    reactor_receive(dimse, p_datas[0])
    reactor_receive(dimse, p_datas[0])  # the command again where data should follow
    assert dimse.msg_queue.empty()
    assert dimse.dul.event_queue.get_nowait() == "Evt19"


def message_with_data(primitive: Any) -> Any:
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return message.encode_msg(1, 1000)


def _dimse_provider() -> Any:
    dimse = SimpleNamespace(message=None, msg_queue=queue.Queue(), cancel_req={},
                            dul=SimpleNamespace(event_queue=queue.Queue()))
    dimse.assoc = SimpleNamespace(get_handlers=lambda event: [], _accepted_cx={})
    return dimse


def pynetdicom_receive(dimse: Any, p_data: Any) -> None:
    """What pynetdicom's ``receive_primitive`` does with a C-service message."""
    if dimse.message is None:
        dimse.message = DIMSEMessage()
    if dimse.message.decode_msg(p_data, dimse.assoc):
        message, dimse.message = dimse.message, None
        dimse.msg_queue.put((message.context_id, message.message_to_primitive()))


# the receive path ``reactor.install`` puts in, without installing it in the test process
# (whose pynetdicom peers must stay pynetdicom's own)
reactor_receive = reactor._receive_primitive(DIMSEServiceProvider.receive_primitive)


# pydicom may warn about the over-long UID first, depending on its validation settings
@pytest.mark.filterwarnings("ignore:The value length:UserWarning")
def test_uid_setter_shortcut_returns_what_pynetdicom_returns() -> None:
    """``_set_uid`` skips pydicom's validation only for conformant UIDs, and returns for
    every value what pynetdicom's ``set_uid`` does (non-conformant ones still go to it)."""
    shortcut = reactor._set_uid(set_uid)
    for value in ("1.2.840.10008.5.1.4.1.1.2", UID("1.2.840.10008.1.2.1"), "1." + "2" * 62,
                  "", None, b"1.2.840.10008.1.2", b"1.2.840.10008.1.2\0", b""):
        ours, theirs = shortcut(value, "UID"), set_uid(value, "UID")
        assert ours == theirs
        assert type(ours) is type(theirs)
    with pytest.raises(ValueError, match="must not exceed 64"):
        shortcut("1." + "2" * 63, "UID")  # pynetdicom's path and error


def test_a_received_c_store_data_set_is_gathered_behind_its_file_meta() -> None:
    """On an accepted context, a C-STORE request's data set is gathered behind the File Meta
    header the archive stores it with: ``part10`` is the very file that ``header.part10``
    makes of it, while pynetdicom (``getvalue``, ``seek``, ``tell``, decoding) sees the data
    set alone."""
    ds = make_instance(patient_name="ӘБІЛҚАСЫМОВА^ҰЛЖАН", charset="ISO_IR 192")
    encoded = encode(ds, True, True)
    assert encoded is not None
    request = C_STORE()
    request.MessageID = 5
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 0
    request.DataSet = BytesIO(encoded)
    context = build_context(ds.SOPClassUID, ["1.2.840.10008.1.2"])
    context.context_id = 1
    dimse = _dimse_provider()
    dimse.assoc._accepted_cx = {1: context}
    for p_data in message_with_data(request):
        reactor_receive(dimse, p_data)
    received = dimse.msg_queue.get_nowait()[1].DataSet
    assert isinstance(received, reactor.Part10DataSet)
    assert received.part10() == part10(encoded, ds.SOPClassUID, ds.SOPInstanceUID,
                                       "1.2.840.10008.1.2")
    assert received.getvalue() == encoded
    assert received.seek(0) == 0
    assert received.read(8) == encoded[:8]
    assert received.tell() == 8
    assert decode(received, True, True) == decode(BytesIO(encoded), True, True)
