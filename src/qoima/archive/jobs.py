"""AI job use cases: schedule jobs for stable studies, claim, finish, retry, recover.

The ``ai`` layer decides which pipelines apply and runs them; this module only keeps the rows.
Job rows are written in the same transaction that marks the study as scheduled, so a study is
never half-scheduled, and the unique (study, pipeline, model_version) key makes it idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from qoima.archive.archive import Archive
from qoima.index import jobs as index_jobs
from qoima.index.jobs import CandidateInstance, JobRow

logger = logging.getLogger(__name__)

PENDING = index_jobs.PENDING
RUNNING = index_jobs.RUNNING
DONE = index_jobs.DONE
SKIPPED = index_jobs.SKIPPED
FAILED = index_jobs.FAILED
FINAL_STATUSES = index_jobs.FINAL_STATUSES

# Decides, from indexed values only, which (pipeline, model_version) pairs apply to a study.
JobChooser = Callable[[list[CandidateInstance]], list[tuple[str, str]]]


@dataclass(frozen=True)
class ScheduledJob:
    id: int
    study_instance_uid: str
    pipeline: str
    model_version: str


class Jobs:
    """The job table, through the archive's database."""

    def __init__(self, archive: Archive) -> None:
        self.database = archive.database

    def schedule_stable_studies(self, cutoff: float, since: float, choose: JobChooser,
                                limit: int = 200) -> tuple[list[ScheduledJob], float]:
        """Write jobs for studies unchanged since ``cutoff``; returns the new jobs (to enqueue
        after commit) and the newest ``updated_at`` looked at (the caller's next ``since``).

        One transaction for the whole batch: few commits, so ingest is not slowed."""
        studies = self.database.read(
            lambda conn: index_jobs.unscheduled_stable_studies(conn, cutoff, since, limit))
        if not studies:
            return [], max(since, cutoff)

        def work(conn: Connection) -> list[ScheduledJob]:
            now = time.time()
            created: list[ScheduledJob] = []
            for study_instance_uid, updated_at in studies:
                candidates = index_jobs.study_candidates(conn, study_instance_uid)
                pipelines = choose(candidates) if candidates else []
                job_ids = index_jobs.insert_jobs(conn, study_instance_uid, pipelines, now)
                # An image that came after a finished job (a PA after a lateral, say) is read.
                job_ids += index_jobs.rerun_jobs_with_new_inputs(conn, study_instance_uid,
                                                                 pipelines, now)
                for job_id in job_ids:
                    row = index_jobs.get_job(conn, job_id)
                    if row is not None:
                        created.append(ScheduledJob(row.id, row.study_instance_uid,
                                                    row.pipeline, row.model_version))
                index_jobs.mark_study_scheduled(conn, study_instance_uid, updated_at, now)
            return created

        created = self.database.write(work)
        for job in created:
            logger.info("job %d scheduled: study %s pipeline %s version %s", job.id,
                        job.study_instance_uid, job.pipeline, job.model_version)
        newest = max(updated_at for _, updated_at in studies)
        return created, newest if len(studies) >= limit else max(since, cutoff)

    def claim(self, job_id: int, lease_s: float) -> JobRow | None:
        return self.database.write(
            lambda conn: index_jobs.claim_job(conn, job_id, time.time(), lease_s))

    def get(self, job_id: int) -> JobRow | None:
        return self.database.read(lambda conn: index_jobs.get_job(conn, job_id))

    def finish(self, job_id: int, status: str, *, result: str | None = None,
               error: str | None = None, study_priority: float | None = None) -> None:
        """Record the outcome (and the study's worklist priority) in one transaction."""
        def work(conn: Connection) -> None:
            index_jobs.finish_job(conn, job_id, status, result=result, error=error)
            if study_priority is not None:
                row = index_jobs.get_job(conn, job_id)
                if row is not None:
                    index_jobs.set_study_priority(conn, row.study_instance_uid, study_priority)

        self.database.write(work)

    def last_ingest_at(self) -> float | None:
        """When the newest instance that AI did not make was stored."""
        return self.database.read(index_jobs.last_ingest_at)

    def retry(self, job_id: int, next_attempt_at: float, error: str) -> None:
        self.database.write(lambda conn: index_jobs.retry_job(conn, job_id, next_attempt_at,
                                                              error))

    def requeue(self, job_id: int) -> bool:
        """Run a finished job again (its existing outputs are kept, not duplicated)."""
        return self.database.write(lambda conn: index_jobs.requeue_job(conn, job_id,
                                                                       time.time()))

    def set_study_priority(self, study_instance_uid: str, priority: float) -> None:
        self.database.write(lambda conn: index_jobs.set_study_priority(
            conn, study_instance_uid, priority))

    def study_priority(self, study_instance_uid: str) -> float | None:
        return self.database.read(
            lambda conn: index_jobs.study_priority(conn, study_instance_uid))

    def unfinished(self, lease_s: float) -> list[JobRow]:
        return self.database.read(
            lambda conn: index_jobs.unfinished_jobs(conn, time.time(), lease_s))

    def list(self, study_instance_uid: str | None = None, limit: int = 1000) -> list[JobRow]:
        return self.database.read(
            lambda conn: index_jobs.list_jobs(conn, study_instance_uid, limit))

    def counts(self) -> dict[str, int]:
        return self.database.read(index_jobs.count_jobs_by_status)


__all__ = ["FAILED", "FINAL_STATUSES", "PENDING", "RUNNING", "SKIPPED", "CandidateInstance",
           "JobRow", "Jobs", "ScheduledJob"]
