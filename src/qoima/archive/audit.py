"""The audit trail: who did what to which patient's data, when, from where, with what outcome.

Records are appended to a hash chain (``index.audit``); ``verify`` walks it and reports the first
changed, inserted or deleted record. Exports: FHIR AuditEvent JSON and DICOM audit messages
(PS3.15 A.5) sent as RFC 5424 syslog over UDP. Nothing here logs patient identifiers.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from qoima.archive.access import Principal
from qoima.archive.archive import Archive
from qoima.index import audit as index_audit
from qoima.index.audit import GENESIS_HASH, NewAuditEvent

logger = logging.getLogger(__name__)

ACTIONS = ("query", "retrieve", "store", "delete", "report", "export", "login", "logout",
           "break-glass", "settings", "audit")
SYSTEM = Principal("qoima", "admin", "system")


@dataclass(frozen=True)
class VerifyResult:
    is_intact: bool
    records: int
    head_hash: str
    first_bad_id: int | None = None
    problem: str = ""


def record(archive: Archive, principal: Principal | None, action: str, outcome: str, *,
           study_instance_uids: Iterable[str] = (), patient_ids: Iterable[str] = (),
           detail: str = "") -> int:
    """Append one audit record; patient IDs of the studies are looked up here. Returns its id."""
    event = _event(principal, action, outcome, study_instance_uids, patient_ids, detail)
    [event_id] = archive.database.write(lambda conn: _append(conn, [event]))
    _after_write(archive, event_id, 1)
    return event_id


def _event(principal: Principal | None, action: str, outcome: str,
           study_instance_uids: Iterable[str], patient_ids: Iterable[str],
           detail: str) -> NewAuditEvent:
    """The event as it happened now; studies' patients are added when it is written."""
    who = principal or SYSTEM
    return NewAuditEvent(time.time(), who.name, who.role, who.via, who.source_address, action,
                         outcome, tuple(patient_ids), tuple(study_instance_uids), detail)


def _append(conn: Any, events: list[NewAuditEvent]) -> list[int]:
    """Append ``events`` in order, with the patients of their studies looked up here."""
    studies = {event: sorted({u for u in event.study_instance_uids if u})[:1000]
               for event in events}
    every_study = sorted({uid for uids in studies.values() for uid in uids})
    patient_of: dict[str, str] = {}
    for start in range(0, len(every_study), 1000):  # patients_of_studies takes 1000 at most
        patient_of.update(index_audit.patients_of_studies(conn, every_study[start:start + 1000]))
    rows = index_audit.append_events(conn, [dataclasses.replace(
        event, patient_ids=tuple(p for p in set(event.patient_ids)
                                 | {patient_of[u] for u in studies[event] if u in patient_of}
                                 if p),
        study_instance_uids=tuple(studies[event])) for event in events])
    return [int(row["id"]) for row in rows]


def _after_write(archive: Archive, last_id: int, count: int) -> None:
    target = getattr(archive, "audit_syslog_target", None)
    if target is not None:
        try:
            send_syslog(events(archive, last_id - count, limit=count), *target)
        except OSError:
            logger.exception("audit records up to %d not sent to syslog", last_id)
    logger.debug("audit records up to %d written", last_id)


class AuditWriter:
    """Appends audit records on one background thread, a batch per transaction, so that an
    HTTP request never waits for the trail's write and commit. A batch takes what arrives
    within ``LINGER_S`` of its first record: one request after another (a viewer's QIDO
    queries) then shares a commit instead of paying one each (about 0.7 ms of server CPU
    per request). ``close`` writes what is still queued; a crash loses at most the records
    of the last few tens of milliseconds."""

    LINGER_S = 0.025

    def __init__(self, archive: Archive, max_batch: int = 200) -> None:
        self.archive = archive
        self.max_batch = max_batch
        self._queue: queue.Queue[NewAuditEvent | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, principal: Principal | None, action: str, outcome: str, *,
               study_instance_uids: Iterable[str] = (), detail: str = "") -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer",
                                                daemon=True)
                self._thread.start()
        self._queue.put(_event(principal, action, outcome, study_instance_uids, (), detail))

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.LINGER_S
            while len(batch) < self.max_batch and batch[-1] is not None:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            pending = [item for item in batch if item is not None]
            if pending:
                self._write(pending)
            if len(pending) < len(batch):
                return

    def _write(self, pending: list[NewAuditEvent]) -> None:
        try:
            ids = self.archive.database.write(
                lambda conn: _append(conn, pending))
        except Exception:
            logger.exception("%d audit records could not be written", len(pending))
            return
        _after_write(self.archive, ids[-1], len(ids))


