"""AI job rows: scheduling stable studies, claiming a job with a guarded UPDATE, finishing it.

Status flow: pending -> running -> done | skipped | failed, or running -> pending (retry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from qoima.index.tables import instance, jobs, series, study

PENDING = "pending"
RUNNING = "running"
DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"
FINAL_STATUSES = frozenset({DONE, SKIPPED, FAILED})


@dataclass(frozen=True)
class JobRow:
    id: int
    study_instance_uid: str
    pipeline: str
    model_version: str
    status: str
    attempts: int
    next_attempt_at: float
    error: str | None
    result: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class CandidateInstance:
    """What a scheduler needs to decide whether a pipeline applies, from indexed values only."""

    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    modality: str
    body_part_examined: str
    view_position: str
    origin: str


def _job(row: Any) -> JobRow:
    return JobRow(*row)


_JOB_COLUMNS = (jobs.c.id, jobs.c.study_instance_uid, jobs.c.pipeline, jobs.c.model_version,
                jobs.c.status, jobs.c.attempts, jobs.c.next_attempt_at, jobs.c.error,
                jobs.c.result, jobs.c.created_at, jobs.c.updated_at)


def unscheduled_stable_studies(conn: Connection, cutoff: float, since: float,
                               limit: int) -> list[tuple[str, float]]:
    """Studies last changed in (since, cutoff] that the scheduler has not seen since then."""
    rows = conn.execute(
        select(study.c.study_instance_uid, study.c.updated_at)
        .where(study.c.updated_at <= cutoff, study.c.updated_at > since,
               or_(study.c.ai_scheduled_at.is_(None),
                   study.c.ai_scheduled_at < study.c.updated_at))
        .order_by(study.c.updated_at).limit(limit)
    ).all()
    return [(str(uid), float(updated_at)) for uid, updated_at in rows]


def study_candidates(conn: Connection, study_instance_uid: str) -> list[CandidateInstance]:
    rows = conn.execute(
        select(instance.c.sop_instance_uid, series.c.series_instance_uid,
               instance.c.sop_class_uid, series.c.modality, series.c.body_part_examined,
               instance.c.view_position, instance.c.origin)
        .join(series, series.c.id == instance.c.series_id_fk)
        .join(study, study.c.id == series.c.study_id_fk)
        .where(study.c.study_instance_uid == study_instance_uid)
        .order_by(series.c.series_number, instance.c.instance_number, instance.c.id)
    ).all()
    return [CandidateInstance(*(value or "" for value in row)) for row in rows]


def insert_jobs(conn: Connection, study_instance_uid: str,
                pipelines: list[tuple[str, str]], now: float) -> list[int]:
    """Insert one pending job per (pipeline, model_version); existing ones are left alone.

    Returns the ids of the rows this call created (the unique constraint makes it idempotent).
    """
    created: list[int] = []
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for pipeline, model_version in pipelines:
        statement = (
            dialect_insert(jobs)
            .values(study_instance_uid=study_instance_uid, pipeline=pipeline,
                    model_version=model_version, status=PENDING, attempts=0,
                    next_attempt_at=now, created_at=now, updated_at=now)
            .on_conflict_do_nothing(
                index_elements=["study_instance_uid", "pipeline", "model_version"])
            .returning(jobs.c.id)
        )
        new_id = conn.execute(statement).scalar()
        if new_id is not None:
            created.append(int(new_id))
    return created


def latest_input_at(conn: Connection, study_instance_uid: str) -> float | None:
    """When the study's newest instance not made by AI was stored."""
    value = conn.execute(
        select(func.max(instance.c.created_at))
        .join(series, series.c.id == instance.c.series_id_fk)
        .join(study, study.c.id == series.c.study_id_fk)
        .where(study.c.study_instance_uid == study_instance_uid,
               instance.c.origin.not_like("ai:%"))).scalar()
    return None if value is None else float(value)


