"""AI job execution: claim a job row, run its pipeline, store the outputs; and the service that
runs the scheduler and queue consumers inside ``qoima serve``.

One job: claim (guarded UPDATE), load the study through the archive, run the pipeline, store
the heatmaps and the SR (skipping those already stored), write the priority, mark the job done.
Failures retry with exponential backoff and end as ``failed`` with the reason.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from qoima.ai.outputs import OutputUids, build_heatmap_overlay, build_measurement_report
from qoima.ai.pipelines.chest_triage import (
    ChestTriageInput,
    ChestTriageResult,
    NotApplicable,
    Radiograph,
    run_chest_triage,
)
from qoima.ai.queue import AiQueue, open_huey
from qoima.ai.registry import AI_ORIGIN_PREFIX, InstalledModel, Registry
from qoima.ai.scheduler import Scheduler
from qoima.archive import Archive, StoredInstance
from qoima.archive.jobs import DONE, FAILED, SKIPPED, JobRow, Jobs
from qoima.dicom.attributes import Level
from qoima.dicom.query import Condition, Query
from qoima.errors import Conflict, InvalidDicom, NotFound

logger = logging.getLogger(__name__)
current_job_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("job_id",
                                                                            default=None)
_niced = threading.local()


@dataclass(frozen=True)
class WorkerOptions:
    lease_s: float = 600.0  # a running job not finished within this is taken over
    max_attempts: int = 4
    backoff_base_s: float = 5.0  # retry n waits base * 2**(n-1), capped
    backoff_max_s: float = 600.0
    thread_niceness: int = 10  # inference yields the CPU to ingest
    # While instances are arriving, a job waits (at most max_defer_s) for a pause of
    # ingest_quiet_s, so AI work does not compete with a burst of ingest on a small machine.
    ingest_quiet_s: float = 2.0
    max_defer_s: float = 10.0


@dataclass(frozen=True)
class AiServiceOptions:
    data_dir: Path
    stable_age_s: float = 10.0
    queue_url: str = ""
    queue_name: str = "qoima-ai"
    workers: int = 1
    threads: int = 2
    models_dirs: tuple[Path, ...] = ()
    include_shipped_models: bool = True
    worker: WorkerOptions = WorkerOptions()


def _study_query(level: Level, study_instance_uid: str) -> Query:
    return Query(level, (Condition("StudyInstanceUID", "uid_list",
                                   values=(study_instance_uid,)),))


def _lower_thread_priority(niceness: int) -> None:
    """Renice this thread once (Linux: niceness is per thread and inherited by the threads
    onnxruntime starts from it), so inference never starves ingest of CPU."""
    if niceness <= 0 or getattr(_niced, "done", False):
        return
    _niced.done = True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (OSError, AttributeError):
        logger.debug("could not lower the AI worker thread priority")


class JobRunner:
    """Runs one job by id. Never raises: the outcome is written to the job row."""

    def __init__(self, archive: Archive, registry: Registry,
                 options: WorkerOptions | None = None) -> None:
        self.archive = archive
        self.registry = registry
        self.options = options or WorkerOptions()
        self.jobs = Jobs(archive)

    def run_job(self, job_id: int) -> float | None:
        """Execute job ``job_id``; returns the delay before a retry, or None when finished."""
        _lower_thread_priority(self.options.thread_niceness)
        token = current_job_id.set(job_id)
        try:
            self._wait_for_ingest_pause()
            started = time.monotonic()
            job = self.jobs.claim(job_id, self.options.lease_s)
            if job is None:
                logger.debug("job %d not claimable (done, running elsewhere or gone)", job_id)
                return None
            return self._run_claimed(job, started)
        finally:
            current_job_id.reset(token)

    def _wait_for_ingest_pause(self) -> None:
        quiet_s = self.options.ingest_quiet_s
        deadline = time.monotonic() + self.options.max_defer_s
        while quiet_s > 0 and time.monotonic() < deadline:
            last = self.jobs.last_ingest_at()
            if last is None or time.time() - last >= quiet_s:
                return
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    def _run_claimed(self, job: JobRow, started: float) -> float | None:
        try:
            model = self.registry.get(job.pipeline, job.model_version)
            summary = self._execute(job, model)
        except NotApplicable as exc:
            self._finish(job, SKIPPED, started, error=f"not applicable: {exc}")
        except NotFound as exc:
            self._finish(job, FAILED, started, error=str(exc))
        except InvalidDicom as exc:
            self._finish(job, FAILED, started, error=f"unreadable input: {exc}")
        except Exception as exc:  # the worker loop is an edge: log once, retry or give up
            logger.exception("job %d attempt %d failed", job.id, job.attempts)
            reason = f"{type(exc).__name__}: {exc}"[:1000]
            if job.attempts >= self.options.max_attempts:
                self._finish(job, FAILED, started,
                             error=f"gave up after {job.attempts} attempts: {reason}")
                return None
            delay = float(min(self.options.backoff_max_s,
                              self.options.backoff_base_s * 2.0 ** (job.attempts - 1)))
            self.jobs.retry(job.id, time.time() + delay, reason)
            logger.warning("job %d will retry in %.0f s (attempt %d of %d)", job.id, delay,
                           job.attempts, self.options.max_attempts)
            return delay
        else:
            self._finish(job, DONE, started, result=summary,
                         study_priority=float(summary["priority"]))
        return None

    def _finish(self, job: JobRow, status: str, started: float, *,
                result: dict[str, Any] | None = None, error: str | None = None,
                study_priority: float | None = None) -> None:
        self.jobs.finish(job.id, status, result=json.dumps(result) if result else None,
                         error=error, study_priority=study_priority)
        elapsed = time.monotonic() - started
        if status == DONE:
            logger.info("job %d done: study %s pipeline %s in %.2f s", job.id,
                        job.study_instance_uid, job.pipeline, elapsed)
        else:
            logger.info("job %d %s: study %s pipeline %s in %.2f s: %s", job.id, status,
                        job.study_instance_uid, job.pipeline, elapsed, error)

    def load_radiographs(self, job: JobRow, model: InstalledModel) -> list[Radiograph]:
        """The study's instances in series of a modality the model reads (our outputs are SR
        and OT, so never among them)."""
        series_rows = self.archive.find(_study_query(Level.SERIES, job.study_instance_uid))
        wanted = [row["SeriesInstanceUID"] for row in series_rows
                  if model.applies_to.matches_modality(str(row.get("Modality") or ""))]
        radiographs = []
        for series_instance_uid in wanted:
            query = Query(Level.SERIES, (Condition("SeriesInstanceUID", "uid_list",
                                                   values=(series_instance_uid,)),))
            for stored in self.archive.instances_for(query):
                radiographs.append(Radiograph(stored.sop_instance_uid,
                                              stored.series_instance_uid, self._read(stored)))
        return radiographs

    def _read(self, stored: StoredInstance) -> Dataset:
        try:
            return dcmread(io.BytesIO(self.archive.read_instance(stored)))
        except Exception as exc:  # pydicom raises many types for malformed files
            raise InvalidDicom(f"instance {stored.sop_instance_uid} cannot be read: "
                               f"{exc}") from exc

    def _execute(self, job: JobRow, model: InstalledModel) -> dict[str, Any]:
        radiographs = self.load_radiographs(job, model)
        result = run_chest_triage(
            ChestTriageInput(job.study_instance_uid, radiographs, model.applies_to),
            self.registry.adapter(model))
        uids = OutputUids.for_job(job.study_instance_uid, job.pipeline, job.model_version,
                                  [r.radiograph.sop_instance_uid for r in result.results])
        stored = self._store_outputs(job, model, result, uids)
        return summarise(result, stored)

    def _store_outputs(self, job: JobRow, model: InstalledModel, result: ChestTriageResult,
                       uids: OutputUids) -> dict[str, Any]:
        origin = f"{AI_ORIGIN_PREFIX}{job.pipeline}"
        preprocessing = model.description.preprocessing
        heatmaps = []
        for number, image in enumerate(result.results, start=1):
            sop_instance_uid = uids.heatmap_instance(image.radiograph.sop_instance_uid)
            heatmaps.append(sop_instance_uid)
            if not self._exists(sop_instance_uid):
                sc = build_heatmap_overlay(image, uids, result.model_name, result.model_version,
                                           preprocessing.resize_px, preprocessing.crop_px,
                                           instance_number=number)
                self._store(sc, origin)
        # The SR goes last: once it is there, every output of the job is.
        if not self._exists(uids.sr_instance):
            extra_codes = model.description.raw.get("finding_codes")
            self._store(build_measurement_report(result, uids, extra_codes), origin)
        return {"sr_sop_instance_uid": uids.sr_instance, "heatmap_sop_instance_uids": heatmaps}

    def _exists(self, sop_instance_uid: str) -> bool:
        try:
            self.archive.get_instance(sop_instance_uid)
        except NotFound:
            return False
        return True

    def _store(self, ds: Dataset, origin: str) -> None:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        try:
            self.archive.store_instance(buffer.getvalue(), origin)
        except Conflict:
            # Stored by an earlier attempt between our check and now: the output exists.
            logger.info("output %s already stored", ds.SOPInstanceUID)


def summarise(result: ChestTriageResult, stored: dict[str, Any]) -> dict[str, Any]:
    """The job's result JSON: model identity, priority, per-image scores and skips."""
    return {
        "model": result.model_name,
        "model_version": result.model_version,
        "priority": result.priority,
        "flagged": result.is_flagged,
        "images": [{
            "sop_instance_uid": image.radiograph.sop_instance_uid,
            "scores": {s.name: round(s.probability, 6)
                       for s in (image.abnormality, *image.findings)},
            "positive": [s.name for s in (image.abnormality, *image.findings)
                         if s.is_positive],
        } for image in result.results],
        "skipped": [{"sop_instance_uid": s.sop_instance_uid, "reason": s.reason}
                    for s in result.skipped],
        **stored,
    }


