"""The association reactor and a ``send_*`` call that pauses it: the reactor must not take a
message off the queue while the call has it paused (the response it waits for).

pynetdicom's ``send_*`` methods clear ``_reactor_checkpoint`` and wait until the reactor reads
as paused, then send and wait for the response on the same queue the reactor reads. Here the
checkpoint is cleared at the worst moment, as the reactor passes it, which in a real run happened
about once in a few thousand C-MOVE sub-operations (the move then stalled until the DIMSE
timeout). The association is a stand-in for pynetdicom's: only what the loop touches."""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import SimpleNamespace
from typing import Any

from qoima.dimse import reactor


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