def verify(archive: Archive) -> VerifyResult:
    """Walk the chain: each record's hash, its link to the previous one, and gapless ids."""
    def work(conn: Any) -> VerifyResult:
        previous_hash, expected_id, count = GENESIS_HASH, 1, 0
        for row in index_audit.iter_events(conn):
            count += 1
            if row["id"] != expected_id:
                return VerifyResult(False, count, previous_hash, expected_id,
                                    f"record {expected_id} is missing (next is {row['id']})")
            if row["previous_hash"] != previous_hash:
                return VerifyResult(False, count, previous_hash, row["id"],
                                    f"record {row['id']} does not follow record "
                                    f"{row['id'] - 1} (inserted or reordered)")
            if index_audit.compute_hash(row) != row["record_hash"]:
                return VerifyResult(False, count, previous_hash, row["id"],
                                    f"record {row['id']} was changed")
            previous_hash, expected_id = row["record_hash"], expected_id + 1
        return VerifyResult(True, count, previous_hash)

    return archive.database.read(work)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["patient_ids"] = json.loads(row["patient_ids"])
    out["study_instance_uids"] = json.loads(row["study_instance_uids"])
    out["occurred_at_iso"] = _iso(row["occurred_at"])
    return out


def events(archive: Archive, after_id: int = 0, limit: int = 10**9) -> list[dict[str, Any]]:
    def work(conn: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for row in index_audit.iter_events(conn, after_id):
            rows.append(_decoded(row))
            if len(rows) >= limit:
                break
        return rows

    return archive.database.read(work)


def who_viewed(archive: Archive, patient_id: str) -> list[dict[str, Any]]:
    """The patient-facing view: who accessed this patient's data, when, from which facility
    and for what; other patients in the same record are not shown."""
    rows = archive.database.read(lambda conn: index_audit.events_for_patient(conn, patient_id))
    return [{"when": _iso(r["occurred_at"]), "who": r["actor"], "role": r["role"],
             "via": r["via"], "action": r["action"], "outcome": r["outcome"],
             "studies": len(json.loads(r["study_instance_uids"]))}
            for r in rows if r["outcome"] == "success"]


def _iso(epoch_s: float) -> str:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


# FHIR AuditEvent (R4) --------------------------------------------------------------------------
_FHIR_ACTION = {"query": "E", "retrieve": "R", "store": "C", "delete": "D", "report": "U",
                "export": "R", "login": "E", "logout": "E", "break-glass": "E",
                "settings": "U", "audit": "R"}
_DCM_EVENT = {  # PS3.15 A.5.3 event IDs (DCM code values) by our action
    "query": ("110112", "Query"), "retrieve": ("110103", "DICOM Instances Accessed"),
    "store": ("110104", "DICOM Instances Transferred"), "delete": ("110105", "DICOM Study Deleted"),
    "report": ("110103", "DICOM Instances Accessed"), "export": ("110106", "Export"),
    "login": ("110114", "User Authentication"), "logout": ("110114", "User Authentication"),
    "break-glass": ("110113", "Security Alert"), "settings": ("110113", "Security Alert"),
    "audit": ("110101", "Audit Log Used"),
}


def to_fhir(event: dict[str, Any], site: str = "qoima") -> dict[str, Any]:
    """One record as a FHIR R4 AuditEvent resource."""
    code, display = _DCM_EVENT.get(event["action"], ("110100", "Application Activity"))
    outcome = {"success": "0", "denied": "4", "failed": "8"}.get(event["outcome"], "8")
    entities: list[dict[str, Any]] = [
        {"what": {"identifier": {"value": pid}},
         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                  "code": "1", "display": "Person"}} for pid in event["patient_ids"]]
    entities += [{"what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}},
                  "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                           "code": "2", "display": "System Object"}}
                 for uid in event["study_instance_uids"]]
    return {
        "resourceType": "AuditEvent",
        "id": str(event["id"]),
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": code,
                 "display": display},
        "action": _FHIR_ACTION.get(event["action"], "E"),
        "recorded": event["occurred_at_iso"],
        "outcome": outcome,
        "outcomeDesc": event["detail"][:200] if event["outcome"] != "success" else "",
        "agent": [{"who": {"display": event["actor"]}, "requestor": True,
                   "role": [{"text": event["role"]}],
                   "network": {"address": event["source_address"], "type": "2"}}],
        "source": {"site": site, "observer": {"display": site}},
        "entity": entities,
        "extension": [{"url": "urn:qoima:audit-hash", "valueString": event["record_hash"]}],
    }


