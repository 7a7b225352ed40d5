"""Writing and reading instance rows: one transaction per stored instance."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert

from qoima.dicom.attributes import Level, attributes_at
from qoima.errors import NotFound
from qoima.index.database import raw_execute
from qoima.index.tables import changes, instance, patient, series, study


@dataclass(frozen=True)
class InstanceRow:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int
    content_hash: str  # "algorithm:hex digest"


@dataclass(frozen=True)
class NewInstance:
    values: dict[str, Any]  # keyword -> index value, from dicom.header.ParsedInstance
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int
    content_hash: str  # "algorithm:hex digest"
    origin: str


def normalise_person_name(value: object) -> str | None:
    """Case-folded form used for case-insensitive PN matching (PS3.4 C.2.2.2.1)."""
    return None if value is None else str(value).casefold()


def _row_values(level: Level, values: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for attribute in attributes_at(level):
        value = values.get(attribute.keyword)
        if isinstance(value, str) and attribute.vr not in ("US", "IS"):
            value = value[:324] if attribute.vr == "PN" else value[:64]
        row[attribute.column] = value
        if attribute.vr == "PN":
            row[f"{attribute.column}_norm"] = normalise_person_name(value)
    return row


# Statements are built once: constructing SQLAlchemy statements per instance costs more than
# running them on SQLite.
_FIND_INSTANCE = (
    select(instance.c.sop_instance_uid, series.c.series_instance_uid,
           study.c.study_instance_uid, instance.c.sop_class_uid,
           instance.c.transfer_syntax_uid, instance.c.blob_key, instance.c.size_bytes,
           instance.c.content_hash)
    .join(series, series.c.id == instance.c.series_id_fk)
    .join(study, study.c.id == series.c.study_id_fk)
    .where(instance.c.sop_instance_uid == bindparam("b_uid"))
)
_PATIENT_PK = select(patient.c.id).where(patient.c.patient_key == bindparam("b_key"))
_STUDY_ROW = select(study.c.id, study.c.modalities_in_study, study.c.sop_classes_in_study).where(
    study.c.study_instance_uid == bindparam("b_key"))
_STUDY_PK = select(study.c.id).where(study.c.study_instance_uid == bindparam("b_key"))
_SERIES_PK = select(series.c.id).where(series.c.series_instance_uid == bindparam("b_key"))
_INSERT_INSTANCE = insert(instance)
_INSERT_CHANGE = insert(changes)
_UPDATE_SERIES = update(series).where(series.c.id == bindparam("b_pk")).values(
    number_of_instances=series.c.number_of_instances + 1,
    size_bytes=series.c.size_bytes + bindparam("b_size"))
_UPDATE_STUDY_COUNTS = update(study).where(study.c.id == bindparam("b_pk")).values(
    number_of_instances=study.c.number_of_instances + 1,
    size_bytes=study.c.size_bytes + bindparam("b_size"),
    number_of_series=study.c.number_of_series + bindparam("b_new_series"),
    updated_at=bindparam("b_now"))
# only when the study gains a modality or SOP class: setting an indexed column, even to the
# value it has, rewrites a page of its index (one more page in every commit's WAL on SQLite)
_UPDATE_STUDY = _UPDATE_STUDY_COUNTS.values(
    modalities_in_study=bindparam("b_modalities"),
    sop_classes_in_study=bindparam("b_sop_classes"))
_PATIENT_DEMOGRAPHICS = ("patient_name", "patient_name_norm", "patient_birth_date", "patient_sex")
_UPDATE_PATIENT = update(patient).where(patient.c.id == bindparam("b_pk")).values(
    {patient.c[column]: bindparam(f"b_{column}") for column in _PATIENT_DEMOGRAPHICS})
_INSERTS: dict[str, Any] = {}


def find_instance(conn: Connection, sop_instance_uid: str) -> InstanceRow | None:
    row = raw_execute(conn, _FIND_INSTANCE, {"b_uid": sop_instance_uid}).fetchone()
    return None if row is None else InstanceRow(*row)


def _insert_returning_pk(conn: Connection, table: Any, key_column: str,
                         values: dict[str, Any]) -> int | None:
    """Insert one row and return its id; None if a concurrent writer inserted it first."""
    dialect = conn.dialect.name
    statement = _INSERTS.get(f"{dialect}:{table.name}")
    if statement is None:
        if dialect == "postgresql":
            statement = (postgresql_insert(table).on_conflict_do_nothing(
                index_elements=[key_column]).returning(table.c.id))
        else:
            statement = insert(table).returning(table.c.id)
        _INSERTS[f"{dialect}:{table.name}"] = statement
    cursor = raw_execute(conn, statement, values)
    try:
        rows = cursor.fetchall()  # to the end: SQLite finishes an INSERT ... RETURNING there
    finally:
        cursor.close()
    return int(rows[0][0]) if rows else None


def _get_or_create(conn: Connection, lookup: Any, table: Any, key_column: str, key: str,
                   values: dict[str, Any]) -> tuple[int, bool]:
    existing = raw_execute(conn, lookup, {"b_key": key}).fetchone()
    if existing is not None:
        return int(existing[0]), False
    new_id = _insert_returning_pk(conn, table, key_column, values)
    if new_id is None:
        return int(conn.execute(lookup, {"b_key": key}).scalar_one()), False
    return new_id, True


def insert_instance(conn: Connection, new: NewInstance) -> None:
    """Insert patient/study/series rows as needed, the instance row and a change row."""
    now = time.time()
    values = new.values
    patient_id = values.get("PatientID") or ""
    issuer = values.get("IssuerOfPatientID") or ""
    study_uid = values["StudyInstanceUID"]
    # Studies without PatientID are kept apart rather than merged into one anonymous patient.
    patient_key = f"{patient_id}\x1f{issuer}" if patient_id else f"\x1e{study_uid}"
    patient_values = _row_values(Level.PATIENT, values)
    patient_pk, _ = _get_or_create(conn, _PATIENT_PK, patient, "patient_key", patient_key, {
        **patient_values, "patient_key": patient_key, "created_at": now})
    study_row = raw_execute(conn, _STUDY_ROW, {"b_key": study_uid}).fetchone()
    if study_row is None:
        _get_or_create(conn, _STUDY_PK, study,
                       "study_instance_uid", study_uid, {
                           **_row_values(Level.STUDY, values), "patient_id_fk": patient_pk,
                           "patient_name": patient_values["patient_name"],
                           "patient_name_norm": patient_values["patient_name_norm"],
                           "number_of_series": 0, "number_of_instances": 0, "size_bytes": 0,
                           "created_at": now, "updated_at": now})
        study_row = raw_execute(conn, _STUDY_ROW, {"b_key": study_uid}).fetchone()
        # The patient's current demographics are those of the newest study received.
        raw_execute(conn, _UPDATE_PATIENT, {"b_pk": patient_pk, **{
            f"b_{column}": patient_values[column] for column in _PATIENT_DEMOGRAPHICS}})
    study_pk, modalities, sop_classes = study_row
    series_pk, is_new_series = _get_or_create(
        conn, _SERIES_PK, series, "series_instance_uid", values["SeriesInstanceUID"], {
            **_row_values(Level.SERIES, values), "study_id_fk": study_pk,
            "number_of_instances": 0, "size_bytes": 0, "created_at": now})
    raw_execute(conn, _INSERT_INSTANCE, {
        **_row_values(Level.IMAGE, values), "series_id_fk": series_pk,
        "transfer_syntax_uid": new.transfer_syntax_uid, "blob_key": new.blob_key,
        "size_bytes": new.size_bytes, "content_hash": new.content_hash, "origin": new.origin[:200],
        "created_at": now})
    raw_execute(conn, _UPDATE_SERIES, {"b_pk": series_pk, "b_size": new.size_bytes})
    counts = {"b_pk": study_pk, "b_size": new.size_bytes, "b_new_series": int(is_new_series),
              "b_now": now}
    new_modalities = _with_member(modalities, values.get("Modality"))
    new_sop_classes = _with_member(sop_classes, values.get("SOPClassUID"))
    if new_modalities == modalities and new_sop_classes == sop_classes:
        raw_execute(conn, _UPDATE_STUDY_COUNTS, counts)
    else:
        raw_execute(conn, _UPDATE_STUDY, {**counts, "b_modalities": new_modalities,
                                          "b_sop_classes": new_sop_classes})
    raw_execute(conn, _INSERT_CHANGE, {"kind": "instance_stored",
                                       "study_instance_uid": study_uid,
                                       "sop_instance_uid": values["SOPInstanceUID"],
                                       "created_at": now})


def _with_member(existing: str | None, value: object) -> str | None:
    """ModalitiesInStudy/SOPClassesInStudy kept as ``\\A\\B\\``, for LIKE matching."""
    members = set(filter(None, (existing or "").split("\\")))
    if value:
        members.add(str(value))
    return ("\\" + "\\".join(sorted(members)) + "\\") if members else None


def delete_instance_row(conn: Connection, sop_instance_uid: str) -> InstanceRow:
    """Remove one instance row, fixing counts; empty series/studies/patients go too."""
    row = find_instance(conn, sop_instance_uid)
    if row is None:
        raise NotFound(f"instance {sop_instance_uid} not found")
    series_pk, study_pk = conn.execute(
        select(series.c.id, series.c.study_id_fk).where(
            series.c.series_instance_uid == row.series_instance_uid)).one()
    conn.execute(delete(instance).where(instance.c.sop_instance_uid == sop_instance_uid))
    conn.execute(update(series).where(series.c.id == series_pk).values(
        number_of_instances=series.c.number_of_instances - 1,
        size_bytes=series.c.size_bytes - row.size_bytes))
    conn.execute(update(study).where(study.c.id == study_pk).values(
        number_of_instances=study.c.number_of_instances - 1,
        size_bytes=study.c.size_bytes - row.size_bytes))
    remaining = conn.execute(select(func.count()).select_from(instance).where(
        instance.c.series_id_fk == series_pk)).scalar_one()
    if remaining == 0:
        conn.execute(delete(series).where(series.c.id == series_pk))
        conn.execute(update(study).where(study.c.id == study_pk).values(
            number_of_series=study.c.number_of_series - 1))
        modalities = sorted({m for (m,) in conn.execute(
            select(series.c.modality).where(series.c.study_id_fk == study_pk)) if m})
        conn.execute(update(study).where(study.c.id == study_pk).values(
            modalities_in_study=("\\" + "\\".join(modalities) + "\\") if modalities else None))
    return row


def all_blob_keys(conn: Connection, keys: list[str]) -> set[str]:
    """Which of ``keys`` are referenced by an instance row."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        found.update(k for (k,) in conn.execute(
            select(instance.c.blob_key).where(instance.c.blob_key.in_(chunk))))
    return found


def count_totals(conn: Connection) -> dict[str, int]:
    out = {name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
           for name, table in (("patients", patient), ("studies", study), ("series", series),
                               ("instances", instance))}
    out["size_bytes"] = int(conn.execute(
        select(func.coalesce(func.sum(instance.c.size_bytes), 0))).scalar_one())
    return out
