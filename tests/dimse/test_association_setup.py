"""Accepting an association: the acceptor's own thread reads the A-ASSOCIATE-RQ and answers it
before the DUL thread starts (``reactor._accept_here``). Peers that go away or send the wrong
thing at that stage, and peers that release at once, are served as pynetdicom serves them."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.scu import echo
from tests.servers import QoimaServer, running_server

_RELEASE_RQ = bytes([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0])
_P_DATA = bytes([0x04, 0, 0, 0, 0, 6, 0, 0, 0, 2, 1, 0x03])  # one empty command fragment


def _association_request(called: str) -> bytes:
    """The A-ASSOCIATE-RQ PDU that pynetdicom sends for a Verification association."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def record() -> None:
        conn, _ = listener.accept()
        with conn:
            header = _read_exactly(conn, 6)
            received.append(header + _read_exactly(conn, struct.unpack(">I", header[2:])[0]))

    recorder = threading.Thread(target=record)
    recorder.start()
    ae = AE(ae_title="RAWPEER")
    ae.acse_timeout = 2
    ae.add_requested_context(Verification)
    ae.associate("127.0.0.1", listener.getsockname()[1], ae_title=called)
    recorder.join(5)
    listener.close()
    return received[0]


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _read_pdu(conn: socket.socket) -> tuple[int, bytes]:
    header = _read_exactly(conn, 6)
    return header[0], _read_exactly(conn, struct.unpack(">I", header[2:])[0])


def _connect(server: QoimaServer) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.dicom_port), timeout=10)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def test_peers_that_leave_or_send_the_wrong_pdu_before_the_request_is_answered(
        sqlite_server: QoimaServer) -> None:
    request = _association_request("QOIMA")
    for _ in range(3):
        _connect(sqlite_server).close()  # nothing sent
        with _connect(sqlite_server) as conn:
            conn.sendall(request[:3])  # half a PDU header
        with _connect(sqlite_server) as conn:
            conn.sendall(request[:len(request) // 2])  # half a request
    with _connect(sqlite_server) as conn:  # P-DATA before any association: A-ABORT (AA-1)
        conn.sendall(_P_DATA)
        pdu_type, _ = _read_pdu(conn)
        assert pdu_type == 0x07
    assert echo(sqlite_server.dicom_port) == 0x0000
    assert "Traceback" not in sqlite_server.log()


def test_a_request_answered_and_released_at_once_is_not_held_up(
        sqlite_server: QoimaServer) -> None:
    """The release comes right behind the A-ASSOCIATE-AC, when the association's thread has
    just given the DUL to its own thread: it must be answered at once, not after the
    reactor's 50 ms fallback wait."""
    request = _association_request("QOIMA")
    took = []
    for _ in range(30):
        with _connect(sqlite_server) as conn:
            started = time.perf_counter()
            conn.sendall(request)
            assert _read_pdu(conn)[0] == 0x02  # A-ASSOCIATE-AC
            conn.sendall(_RELEASE_RQ)
            assert _read_pdu(conn)[0] == 0x06  # A-RELEASE-RP
            took.append(time.perf_counter() - started)
    assert statistics.median(took) < 0.030, took


def test_a_peer_that_never_sends_its_request_is_closed_after_the_network_timeout(
        tmp_path: Path) -> None:
    with running_server(tmp_path / "data", env={"QOIMA_NETWORK_TIMEOUT_S": "1"}) as server:
        with _connect(server) as conn:
            conn.settimeout(10)
            started = time.monotonic()
            assert conn.recv(100) == b""  # closed by the server, nothing sent
            assert 0.5 < time.monotonic() - started < 8
        assert echo(server.dicom_port) == 0x0000


def test_a_refused_request_gets_its_rejection(tmp_path: Path) -> None:
    """An association beyond the limit is rejected while negotiating, on the association's
    thread: the A-ASSOCIATE-RJ must still go out (the DUL thread is started to send it)."""
    with running_server(tmp_path / "data", env={"QOIMA_MAX_ASSOCIATIONS": "1"}) as server:
        request = _association_request("QOIMA")
        with _connect(server) as first:
            first.sendall(request)
            assert _read_pdu(first)[0] == 0x02
            with _connect(server) as second:
                second.sendall(request)
                pdu_type, body = _read_pdu(second)
                assert pdu_type == 0x03  # A-ASSOCIATE-RJ
                assert body[1:4] == bytes([0x02, 0x03, 0x02])  # transient, local limit
            first.sendall(_RELEASE_RQ)
            assert _read_pdu(first)[0] == 0x06
        assert echo(server.dicom_port) == 0x0000
