"""Audit trail rows: append with a hash chain, read back in order, look up by patient.

Each row's hash covers its id, its fields and the previous row's hash, so a changed, inserted or
deleted row breaks the chain. Rows are only ever inserted; nothing here updates or deletes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text

from qoima.index.database import raw_execute
from qoima.index.tables import audit_event, audit_patient, patient, study

GENESIS_HASH = "0" * 64
_POSTGRES_AUDIT_LOCK = 0x51_6F_69_6D_61  # pg_advisory_xact_lock key: one appender at a time
HASHED_FIELDS = ("id", "occurred_at", "actor", "role", "via", "source_address", "action",
                 "outcome", "patient_ids", "study_instance_uids", "detail", "previous_hash")


# Run on the DBAPI cursor (``raw_execute``): an audit record is appended for every query and
# retrieval, and SQLAlchemy's per-statement work cost more than SQLite's.
_LAST_EVENT = select(audit_event.c.id, audit_event.c.record_hash).order_by(
    audit_event.c.id.desc()).limit(1)
_INSERT_EVENT = insert(audit_event)
_INSERT_PATIENT = insert(audit_patient)
_PATIENT_OF_STUDY = select(patient.c.patient_id).join(
    study, patient.c.id == study.c.patient_id_fk).where(
    study.c.study_instance_uid == bindparam("b_uid"))
_FEW_STUDIES = 16  # looked up one by one; more in one IN query


@dataclass(frozen=True)
class NewAuditEvent:
    occurred_at: float
    actor: str
    role: str
    via: str
    source_address: str
    action: str
    outcome: str
    patient_ids: tuple[str, ...]
    study_instance_uids: tuple[str, ...]
    detail: str


def compute_hash(row: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the hashed fields (floats as repr, so exact)."""
    values = {name: (repr(row[name]) if name == "occurred_at" else row[name])
              for name in HASHED_FIELDS}
    canonical = json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def append_events(conn: Connection, events: list[NewAuditEvent]) -> list[dict[str, Any]]:
    """Insert events in order, each chained to the one before, with one read of the last row
    and one insert per table; run inside a write transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_AUDIT_LOCK})
    last = raw_execute(conn, _LAST_EVENT, {}).fetchone()
    next_id, previous_hash = ((last[0] + 1, last[1]) if last else (1, GENESIS_HASH))
    rows: list[dict[str, Any]] = []
    patient_rows: list[dict[str, Any]] = []
    for event in events:
        row: dict[str, Any] = {
            "id": next_id,
            "occurred_at": event.occurred_at, "actor": event.actor[:128], "role": event.role,
            "via": event.via, "source_address": event.source_address[:128],
            "action": event.action, "outcome": event.outcome,
            "patient_ids": json.dumps(sorted(set(event.patient_ids))),
            "study_instance_uids": json.dumps(sorted(set(event.study_instance_uids))),
            "detail": event.detail[:2000],
            "previous_hash": previous_hash,
        }
        row["record_hash"] = previous_hash = compute_hash(row)
        rows.append(row)
        patient_rows += [{"event_id": next_id, "patient_id": p}
                         for p in sorted({p[:64] for p in event.patient_ids if p})]
        next_id += 1
    for row in rows:
        raw_execute(conn, _INSERT_EVENT, row).close()
    for patient_row in patient_rows:
        raw_execute(conn, _INSERT_PATIENT, patient_row).close()
    return rows


def iter_events(conn: Connection, after_id: int = 0, batch: int = 1000
                ) -> Iterator[dict[str, Any]]:
    """Every event in id order, in batches (the trail may be long)."""
    while True:
        rows = conn.execute(select(audit_event).where(audit_event.c.id > after_id)
                            .order_by(audit_event.c.id).limit(batch)).mappings().all()
        if not rows:
            return
        for row in rows:
            yield dict(row)
        after_id = rows[-1]["id"]


def events_for_patient(conn: Connection, patient_id: str, limit: int = 1000
                       ) -> list[dict[str, Any]]:
    query = (select(audit_event).join(audit_patient, audit_patient.c.event_id == audit_event.c.id)
             .where(audit_patient.c.patient_id == patient_id)
             .order_by(audit_event.c.id.desc()).limit(limit))
    return [dict(row) for row in conn.execute(query).mappings()]


def count_events(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(audit_event)).scalar_one())


def patients_of_studies(conn: Connection, study_instance_uids: list[str]) -> dict[str, str]:
    """StudyInstanceUID -> PatientID for the studies that exist."""
    if not study_instance_uids:
        return {}
    if len(study_instance_uids) <= _FEW_STUDIES:
        found = {}
        for uid in study_instance_uids:
            row = raw_execute(conn, _PATIENT_OF_STUDY, {"b_uid": uid}).fetchone()
            if row is not None:
                found[uid] = row[0] or ""
        return found
    query = (select(study.c.study_instance_uid, patient.c.patient_id)
             .join(patient, patient.c.id == study.c.patient_id_fk)
             .where(study.c.study_instance_uid.in_(study_instance_uids[:1000])))
    return {row.study_instance_uid: row.patient_id or "" for row in conn.execute(query)}