def build_queue(archive: Archive, options: AiServiceOptions) -> tuple[AiQueue, Registry]:
    registry = Registry.discover(options.models_dirs,
                                 include_shipped=options.include_shipped_models,
                                 intra_op_threads=options.threads)
    runner = JobRunner(archive, registry, options.worker)
    huey = open_huey(options.queue_url, options.data_dir, options.queue_name)
    return AiQueue(huey, runner.run_job), registry


def start_ai_service(archive: Archive, options: AiServiceOptions) -> Callable[[], None]:
    """Start the scheduler and ``options.workers`` consumer threads in this process (0: jobs
    run only in ``qoima ai worker`` processes elsewhere); returns the function that stops them."""
    queue, registry = build_queue(archive, options)
    if not registry.models:
        logger.warning("AI enabled but no model is installed; no AI jobs will be scheduled")
    logger.info("AI models: %s", ", ".join(f"{m.pipeline} {m.version}" for m in registry.models)
                or "none")
    scheduler = Scheduler(Jobs(archive), registry,
                          lambda job_id, delay_s: queue.enqueue(job_id, delay_s),
                          options.stable_age_s, options.worker.lease_s)
    stop_consumer = queue.start_embedded(options.workers) if options.workers > 0 else None
    scheduler.recover()
    scheduler.start()

    def stop() -> None:
        scheduler.stop()
        if stop_consumer is not None:
            stop_consumer()

    return stop
