"""C-GET and C-MOVE sub-operations against pynetdicom peers that cancel, abort or come back:
the serving thread that runs them must give its association back in a state that serves on."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.factories import make_instance, uid_for
from tests.scu import send_files
from tests.servers import QoimaServer, free_port

_COUNT = 12
# The test peer aborts from a thread of its own while its pynetdicom still answers the
# C-STORE in hand: its DUL then logs an invalid event in its own process, not Qoima's.
_PEER_ABORTS = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnhandledThreadExceptionWarning")


def _store_study(server: QoimaServer, tmp_path: Path, study: str) -> str:
    paths = []
    for number in range(1, _COUNT + 1):
        path = tmp_path / f"{study}-{number}.dcm"
        make_instance(study=study, number=number).save_as(path, enforce_file_format=True)
        paths.append(path)
    assert set(send_files(server.dicom_port, paths).values()) == {0}
    return uid_for(study)


def _identifier(study_uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    return identifier


def _get_association(server: QoimaServer, on_store: Any) -> Any:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="QOIMA",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    return assoc


def _final(responses: list[Dataset]) -> Dataset:
    assert responses, "no response"
    return responses[-1]


def test_c_get_cancelled_midway_ends_with_cancel_and_the_association_serves_on(
        server: QoimaServer, tmp_path: Path) -> None:
    study_uid = _store_study(server, tmp_path, "cancel-get")
    received: list[str] = []
    state: dict[str, Any] = {"cancel_at": 3, "assoc": None, "msg_id": 1}

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        if len(received) == state["cancel_at"]:
            state["assoc"].send_c_cancel(state["msg_id"],
                                         query_model=StudyRootQueryRetrieveInformationModelGet)
        return 0

    assoc = _get_association(server, on_store)
    state["assoc"] = assoc
    try:
        responses = [status for status, _ in assoc.send_c_get(
            _identifier(study_uid), StudyRootQueryRetrieveInformationModelGet, msg_id=1)]
        final = _final(responses)
        assert final.Status == 0xFE00, f"0x{final.Status:04X}"
        assert state["cancel_at"] <= len(received) < _COUNT
        assert final.NumberOfCompletedSuboperations == len(received)
        # the same association answers an echo, then a whole C-GET
        assert assoc.send_c_echo().Status == 0
        state["cancel_at"] = 0
        received.clear()
        responses = [status for status, _ in assoc.send_c_get(
            _identifier(study_uid), StudyRootQueryRetrieveInformationModelGet, msg_id=5)]
        final = _final(responses)
        assert final.Status == 0x0000
        assert final.NumberOfCompletedSuboperations == _COUNT
        assert sorted(received) == sorted(uid_for("cancel-get", "series-1", n)
                                          for n in range(1, _COUNT + 1))
        pending = [r for r in responses if r.Status == 0xFF00]
        assert [r.NumberOfRemainingSuboperations for r in pending] == \
            list(range(_COUNT - 1, -1, -1))
    finally:
        assoc.release()


@_PEER_ABORTS
def test_c_get_peer_that_aborts_midway_leaves_the_server_serving(
        server: QoimaServer, tmp_path: Path) -> None:
    study_uid = _store_study(server, tmp_path, "abort-get")
    received: list[str] = []
    done = threading.Event()

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        if len(received) == 4:
            threading.Thread(target=lambda: (event.assoc.abort(), done.set())).start()
        return 0

    assoc = _get_association(server, on_store)
    with contextlib.suppress(Exception):  # the aborted association ends the C-GET any way
        list(assoc.send_c_get(_identifier(study_uid), StudyRootQueryRetrieveInformationModelGet))
    assert done.wait(10)
    assert assoc.is_aborted
    assert len(received) < _COUNT
    # a new association gets the whole study at once
    received.clear()
    started = time.monotonic()
    fresh = _get_association(server, lambda event: received.append(1) or 0)
    try:
        final = _final([s for s, _ in fresh.send_c_get(
            _identifier(study_uid), StudyRootQueryRetrieveInformationModelGet)])
    finally:
        fresh.release()
    assert final.Status == 0
    assert len(received) == _COUNT
    assert time.monotonic() - started < 10


class _Destination:
    """A pynetdicom storage SCP as a C-MOVE destination; aborts at instance ``abort_at``."""

    def __init__(self, abort_at: int = 0) -> None:
        self.port = free_port()
        self.received: list[str] = []
        self.abort_at = abort_at
        ae = AE(ae_title="DEST")
        ae.add_supported_context(CTImageStorage)
        self.ae = ae
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])

    def _on_store(self, event: Any) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        if len(self.received) == self.abort_at:
            threading.Thread(target=event.assoc.abort).start()
        return 0

    def close(self) -> None:
        self.server.shutdown()


def _move(server: QoimaServer, study_uid: str) -> list[Dataset]:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="QOIMA")
    assert assoc.is_established
    try:
        return [status for status, _ in assoc.send_c_move(
            _identifier(study_uid), "DEST", StudyRootQueryRetrieveInformationModelMove)]
    finally:
        assoc.release()


@_PEER_ABORTS
def test_c_move_to_a_destination_that_aborts_midway_reports_failures_then_moves_again(
        server: QoimaServer, tmp_path: Path) -> None:
    study_uid = _store_study(server, tmp_path, "abort-move")
    destination = _Destination(abort_at=5)
    try:
        server.qoima("ae", "add", *server.cli_args(), "DEST", "127.0.0.1",
                     str(destination.port))
        started = time.monotonic()
        final = _final(_move(server, study_uid))
        assert time.monotonic() - started < 20
        assert final.Status in (0xA702, 0xB000), f"0x{final.Status:04X}"
        assert final.NumberOfFailedSuboperations >= 1
        assert final.NumberOfCompletedSuboperations + final.NumberOfFailedSuboperations \
            + final.get("NumberOfWarningSuboperations", 0) == _COUNT
        destination.received.clear()
        destination.abort_at = 0
        responses = _move(server, study_uid)
        final = _final(responses)
        assert final.Status == 0
        assert final.NumberOfCompletedSuboperations == _COUNT
        assert sorted(destination.received) == sorted(
            uid_for("abort-move", "series-1", n) for n in range(1, _COUNT + 1))
        assert sum(1 for r in responses if r.Status == 0xFF00) == _COUNT
    finally:
        destination.close()
