"""The job runner and scheduler against a real archive (SQLite and PostgreSQL) and a tiny model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qoima.ai.outputs import OutputUids
from qoima.ai.registry import Registry
from qoima.ai.scheduler import Scheduler
from qoima.ai.worker import JobRunner, WorkerOptions
from qoima.archive import Archive
from qoima.archive.jobs import DONE, FAILED, PENDING, SKIPPED, JobRow, Jobs
from qoima.dicom.attributes import Level
from qoima.dicom.query import Condition, Query
from tests.ai.conftest import EXTREMITY_CR, chest_bytes, schedule_now
from tests.ai.tiny_model import write_tiny_model


def _job(archive: Archive, job_id: int) -> JobRow:
    row = Jobs(archive).get(job_id)
    assert row is not None
    return row


def _study_instances(archive: Archive, study_instance_uid: str) -> list[str]:
    query = Query(Level.STUDY, (Condition("StudyInstanceUID", "uid_list",
                                          values=(study_instance_uid,)),))
    return sorted(stored.sop_instance_uid for stored in archive.instances_for(query))


def test_scheduling_is_idempotent(archive: Archive, registry: Registry) -> None:
    archive.store_instance(chest_bytes("sched"), "test")
    first = schedule_now(archive, registry)
    second = schedule_now(archive, registry)
    assert [(job.pipeline, job.model_version) for job in first] == [
        ("chest_triage:tiny-cxr", "0.0.1")]
    assert second == []
    assert len(Jobs(archive).list()) == 1


def test_job_stores_sr_heatmap_and_priority(archive: Archive, registry: Registry,
                                            runner: JobRunner) -> None:
    stored = archive.store_instance(chest_bytes("done"), "test")
    [job] = schedule_now(archive, registry)
    assert runner.run_job(job.id) is None
    row = _job(archive, job.id)
    assert row.status == DONE
    assert row.attempts == 1
    result = json.loads(row.result or "{}")
    uids = OutputUids.for_job(stored.study_instance_uid, job.pipeline, job.model_version,
                              [stored.sop_instance_uid])
    assert result["sr_sop_instance_uid"] == uids.sr_instance
    assert archive.get_instance(uids.sr_instance).sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.33"
    [heatmap] = result["heatmap_sop_instance_uids"]
    assert archive.get_instance(heatmap).series_instance_uid == uids.heatmap_series
    assert Jobs(archive).study_priority(stored.study_instance_uid) == pytest.approx(
        result["priority"], abs=1e-6)
    assert result["flagged"] == (result["priority"] >= 0.5)


def test_outputs_do_not_trigger_jobs(archive: Archive, registry: Registry,
                                     runner: JobRunner) -> None:
    archive.store_instance(chest_bytes("outputs"), "test")
    [job] = schedule_now(archive, registry)
    runner.run_job(job.id)
    assert schedule_now(archive, registry) == []
    assert [row.id for row in Jobs(archive).list()] == [job.id]


def test_rerun_does_not_duplicate_outputs(archive: Archive, registry: Registry,
                                          runner: JobRunner) -> None:
    stored = archive.store_instance(chest_bytes("rerun"), "test")
    [job] = schedule_now(archive, registry)
    runner.run_job(job.id)
    before = _study_instances(archive, stored.study_instance_uid)
    assert Jobs(archive).requeue(job.id)
    runner.run_job(job.id)
    row = _job(archive, job.id)
    assert row.status == DONE
    assert _study_instances(archive, stored.study_instance_uid) == before
    assert len(before) == 3  # the radiograph, the heatmap, the SR


def test_lateral_view_is_skipped_with_reason(archive: Archive, registry: Registry,
                                             runner: JobRunner) -> None:
    archive.store_instance(chest_bytes("lateral", view_position="LL"), "test")
    [job] = schedule_now(archive, registry)
    runner.run_job(job.id)
    row = _job(archive, job.id)
    assert row.status == SKIPPED
    assert "view position LL" in (row.error or "")


def test_extremity_is_skipped_with_reason(archive: Archive, registry: Registry,
                                          runner: JobRunner) -> None:
    archive.store_instance(chest_bytes("extremity", source=EXTREMITY_CR), "test")
    [job] = schedule_now(archive, registry)
    runner.run_job(job.id)
    row = _job(archive, job.id)
    assert row.status == SKIPPED
    assert "body part EXTREMITY" in (row.error or "")


def test_undecodable_image_fails_without_retry(archive: Archive, registry: Registry,
                                               runner: JobRunner) -> None:
    archive.store_instance(chest_bytes("broken", corrupt_pixels=True), "test")
    [job] = schedule_now(archive, registry)
    assert runner.run_job(job.id) is None
    row = _job(archive, job.id)
    assert row.status == FAILED
    assert row.attempts == 1
    assert "cannot decode pixel data" in (row.error or "")


def test_errors_retry_with_backoff_then_fail(archive: Archive, tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "models" / "broken")
    registry = Registry.discover([tmp_path / "models"], include_shipped=False)
    (folder / "model.onnx").write_bytes(b"not an onnx model")
    runner = JobRunner(archive, registry, WorkerOptions(max_attempts=3, backoff_base_s=2.0,
                                                        thread_niceness=0, ingest_quiet_s=0))
    archive.store_instance(chest_bytes("retry"), "test")
    [job] = schedule_now(archive, registry)
    delays = [runner.run_job(job.id) for _ in range(3)]
    row = _job(archive, job.id)
    assert delays == [2.0, 4.0, None]
    assert row.status == FAILED
    assert row.attempts == 3
    assert (row.error or "").startswith("gave up after 3 attempts")


def test_pending_job_waits_for_its_retry_time(archive: Archive, tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "models" / "broken")
    registry = Registry.discover([tmp_path / "models"], include_shipped=False)
    (folder / "model.onnx").write_bytes(b"not an onnx model")
    runner = JobRunner(archive, registry, WorkerOptions(backoff_base_s=60.0, thread_niceness=0,
                                                        ingest_quiet_s=0))
    archive.store_instance(chest_bytes("wait"), "test")
    [job] = schedule_now(archive, registry)
    runner.run_job(job.id)
    row = _job(archive, job.id)
    assert row.status == PENDING
    assert row.next_attempt_at >= row.updated_at + 59


def test_recovery_enqueues_jobs_whose_worker_died(archive: Archive, registry: Registry) -> None:
    archive.store_instance(chest_bytes("died"), "test")
    [job] = schedule_now(archive, registry)
    assert Jobs(archive).claim(job.id, lease_s=600) is not None  # a worker that then died
    enqueued: list[int] = []
    alive = Scheduler(Jobs(archive), registry, lambda job_id, _delay: enqueued.append(job_id),
                      stable_age_s=1.0, lease_s=600)
    assert alive.recover() == 0
    expired = Scheduler(Jobs(archive), registry, lambda job_id, _delay: enqueued.append(job_id),
                        stable_age_s=1.0, lease_s=0.0)
    assert expired.recover() == 1
    assert enqueued == [job.id]


def test_running_job_is_not_claimed_twice(archive: Archive, registry: Registry) -> None:
    archive.store_instance(chest_bytes("twice"), "test")
    [job] = schedule_now(archive, registry)
    assert Jobs(archive).claim(job.id, lease_s=600) is not None
    assert Jobs(archive).claim(job.id, lease_s=600) is None


def test_job_waits_for_a_pause_in_ingest(archive: Archive, registry: Registry) -> None:
    runner = JobRunner(archive, registry, WorkerOptions(thread_niceness=0, ingest_quiet_s=1.5,
                                                        max_defer_s=30))
    archive.store_instance(chest_bytes("pause"), "test")
    [job] = schedule_now(archive, registry)
    stored_at = Jobs(archive).last_ingest_at()
    runner.run_job(job.id)
    row = _job(archive, job.id)
    assert stored_at is not None
    assert row.status == DONE
    assert row.updated_at - stored_at >= 1.5


def test_ingest_defers_a_job_only_for_a_while(archive: Archive, registry: Registry) -> None:
    runner = JobRunner(archive, registry, WorkerOptions(thread_niceness=0, ingest_quiet_s=600,
                                                        max_defer_s=0.5))
    archive.store_instance(chest_bytes("busy"), "test")
    [job] = schedule_now(archive, registry)
    started = time.monotonic()
    runner.run_job(job.id)
    assert _job(archive, job.id).status == DONE
    assert time.monotonic() - started < 30


def test_image_arriving_after_a_finished_job_is_read(archive: Archive, registry: Registry,
                                                     runner: JobRunner) -> None:
    archive.store_instance(chest_bytes("late", view_position="LL"), "test")
    [job] = schedule_now(archive, registry)
    runner.run_job(job.id)
    assert _job(archive, job.id).status == SKIPPED
    stored = archive.store_instance(chest_bytes("late", view_position="PA", number=2), "test")
    [again] = schedule_now(archive, registry)
    assert again.id == job.id
    runner.run_job(job.id)
    row = _job(archive, job.id)
    assert row.status == DONE
    result = json.loads(row.result or "{}")
    assert [image["sop_instance_uid"] for image in result["images"]] == [
        stored.sop_instance_uid]
    assert schedule_now(archive, registry) == []
