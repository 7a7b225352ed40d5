"""The AI scheduler: turns stable studies into job rows and enqueues their ids after commit.

At startup, and every half lease, it re-enqueues pending jobs and running jobs whose worker went
quiet, so jobs survive restarts and lost queue messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from qoima.ai.registry import Registry
from qoima.archive.jobs import Jobs

logger = logging.getLogger(__name__)


class Scheduler:
    """Writes job rows for stable studies and enqueues them; re-enqueues unfinished jobs."""

    SINCE_MARGIN_S = 60.0  # instances committed late still count: look back this far

    def __init__(self, jobs: Jobs, registry: Registry, enqueue: Callable[[int, float], None],
                 stable_age_s: float, lease_s: float) -> None:
        self.jobs = jobs
        self.registry = registry
        self.enqueue = enqueue
        self.stable_age_s = stable_age_s
        self.lease_s = lease_s
        self.since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def recover(self) -> int:
        """Enqueue pending jobs and running jobs whose lease expired (after a restart)."""
        unfinished = self.jobs.unfinished(self.lease_s)
        now = time.time()
        for job in unfinished:
            self.enqueue(job.id, max(0.0, job.next_attempt_at - now))
        if unfinished:
            logger.info("re-enqueued %d unfinished AI jobs", len(unfinished))
        return len(unfinished)

    def run_once(self) -> int:
        cutoff = time.time() - self.stable_age_s
        created, newest = self.jobs.schedule_stable_studies(
            cutoff, max(0.0, self.since - self.SINCE_MARGIN_S), self.registry.choose_jobs)
        self.since = max(self.since, newest)
        for job in created:
            try:
                self.enqueue(job.id, 0.0)
            except Exception as exc:  # queue down: the row stays pending, recovery resends it
                logger.warning("job %d not enqueued (%s: %s); it stays pending", job.id,
                               type(exc).__name__, exc)
        return len(created)

    def start(self) -> None:
        poll_s = min(1.0, max(0.2, self.stable_age_s / 4))
        recover_every_s = max(30.0, self.lease_s / 2)

        def loop() -> None:
            last_recovery = time.monotonic()
            while not self._stop.wait(poll_s):
                try:
                    self.run_once()
                    if time.monotonic() - last_recovery > recover_every_s:
                        last_recovery = time.monotonic()
                        self.recover()
                except Exception:
                    logger.exception("AI scheduler pass failed")

        self._thread = threading.Thread(target=loop, name="ai-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