# DICOM audit message (PS3.15 A.5) and RFC 5424 syslog ------------------------------------------
def to_dicom_audit_xml(event: dict[str, Any], site: str = "qoima") -> str:
    """One record as a DICOM Audit Message (PS3.15 A.5.1 schema, RFC 3881 derived)."""
    code, display = _DCM_EVENT.get(event["action"], ("110100", "Application Activity"))
    action_code = _FHIR_ACTION.get(event["action"], "E")
    outcome = {"success": "0", "denied": "4", "failed": "8"}.get(event["outcome"], "8")
    parts = [
        "<AuditMessage>",
        f'<EventIdentification EventActionCode="{action_code}" '
        f'EventDateTime="{event["occurred_at_iso"]}" EventOutcomeIndicator="{outcome}">',
        f'<EventID csd-code="{code}" codeSystemName="DCM" originalText={quoteattr(display)}/>',
        "</EventIdentification>",
        f'<ActiveParticipant UserID={quoteattr(event["actor"])} UserIsRequestor="true" '
        f'NetworkAccessPointID={quoteattr(event["source_address"] or "unknown")} '
        'NetworkAccessPointTypeCode="2">'
        f'<RoleIDCode csd-code="{escape(event["role"])}" codeSystemName="qoima" '
        f'originalText={quoteattr(event["role"])}/></ActiveParticipant>',
        f"<AuditSourceIdentification AuditSourceID={quoteattr(site)}/>",
    ]
    for uid in event["study_instance_uids"]:
        parts.append(f'<ParticipantObjectIdentification ParticipantObjectID={quoteattr(uid)} '
                     'ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">'
                     '<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" '
                     'originalText="Study Instance UID"/></ParticipantObjectIdentification>')
    for pid in event["patient_ids"]:
        parts.append(f'<ParticipantObjectIdentification ParticipantObjectID={quoteattr(pid)} '
                     'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">'
                     '<ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" '
                     'originalText="Patient Number"/></ParticipantObjectIdentification>')
    parts.append("</AuditMessage>")
    return "".join(parts)


def to_syslog(event: dict[str, Any], hostname: str = "qoima", site: str = "qoima") -> bytes:
    """RFC 5424 message with the DICOM audit XML as MSG (facility 10 authpriv, notice)."""
    priority = 10 * 8 + 5
    header = (f"<{priority}>1 {event['occurred_at_iso']} {hostname} qoima - "
              f"IHE+RFC-3881 [qoima@32473 id=\"{event['id']}\" "
              f"hash=\"{event['record_hash']}\"] ")
    return header.encode("utf-8") + b"\xef\xbb\xbf" + to_dicom_audit_xml(event, site).encode()


def send_syslog(events_to_send: list[dict[str, Any]], host: str, port: int = 514) -> int:
    """Send records over UDP (RFC 5426); returns how many were sent."""
    sent = 0
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_DGRAM) as sock:
        for event in events_to_send:
            sock.sendto(to_syslog(event, socket.gethostname()), (host, port))
            sent += 1
    return sent


def iter_fhir(archive: Archive, after_id: int = 0) -> Iterator[dict[str, Any]]:
    for event in events(archive, after_id):
        yield to_fhir(event)
