"""The Huey queue on both backends: embedded SQLite and the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from huey import Huey

from qoima.ai.queue import AiQueue, open_huey
from qoima.ai.registry import Registry
from qoima.ai.worker import JobRunner
from qoima.archive import Archive
from qoima.archive.jobs import DONE, FINAL_STATUSES, Jobs
from tests.ai.conftest import chest_bytes, schedule_now

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "redis"])
def huey(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Huey]:
    name = f"qoima-test-{uuid.uuid4().hex[:12]}"  # one queue per test on the shared Redis
    queue_url = REDIS_URL if request.param == "redis" else ""
    opened = open_huey(queue_url, tmp_path / "queue", name)
    yield opened
    opened.flush()


@pytest.fixture
def database_url() -> None:
    return None  # the queue is what varies here; the index is the embedded SQLite


def _wait_final(archive: Archive, job_id: int, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = Jobs(archive).get(job_id)
        if row is not None and row.status in FINAL_STATUSES:
            return row.status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")


def test_consumer_runs_enqueued_job(huey: Huey, archive: Archive, registry: Registry,
                                    runner: JobRunner) -> None:
    queue = AiQueue(huey, runner.run_job)
    archive.store_instance(chest_bytes("queued"), "test")
    [job] = schedule_now(archive, registry)
    queue.enqueue(job.id)
    stop = queue.start_embedded(workers=1)
    try:
        assert _wait_final(archive, job.id) == DONE
    finally:
        stop()


def test_delayed_enqueue_runs_later(huey: Huey, archive: Archive, registry: Registry,
                                    runner: JobRunner) -> None:
    queue = AiQueue(huey, runner.run_job)
    archive.store_instance(chest_bytes("delayed"), "test")
    [job] = schedule_now(archive, registry)
    queue.enqueue(job.id, delay_s=1.5)
    started = time.monotonic()
    stop = queue.start_embedded(workers=1)
    try:
        assert _wait_final(archive, job.id) == DONE
    finally:
        stop()
    assert time.monotonic() - started >= 1.4
