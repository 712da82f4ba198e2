"""`Progress`: the reporter a job receives to tell its caller how far it got.

Each report is one Redis round trip that updates the job's snapshot, publishes the event and
reads the cancellation flag (see `store.py`); a report after the caller cancelled raises
`JobCancelled` inside the job. Reports are best effort: while Redis is unreachable they are
skipped (the job keeps working, and the next report or the outcome brings the snapshot up to
date). The server decides what reaches the client: strictly increasing values, at a bounded rate.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis

from workers.errors import JobCancelled
from workers.events import JobState

if TYPE_CHECKING:
    from workers.store import JobStore

logger = logging.getLogger(__name__)

CANCEL_POLL_INTERVAL = 0.1
"""Seconds between cancellation checks while a job waits in `Progress.sleep`."""


class Progress:
    """Report steps, totals and messages from inside a job, and notice cancellation.

    ```python
    @job
    def crunch(progress: Progress, items: list[str]) -> int:
        progress.set_total(len(items))
        for item in items:
            handle(item)
            progress.advance(message=f"handled {item}")
        return len(items)
    ```
    """

    def __init__(self, store: JobStore, job_id: str, attempt: int = 1) -> None:
        self._store = store
        self.job_id = job_id
        self.attempt = attempt
        """1 on the first run; 2 and up when the job is re-run after its worker was lost."""
        self.value: float = 0.0
        """The last reported progress value."""
        self.total: float | None = None
        """The total reported with each update (None: unknown)."""

    def report(self, value: float, message: str | None = None, *, total: float | None = None) -> None:
        """Set the progress to `value` (and optionally a new total) with a message for the caller."""
        if total is not None:
            self.total = total
        self.value = value
        try:
            outcome = self._store.write(self.job_id, JobState.RUNNING, progress=value, total=self.total, message=message)
        except redis.RedisError as exc:
            logger.warning("job %s: progress report skipped, Redis unavailable (%r)", self.job_id, exc)
            return
        if outcome.cancel_requested or outcome.seq == 0:
            raise JobCancelled(self.job_id)

    def advance(self, amount: float = 1, message: str | None = None) -> None:
        """Move the progress forward by `amount` (one step by default)."""
        self.report(self.value + amount, message)

    def set_total(self, total: float | None, message: str | None = None) -> None:
        """Announce how many steps there are (None: unknown) and report the current value with it."""
        self.total = total
        self.report(self.value, message)

    @property
    def cancelled(self) -> bool:
        """Whether the caller cancelled this job (one Redis read; False while Redis is unreachable)."""
        try:
            return self._store.cancel_requested(self.job_id)
        except redis.RedisError:
            return False

    def check_cancelled(self) -> None:
        """Raise `JobCancelled` if the caller cancelled; call it in long loops that do not report."""
        if self.cancelled:
            raise JobCancelled(self.job_id)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up and raise `JobCancelled` within about 0.1 s of a cancellation."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_cancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, CANCEL_POLL_INTERVAL))
