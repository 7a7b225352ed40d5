"""The audit trail: a record for every access (HTTP and DIMSE, allowed and denied), a hash chain
that finds changed, inserted and deleted records, FHIR and syslog exports, who viewed a patient."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from sqlalchemy import Connection, delete, insert, select, update

from qoima.app import build_archive
from qoima.archive import audit
from qoima.archive.access import Principal
from qoima.archive.archive import Archive
from qoima.config import load_settings
from qoima.index.audit import compute_hash
from qoima.index.tables import audit_event, audit_patient
from tests.factories import make_instance, to_bytes
from tests.security.conftest import PASSWORD, PATIENT_A, PATIENT_B, PEER_AE, SecureServer, study_uid

STUDY_A, STUDY_B = study_uid(PATIENT_A), study_uid(PATIENT_B)


def test_retrieve_is_audited_with_who_where_what(secure: SecureServer) -> None:
    after = secure.last_audit_id()
    assert secure.get(f"/dicomweb/studies/{STUDY_A}/metadata", "clinician").status_code == 200
    event = secure.wait_for_audit(lambda e: e["actor"] == "clinician", after)
    assert event["action"] == "retrieve"
    assert event["outcome"] == "success"
    assert event["role"] == "clinician"
    assert event["via"] == "token"
    assert event["source_address"] == "127.0.0.1"
    assert event["study_instance_uids"] == [STUDY_A]
    assert event["patient_ids"] == [PATIENT_A["id"]]


def test_search_is_audited_with_the_studies_it_returned(secure: SecureServer) -> None:
    after = secure.last_audit_id()
    assert secure.get("/dicomweb/studies", "radiologist").status_code == 200
    event = secure.wait_for_audit(lambda e: e["actor"] == "radiologist", after)
    assert event["action"] == "query"
    assert event["study_instance_uids"] == [STUDY_B]


def test_denied_access_is_audited(secure: SecureServer) -> None:
    after = secure.last_audit_id()
    assert secure.get(f"/dicomweb/studies/{STUDY_B}/metadata", "clinician").status_code == 403
    event = secure.wait_for_audit(lambda e: e["actor"] == "clinician", after)
    assert event["outcome"] == "denied"
    assert event["study_instance_uids"] == [STUDY_B]


def test_rest_view_is_audited(secure: SecureServer) -> None:
    after = secure.last_audit_id()
    assert secure.get(f"/api/studies/{STUDY_B}", "radiologist").status_code == 200
    event = secure.wait_for_audit(lambda e: e["actor"] == "radiologist", after)
    assert event["action"] == "retrieve"
    assert event["patient_ids"] == [PATIENT_B["id"]]


def test_login_success_and_failure_are_audited(secure: SecureServer) -> None:
    after = secure.last_audit_id()
    bad = httpx.post(f"{secure.url}/login", json={"username": "clinician", "password": "nope"})
    assert bad.status_code == 401
    good = httpx.post(f"{secure.url}/login",
                      json={"username": "clinician", "password": PASSWORD})
    assert good.status_code == 200
    denied = secure.wait_for_audit(lambda e: e["action"] == "login" and e["outcome"] == "denied",
                                   after)
    success = secure.wait_for_audit(
        lambda e: e["action"] == "login" and e["outcome"] == "success", after)
    assert denied["actor"] == success["actor"] == "clinician"


def test_login_is_rate_limited(secure: SecureServer) -> None:
    for _ in range(5):
        response = httpx.post(f"{secure.url}/login",
                              json={"username": "analyst", "password": "wrong password"})
        assert response.status_code == 401
    blocked = httpx.post(f"{secure.url}/login",
                         json={"username": "analyst", "password": PASSWORD})
    assert blocked.status_code == 429
    other = httpx.post(f"{secure.url}/login", json={"username": "auditor", "password": PASSWORD})
    assert other.status_code == 200


def test_dimse_query_is_audited(secure: SecureServer) -> None:
    after = secure.last_audit_id()
    ae = AE(ae_title=PEER_AE)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", secure.server.dicom_port, ae_title="QOIMA")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    assoc.release()
    event = secure.wait_for_audit(lambda e: e["actor"] == f"ae:{PEER_AE}", after)
    assert event["via"] == "dimse"
    assert event["action"] == "query"
    assert STUDY_A in event["study_instance_uids"]
    assert STUDY_B not in event["study_instance_uids"]


def test_rejected_association_is_audited(secure: SecureServer) -> None:
    after = secure.last_audit_id()
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", secure.server.dicom_port, ae_title="QOIMA")
    assert assoc.is_rejected
    event = secure.wait_for_audit(lambda e: e["actor"] == "ae:INTRUDER", after)
    assert event["outcome"] == "denied"


def test_who_viewed_my_images(secure: SecureServer) -> None:
    assert secure.get(f"/dicomweb/studies/{STUDY_A}/metadata", "technician").status_code == 200
    secure.wait_for_audit(lambda e: e["actor"] == "technician"
                          and PATIENT_A["id"] in e["patient_ids"])
    response = secure.get(f"/api/audit/patients/{PATIENT_A['id']}", "auditor")
    assert response.status_code == 200
    accesses = response.json()["accesses"]
    assert any(a["who"] == "technician" and a["action"] == "retrieve" for a in accesses)
    assert all(a["who"] != "radiologist" or a["action"] != "retrieve" for a in accesses)


def test_break_glass_widens_scope_and_is_audited(secure: SecureServer) -> None:
    path = f"/dicomweb/studies/{STUDY_B}/metadata"
    assert secure.get(path, "technician").status_code == 403
    short = secure.post("/api/break-glass", "technician",
                        json={"patient_id": PATIENT_B["id"], "reason": "x"})
    assert short.status_code == 400
    granted = secure.post("/api/break-glass", "technician", json={
        "patient_id": PATIENT_B["id"], "reason": "unconscious patient in the emergency room"})
    assert granted.status_code == 200
    assert secure.get(path, "technician").status_code == 200
    event = secure.wait_for_audit(lambda e: e["action"] == "break-glass")
    assert event["actor"] == "technician"
    assert event["patient_ids"] == [PATIENT_B["id"]]
    assert "emergency" in event["detail"]


def test_http_trail_verifies(secure: SecureServer) -> None:
    response = secure.get("/api/audit/verify", "auditor")
    assert response.status_code == 200
    assert response.json()["intact"] is True
    assert response.json()["records"] > 5


# The hash chain, on both backends ----------------------------------------------------------
@pytest.fixture
def trail(tmp_path: Path, database_url: str | None) -> Iterator[tuple[Archive, list[str]]]:
    """An archive with five audit records, and the CLI arguments to reach it."""
    args = ["--data-dir", str(tmp_path / "data")]
    if database_url:
        args += ["--database-url", database_url]
    archive = build_archive(load_settings(data_dir=tmp_path / "data", database_url=database_url))
    who = Principal("dr.a", "radiologist", "session", "10.0.0.7")
    for number in range(5):
        audit.record(archive, who, "retrieve", "success", patient_ids=[f"P{number}"],
                     study_instance_uids=[f"1.2.3.{number}"])
    yield archive, args
    archive.database.dispose()


def _verify_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qoima", "audit", "verify", *args],
                          capture_output=True, text=True, timeout=120)


def test_intact_trail_verifies(trail: tuple[Archive, list[str]]) -> None:
    archive, args = trail
    assert audit.verify(archive).is_intact
    result = _verify_cli(args)
    assert result.returncode == 0, result.stderr
    assert "intact: 5 records" in result.stdout


def test_records_written_in_batches_chain_and_index_their_patients(
        trail: tuple[Archive, list[str]]) -> None:
    archive, _args = trail
    studies = []
    for number in range(3):
        ds = make_instance(patient_id=f"BATCH{number}", study=f"batch-{number}")
        archive.store_instance(to_bytes(ds), "test")
        studies.append(str(ds.StudyInstanceUID))
    writer = audit.AuditWriter(archive)
    who = Principal("dr.b", "radiologist", "session", "10.0.0.8")
    for number in range(60):  # queued faster than written: the writer takes them in batches
        writer.submit(who, "query", "success",
                      study_instance_uids=[studies[number % 3], "1.2.3.unknown"])
    writer.close()
    result = audit.verify(archive)
    assert result.is_intact
    assert result.records == 65
    rows = archive.database.read(lambda conn: conn.execute(
        select(audit_patient.c.patient_id, audit_patient.c.event_id)
        .where(audit_patient.c.event_id > 5)).all())
    assert len(rows) == 60
    assert set(rows) == {(f"BATCH{(e - 6) % 3}", e) for e in range(6, 66)}


def test_a_batch_naming_over_1000_studies_still_finds_their_patients(
        trail: tuple[Archive, list[str]]) -> None:
    archive, _args = trail
    ds = make_instance(patient_id="LATE1", study="late-study")
    archive.store_instance(to_bytes(ds), "test")
    unknown = [f"1.2.3.{number}" for number in range(1200)]  # sort before the stored study
    who = Principal("dr.c", "radiologist", "session", "10.0.0.9")
    events = [audit._event(who, "query", "success", unknown[:600], (), ""),
              audit._event(who, "query", "success", [*unknown[600:], ds.StudyInstanceUID],
                           (), "")]
    [_first, second] = archive.database.write(lambda conn: audit._append(conn, events))
    rows = archive.database.read(lambda conn: conn.execute(
        select(audit_patient.c.patient_id).where(audit_patient.c.event_id == second)).all())
    assert [row.patient_id for row in rows] == ["LATE1"]
    assert audit.verify(archive).is_intact


def test_changed_record_is_found(trail: tuple[Archive, list[str]]) -> None:
    archive, args = trail
    archive.database.write(lambda conn: conn.execute(
        update(audit_event).where(audit_event.c.id == 3).values(actor="someone else")))
    result = _verify_cli(args)
    assert result.returncode == 1
    assert "record 3 was changed" in result.stderr


def test_deleted_record_is_found(trail: tuple[Archive, list[str]]) -> None:
    archive, args = trail
    def remove(conn: Connection) -> None:  # as an intruder would: the index rows too
        conn.execute(delete(audit_patient).where(audit_patient.c.event_id == 2))
        conn.execute(delete(audit_event).where(audit_event.c.id == 2))

    archive.database.write(remove)
    result = _verify_cli(args)
    assert result.returncode == 1
    assert "record 2 is missing" in result.stderr


def test_inserted_record_is_found(trail: tuple[Archive, list[str]]) -> None:
    archive, args = trail

    def forge(conn: Connection) -> None:
        # Move records 4..5 up by one and slip a forged, self-consistent record in as 4.
        conn.execute(delete(audit_patient).where(audit_patient.c.event_id >= 4))
        rows = conn.execute(select(audit_event).where(audit_event.c.id >= 4)
                            .order_by(audit_event.c.id.desc())).mappings().all()
        for row in rows:
            conn.execute(update(audit_event).where(audit_event.c.id == row["id"])
                         .values(id=row["id"] + 1))
        forged = dict(rows[-1])
        forged.update(id=4, actor="forger")
        forged["record_hash"] = compute_hash(forged)
        conn.execute(insert(audit_event).values(**forged))

    archive.database.write(forge)
    result = _verify_cli(args)
    assert result.returncode == 1
    assert "record 5 does not follow record 4" in result.stderr


def test_fhir_export(trail: tuple[Archive, list[str]]) -> None:
    _archive, args = trail
    result = subprocess.run([sys.executable, "-m", "qoima", "audit", "export", "--fhir", *args],
                            capture_output=True, text=True, timeout=120, check=True)
    resources = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(resources) == 5
    first = resources[0]
    assert first["resourceType"] == "AuditEvent"
    assert first["type"]["code"] == "110103"
    assert first["agent"][0]["who"]["display"] == "dr.a"
    assert first["agent"][0]["network"]["address"] == "10.0.0.7"
    assert {"value": "P0"} in [e["what"]["identifier"] for e in first["entity"]]


def test_syslog_export_sends_dicom_audit_messages(trail: tuple[Archive, list[str]]) -> None:
    _archive, args = trail
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        port = receiver.getsockname()[1]
        subprocess.run([sys.executable, "-m", "qoima", "audit", "export", "--syslog",
                        f"127.0.0.1:{port}", *args], check=True, timeout=120,
                       capture_output=True)
        messages = [receiver.recv(65536) for _ in range(5)]
    for message in messages:
        assert message.startswith(b"<85>1 ")  # RFC 5424: authpriv.notice, version 1
        header, _, body = message.partition(b"\xef\xbb\xbf")
        assert b"IHE+RFC-3881" in header
        assert body.startswith(b"<AuditMessage>")
        assert b'csd-code="110103"' in body
    assert b"P0" in messages[0]


def test_records_stream_to_syslog_as_they_happen(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        settings = load_settings(data_dir=tmp_path / "data", audit_syslog_host="127.0.0.1",
                                 audit_syslog_port=receiver.getsockname()[1])
        archive = build_archive(settings)
        audit.record(archive, Principal("dr.b", "clinician", "token"), "query", "success")
        message = receiver.recv(65536)
        archive.database.dispose()
    assert b'UserID="dr.b"' in message
    assert b'csd-code="110112"' in message


def test_stores_of_a_dropped_association_are_audited(secure: SecureServer,
                                                     tmp_path: Path) -> None:
    """A village link that drops mid-association (no release, no abort) still leaves its
    C-STOREs in the trail, recorded when the connection closes."""
    after = secure.last_audit_id()
    path = tmp_path / "dropped.dcm"
    make_instance(patient_id=PATIENT_A["id"], study="dropped-link").save_as(
        path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    ae = AE(ae_title=PEER_AE)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", secure.server.dicom_port, ae_title="QOIMA")
    assert assoc.is_established
    assert assoc.send_c_store(ds).Status == 0
    connection = assoc.dul.socket.socket
    connection.shutdown(socket.SHUT_RDWR)  # the link goes: no A-RELEASE, no A-ABORT
    connection.close()
    event = secure.wait_for_audit(lambda e: e["action"] == "store"
                                  and e["actor"] == f"ae:{PEER_AE}", after)
    assert event["study_instance_uids"] == [ds.StudyInstanceUID]
    assoc.kill()