def rerun_jobs_with_new_inputs(conn: Connection, study_instance_uid: str,
                               pipelines: list[tuple[str, str]], now: float) -> list[int]:
    """Finished jobs of the study that have not seen its newest input go back to pending.

    ``next_attempt_at`` is when the job last became due: every input it read is older, so an
    input newer than that may be unseen (at worst one redundant run, never a missed one)."""
    newest = latest_input_at(conn, study_instance_uid)
    if newest is None or not pipelines:
        return []
    rerun = []
    for pipeline, model_version in pipelines:
        job_id = conn.execute(
            update(jobs)
            .where(jobs.c.study_instance_uid == study_instance_uid,
                   jobs.c.pipeline == pipeline, jobs.c.model_version == model_version,
                   jobs.c.status.in_(sorted(FINAL_STATUSES)), jobs.c.next_attempt_at < newest)
            .values(status=PENDING, attempts=0, next_attempt_at=now, error=None, updated_at=now)
            .returning(jobs.c.id)).scalar()
        if job_id is not None:
            rerun.append(int(job_id))
    return rerun


def mark_study_scheduled(conn: Connection, study_instance_uid: str, seen_updated_at: float,
                         now: float) -> None:
    # Only if nothing arrived meanwhile; otherwise the study is looked at again later.
    conn.execute(update(study).where(study.c.study_instance_uid == study_instance_uid,
                                     study.c.updated_at <= seen_updated_at)
                 .values(ai_scheduled_at=max(now, seen_updated_at)))


def claim_job(conn: Connection, job_id: int, now: float, lease_s: float) -> JobRow | None:
    """pending -> running (or take over a running job whose lease expired). None: not ours."""
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id,
               or_(jobs.c.status == PENDING,
                   and_(jobs.c.status == RUNNING, jobs.c.updated_at < now - lease_s)))
        .values(status=RUNNING, attempts=jobs.c.attempts + 1, updated_at=now)
    )
    if result.rowcount != 1:
        return None
    return get_job(conn, job_id)


def get_job(conn: Connection, job_id: int) -> JobRow | None:
    row = conn.execute(select(*_JOB_COLUMNS).where(jobs.c.id == job_id)).first()
    return None if row is None else _job(row)


def finish_job(conn: Connection, job_id: int, status: str, *, result: str | None = None,
               error: str | None = None) -> None:
    conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == RUNNING)
                 .values(status=status, result=result, error=error, updated_at=time.time()))


def last_ingest_at(conn: Connection) -> float | None:
    """When the newest instance not made by AI was stored (newest rows first, by key)."""
    value = conn.execute(select(instance.c.created_at)
                         .where(instance.c.origin.not_like("ai:%"))
                         .order_by(instance.c.id.desc()).limit(1)).scalar()
    return None if value is None else float(value)


def retry_job(conn: Connection, job_id: int, next_attempt_at: float, error: str) -> None:
    conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == RUNNING)
                 .values(status=PENDING, next_attempt_at=next_attempt_at, error=error,
                         updated_at=time.time()))


def set_study_priority(conn: Connection, study_instance_uid: str, priority: float) -> None:
    conn.execute(update(study).where(study.c.study_instance_uid == study_instance_uid)
                 .values(ai_priority=priority))


def study_priority(conn: Connection, study_instance_uid: str) -> float | None:
    value = conn.execute(select(study.c.ai_priority)
                         .where(study.c.study_instance_uid == study_instance_uid)).scalar()
    return None if value is None else float(value)


def unfinished_jobs(conn: Connection, now: float, lease_s: float) -> list[JobRow]:
    """Pending jobs, and running jobs whose worker has not reported within the lease."""
    rows = conn.execute(
        select(*_JOB_COLUMNS)
        .where(or_(jobs.c.status == PENDING,
                   and_(jobs.c.status == RUNNING, jobs.c.updated_at < now - lease_s)))
        .order_by(jobs.c.id)
    ).all()
    return [_job(row) for row in rows]


def list_jobs(conn: Connection, study_instance_uid: str | None = None,
              limit: int = 1000) -> list[JobRow]:
    statement = select(*_JOB_COLUMNS).order_by(jobs.c.id.desc()).limit(limit)
    if study_instance_uid is not None:
        statement = statement.where(jobs.c.study_instance_uid == study_instance_uid)
    return [_job(row) for row in conn.execute(statement).all()]


def count_jobs_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
    return {str(status): int(count) for status, count in rows}


def requeue_job(conn: Connection, job_id: int, now: float) -> bool:
    """A finished job back to pending with a fresh attempt count (operator "run again")."""
    result = conn.execute(update(jobs).where(jobs.c.id == job_id,
                                             jobs.c.status.in_(sorted(FINAL_STATUSES)))
                          .values(status=PENDING, attempts=0, next_attempt_at=now, error=None,
                                  updated_at=now))
    return result.rowcount == 1
