"""pynetdicom SCU helpers for tests: send files as they are, query, retrieve."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)


def send_files(port: int, paths: Iterable[Path], ae_title: str = "TESTSCU") -> dict[Path, int]:
    """C-STORE each file in its own transfer syntax; returns the status per file."""
    files = list(paths)
    headers = {p: pydicom.dcmread(p, stop_before_pixels=True, force=True) for p in files}
    pairs = sorted({(str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID))
                    for h in headers.values()})
    ae = AE(ae_title=ae_title)
    ae.requested_contexts = [build_context(sop, ts) for sop, ts in pairs[:128]]
    assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA")
    assert assoc.is_established, "association refused"
    statuses: dict[Path, int] = {}
    try:
        for path in files:
            status = assoc.send_c_store(pydicom.dcmread(path, force=True))
            statuses[path] = int(status.Status) if "Status" in status else -1
    finally:
        assoc.release()
    return statuses


def find(port: int, identifier: Dataset, model: str = "study") -> list[Dataset]:
    sop = (StudyRootQueryRetrieveInformationModelFind if model == "study"
           else PatientRootQueryRetrieveInformationModelFind)
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(sop)
    assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA")
    assert assoc.is_established
    matches: list[Dataset] = []
    try:
        for status, found in assoc.send_c_find(identifier, sop):
            assert status is not None, "no response"
            if status.Status in (0xFF00, 0xFF01):
                matches.append(found)
            elif status.Status != 0:
                raise RuntimeError(f"C-FIND failed with status 0x{status.Status:04X}")
    finally:
        assoc.release()
    return matches


def get_study(port: int, study_instance_uid: str, storage: Iterable[tuple[str, str]]
              ) -> list[Dataset]:
    """C-GET a whole study, proposing the given (SOP class, transfer syntax) pairs."""
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    pairs = sorted(set(storage))[:120]
    roles = []
    for sop, ts in pairs:
        ae.add_requested_context(sop, ts)
        roles.append(build_role(sop, scp_role=True))
    assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_instance_uid
    try:
        for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
            assert status is not None
    finally:
        assoc.release()
    return received


def echo(port: int) -> int:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA")
    if not assoc.is_established:
        return -1
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()
