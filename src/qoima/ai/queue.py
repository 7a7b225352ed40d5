"""The AI task queue: Huey with SQLite storage in the data dir (embedded default) or Redis.

Only job ids travel through the queue; the job row in the index is the truth. A lost or
duplicated message is harmless: the worker claims the row with a guarded UPDATE.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey  # type: ignore[import-untyped]
from huey.api import TaskWrapper  # type: ignore[import-untyped]
from huey.consumer import Consumer  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

TASK_NAME = "qoima.ai.run_job"
DEFAULT_QUEUE_NAME = "qoima-ai"
# Huey workers poll an empty SQLite queue with backoff up to this delay; keep it short so a
# stable study starts within about a second. Redis blocks on the list instead of polling.
MAX_POLL_DELAY_S = 1.0

# Runs one job; returns seconds until a retry should be tried, or None when nothing is left.
JobFunction = Callable[[int], "float | None"]


def open_huey(queue_url: str, data_dir: Path, name: str = DEFAULT_QUEUE_NAME) -> Huey:
    """``redis://...`` -> RedisHuey; empty or ``sqlite:///PATH`` -> SqliteHuey."""
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey(name, url=queue_url, results=False)
    if queue_url and not queue_url.startswith("sqlite:///"):
        raise ValueError(f"ai_queue_url must be empty, sqlite:///PATH or redis://..., "
                         f"not {queue_url.split('://')[0]}://")
    filename = (Path(queue_url.removeprefix("sqlite:///")) if queue_url
                else data_dir / "ai-queue.sqlite")
    filename.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(filename), results=False)


class _EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A Huey consumer run inside ``qoima serve``: it must not take over the process's signals
    (uvicorn owns SIGINT/SIGTERM and calls our stopper)."""

    def _set_signal_handlers(self) -> None:
        return None


class AiQueue:
    """Enqueue job ids; run consumers that execute them with ``run_job``."""

    def __init__(self, huey: Huey, run_job: JobFunction) -> None:
        self.huey = huey
        self._run_job = run_job
        self.task: TaskWrapper = huey.task(name=TASK_NAME)(self._execute)

    def _execute(self, job_id: int) -> None:
        retry_in_s = self._run_job(int(job_id))
        if retry_in_s is not None:
            self.enqueue(int(job_id), delay_s=retry_in_s)

    def enqueue(self, job_id: int, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            self.task.schedule(args=(job_id,), delay=delay_s)
        else:
            self.task(job_id)

    def pending_count(self) -> int:
        return int(self.huey.pending_count())

    def _consumer(self, workers: int, consumer_class: type[Consumer]) -> Consumer:
        return consumer_class(self.huey, workers=max(1, workers), periodic=False,
                              worker_type="thread", check_worker_health=False,
                              initial_delay=0.05, backoff=1.5, max_delay=MAX_POLL_DELAY_S,
                              scheduler_interval=1, shutdown_timeout=30)

    def start_embedded(self, workers: int) -> Callable[[], None]:
        """Start consumer threads in this process; returns the function that stops them."""
        consumer = self._consumer(workers, _EmbeddedConsumer)
        consumer.start()
        logger.info("AI queue consumer started: %d worker thread(s), queue %s", workers,
                    self.huey.name)
        lock = threading.Lock()

        def stop() -> None:
            with lock:
                consumer.stop(graceful=True)
                self.huey.storage.close()

        return stop

    def run_consumer(self, workers: int) -> None:
        """Run a consumer in the foreground until SIGINT/SIGTERM (``qoima ai worker``)."""
        self._consumer(workers, Consumer).run()
