"""Worklist queries: studies by AI priority then waiting time, claims, facets, patient studies.

Every query pages in SQL and is served by an index (ix_study_worklist_order, the study and
patient indexes), so a page costs the same at 100 studies or 100,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from qoima.dicom.attributes import Level
from qoima.dicom.query import ReadScope
from qoima.errors import Conflict, NotFound
from qoima.index.search import scope_clause
from qoima.index.tables import (
    WORKLIST_PRIORITY,
    facility_region,
    instance,
    jobs,
    patient,
    report,
    series,
    study,
    study_claim,
)


@dataclass(frozen=True)
class WorklistFilter:
    region: str | None = None
    institution_name: str | None = None
    modality: str | None = None
    date_from: str | None = None  # YYYYMMDD
    date_to: str | None = None
    ai: str | None = None  # flagged, clear, pending
    status: str = "unreported"  # unreported, claimed, draft, signed, all
    patient_id: str | None = None
    flag_threshold: float = 0.5
    limit: int = 50
    offset: int = 0
    scope: ReadScope | None = None  # the caller's scope, applied in SQL (None: unrestricted)


COUNT_CAP = 10000  # totals beyond this are shown as "10000+": counting 100k rows costs a scan


def _worklist_order() -> list[Any]:
    # The same expression as ix_study_worklist_order, with the constant inline: a bound
    # parameter would not match the index expression and the database would sort every row.
    return [WORKLIST_PRIORITY.desc(), study.c.created_at, study.c.id]


def _study_columns(now: float) -> list[Any]:
    live_claim = and_(study_claim.c.study_instance_uid == study.c.study_instance_uid,
                      study_claim.c.expires_at > now)
    claim_owner = select(study_claim.c.owner).where(live_claim).scalar_subquery()
    return [
        study.c.study_instance_uid, study.c.study_date, study.c.study_time,
        study.c.study_description, study.c.accession_number, study.c.institution_name,
        study.c.patient_age, study.c.modalities_in_study, study.c.ai_priority,
        study.c.number_of_series, study.c.number_of_instances, study.c.created_at,
        study.c.updated_at, patient.c.patient_name, patient.c.patient_id,
        patient.c.patient_birth_date, patient.c.patient_sex, facility_region.c.region,
        report.c.status.label("report_status"), report.c.author.label("report_author"),
        report.c.ai_agreement, claim_owner.label("claim_owner"),
    ]


def _from_clause() -> Any:
    return (study.join(patient, patient.c.id == study.c.patient_id_fk)
            .outerjoin(facility_region,
                       facility_region.c.institution_name == study.c.institution_name)
            .outerjoin(report, report.c.study_instance_uid == study.c.study_instance_uid))


def _where(criteria: WorklistFilter, now: float) -> list[Any]:
    clauses: list[Any] = []
    live_claim = (select(study_claim.c.study_instance_uid)
                  .where(study_claim.c.study_instance_uid == study.c.study_instance_uid,
                         study_claim.c.expires_at > now).exists())
    signed = report.alias("signed_report")  # the outer report join must not correlate in
    is_signed = (select(signed.c.id)
                 .where(signed.c.study_instance_uid == study.c.study_instance_uid,
                        signed.c.status == "signed").exists())
    if criteria.status == "unreported":
        # NOT EXISTS, not an OR over the outer join: PostgreSQL estimates an anti-join well and
        # then walks ix_study_worklist_order, stopping after one page.
        clauses.append(~is_signed)
    elif criteria.status == "claimed":
        clauses.append(live_claim)
    elif criteria.status == "signed":
        clauses.append(is_signed)
    elif criteria.status == "draft":
        clauses.append(report.c.status == "draft")
    if criteria.region:
        # As facility names, so that ix_study_institution_name serves the region too.
        clauses.append(study.c.institution_name.in_(
            select(facility_region.c.institution_name)
            .where(facility_region.c.region == criteria.region)))
    if criteria.institution_name:
        clauses.append(study.c.institution_name == criteria.institution_name)
    if criteria.modality:
        clauses.append(study.c.modalities_in_study.like(f"%\\{criteria.modality}\\%"))
    if criteria.date_from:
        clauses.append(study.c.study_date >= criteria.date_from)
    if criteria.date_to:
        clauses.append(study.c.study_date <= criteria.date_to)
    if criteria.ai == "flagged":
        clauses.append(study.c.ai_priority >= criteria.flag_threshold)
    elif criteria.ai == "clear":
        clauses.append(study.c.ai_priority < criteria.flag_threshold)
    elif criteria.ai == "pending":
        clauses.append(study.c.ai_priority.is_(None))
    if criteria.patient_id:
        clauses.append(patient.c.patient_id == criteria.patient_id)
    if criteria.scope is not None:
        clauses.append(scope_clause(criteria.scope, Level.STUDY))
    return clauses


def find_worklist(conn: Connection, criteria: WorklistFilter, now: float
                  ) -> tuple[list[dict[str, Any]], int]:
    """One page of the worklist and the number of matches (at most COUNT_CAP + 1)."""
    where = and_(*_where(criteria, now))
    statement = (select(*_study_columns(now)).select_from(_from_clause()).where(where)
                 .order_by(*_worklist_order()).limit(criteria.limit).offset(criteria.offset))
    rows = [dict(row._mapping) for row in conn.execute(statement)]
    counted = study.outerjoin(report, report.c.study_instance_uid == study.c.study_instance_uid)
    if criteria.patient_id or criteria.scope is not None:
        counted = counted.join(patient, patient.c.id == study.c.patient_id_fk)
    capped = (select(study.c.id).select_from(counted).where(where)
              .limit(COUNT_CAP + 1).subquery())
    total = conn.execute(select(func.count()).select_from(capped)).scalar_one()
    return rows, int(total)


def ai_results(conn: Connection, study_instance_uids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """AI job rows (pipeline, status, JSON result text) for these studies, newest first."""
    out: dict[str, list[dict[str, Any]]] = {uid: [] for uid in study_instance_uids}
    if not study_instance_uids:
        return out
    statement = (select(jobs.c.study_instance_uid, jobs.c.pipeline, jobs.c.model_version,
                        jobs.c.status, jobs.c.result, jobs.c.error, jobs.c.updated_at)
                 .where(jobs.c.study_instance_uid.in_(study_instance_uids))
                 .order_by(jobs.c.updated_at.desc()))
    for row in conn.execute(statement):
        out[row.study_instance_uid].append(dict(row._mapping))
    return out


def find_study(conn: Connection, study_instance_uid: str, now: float) -> dict[str, Any]:
    statement = (select(*_study_columns(now)).select_from(_from_clause())
                 .where(study.c.study_instance_uid == study_instance_uid))
    row = conn.execute(statement).first()
    if row is None:
        raise NotFound(f"study {study_instance_uid} not found")
    return dict(row._mapping)


def study_series(conn: Connection, study_instance_uid: str) -> list[dict[str, Any]]:
    """Series of a study with their first instance and its origin (AI outputs say ``ai``)."""
    inner = instance.alias("first_instance")
    first_instance = (select(func.min(inner.c.id)).where(inner.c.series_id_fk == series.c.id)
                      .scalar_subquery())
    statement = (select(series.c.series_instance_uid, series.c.modality, series.c.series_number,
                        series.c.series_description, series.c.number_of_instances,
                        instance.c.sop_instance_uid, instance.c.sop_class_uid, instance.c.rows,
                        instance.c.columns, instance.c.origin)
                 .select_from(series.join(study, study.c.id == series.c.study_id_fk)
                              .join(instance, instance.c.id == first_instance))
                 .where(study.c.study_instance_uid == study_instance_uid)
                 .order_by(series.c.series_number, series.c.id))
    return [dict(row._mapping) for row in conn.execute(statement)]


def series_instances(conn: Connection, series_instance_uid: str) -> list[str]:
    statement = (select(instance.c.sop_instance_uid)
                 .select_from(instance.join(series, series.c.id == instance.c.series_id_fk))
                 .where(series.c.series_instance_uid == series_instance_uid)
                 .order_by(instance.c.instance_number, instance.c.id))
    return [str(uid) for uid in conn.execute(statement).scalars()]


def patient_studies(conn: Connection, patient_id: str, now: float) -> list[dict[str, Any]]:
    """Every study of one PatientID (any issuer, any facility), newest first."""
    statement = (select(*_study_columns(now)).select_from(_from_clause())
                 .where(patient.c.patient_id == patient_id)
                 .order_by(study.c.study_date.desc(), study.c.study_time.desc(), study.c.id.desc())
                 .limit(500))
    return [dict(row._mapping) for row in conn.execute(statement)]


def facets(conn: Connection) -> dict[str, list[str]]:
    """Values for the worklist filter menus."""
    institutions = conn.execute(select(study.c.institution_name).distinct()
                                .where(study.c.institution_name.is_not(None))
                                .order_by(study.c.institution_name).limit(1000)).scalars()
    regions = conn.execute(select(facility_region.c.region).distinct()
                           .order_by(facility_region.c.region)).scalars()
    modalities = conn.execute(select(series.c.modality).distinct()
                              .where(series.c.modality.is_not(None))
                              .order_by(series.c.modality)).scalars()
    return {"institutions": [str(v) for v in institutions], "regions": [str(v) for v in regions],
            "modalities": [str(v) for v in modalities]}


def set_facility_region(conn: Connection, institution_name: str, region: str) -> None:
    conn.execute(delete(facility_region)
                 .where(facility_region.c.institution_name == institution_name))
    conn.execute(insert(facility_region).values(institution_name=institution_name, region=region))


def claim_study(conn: Connection, study_instance_uid: str, owner: str, now: float,
                ttl_s: float) -> float:
    """Claim (or renew) a study for ``owner``; Conflict when someone else holds a live claim.
    Returns the expiry time."""
    if conn.execute(select(study.c.id).where(study.c.study_instance_uid == study_instance_uid)
                    ).first() is None:
        raise NotFound(f"study {study_instance_uid} not found")
    current = conn.execute(select(study_claim.c.owner, study_claim.c.expires_at)
                           .where(study_claim.c.study_instance_uid == study_instance_uid)
                           .with_for_update()).first()
    expires_at = now + ttl_s
    if current is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(study_claim).values(
                    study_instance_uid=study_instance_uid, owner=owner, claimed_at=now,
                    expires_at=expires_at))
        except IntegrityError as exc:
            raise Conflict(f"study {study_instance_uid} was claimed concurrently") from exc
        return expires_at
    if current.owner != owner and current.expires_at > now:
        raise Conflict(f"study {study_instance_uid} is claimed by {current.owner}")
    conn.execute(update(study_claim)
                 .where(study_claim.c.study_instance_uid == study_instance_uid)
                 .values(owner=owner, claimed_at=now, expires_at=expires_at))
    return expires_at


def claim_owner(conn: Connection, study_instance_uid: str, now: float) -> str | None:
    return conn.execute(select(study_claim.c.owner)
                        .where(study_claim.c.study_instance_uid == study_instance_uid,
                               study_claim.c.expires_at > now)).scalar()


def release_claim(conn: Connection, study_instance_uid: str, owner: str) -> None:
    conn.execute(delete(study_claim).where(study_claim.c.study_instance_uid == study_instance_uid,
                                           study_claim.c.owner == owner))
