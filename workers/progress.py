"""`Progress`: the reporter a job receives to tell its caller how far it got.

Each report is one Redis round trip that updates the job's snapshot, publishes the event and
reads the cancellation flag (see `_store.py`); a report after the caller cancelled raises
`JobCancelled` inside the job. Reports are best effort: while Redis is unreachable they are
skipped (the job keeps working, and the next report or the outcome brings the snapshot up to
date). The server decides what reaches the client: strictly increasing values, at a bounded rate.

What a job passes is checked before anything leaves the worker: values and totals must be finite
real numbers and messages strings of at most `max_message_chars` characters. A job that passes
anything else has a bug, so the report raises (`TypeError` or `ValueError`) inside the job, which
then fails with that error instead of sending the caller something its client would reject.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis

from mcp_jobs._events import JobState
from mcp_jobs.errors import JobCancelled, JobEnded

if TYPE_CHECKING:
    from mcp_jobs._store import JobStore
    from mcp_jobs.fanout import PartsContext

logger = logging.getLogger(__name__)

CANCEL_POLL_INTERVAL = 0.1
"""Seconds between cancellation checks while a job waits in `Progress.sleep`."""

DEFAULT_MAX_MESSAGE_CHARS = 1000
"""Longest progress message a job may send, unless the settings say otherwise."""


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

    def __init__(
        self,
        store: JobStore | None,
        job_id: str,
        attempt: int = 1,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        parts: PartsContext | None = None,
    ) -> None:
        self._store = store
        self._parts = parts
        self._maps = 0
        self.job_id = job_id
        self.attempt = attempt
        """1 on the first run; 2 and up when the job is re-run after its worker was lost."""
        self.max_message_chars = max_message_chars
        """Longest message `report` accepts (`MCP_JOBS_MAX_MESSAGE_CHARS`)."""
        self.value: float = 0.0
        """The last reported progress value."""
        self.total: float | None = None
        """The total reported with each update (None: unknown)."""

    def report(self, value: float, message: str | None = None, *, total: float | None = None) -> None:
        """Set the progress to `value` (and optionally a new total) with a message for the caller.

        Raises `TypeError` or `ValueError` for a value or total that is not a finite number, or a
        message that is not a string or is longer than `max_message_chars`; `JobCancelled` once
        the caller cancelled; `JobEnded` once the job was ended some other way (see `JobEnded`).
        """
        value = finite_number("progress", value)
        if total is not None:
            self.total = finite_number("total", total)
        message = self._checked_message(message)
        self.value = value
        self._publish(value, self.total, message)

    def advance(self, amount: float = 1, message: str | None = None) -> None:
        """Move the progress forward by `amount` (one step by default)."""
        self.report(self.value + finite_number("amount", amount), message)

    def set_total(self, total: float | None, message: str | None = None) -> None:
        """Announce how many steps there are (None: unknown) and report the current value with it."""
        self.total = None if total is None else finite_number("total", total)
        self.report(self.value, message)

    @property
    def cancelled(self) -> bool:
        """Whether the caller cancelled this job (one Redis read; False while Redis is unreachable)."""
        try:
            return self._require_store().cancel_requested(self.job_id)
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

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        fail_fast: bool = True,
        describe: Callable[[Any], str] = str,
    ) -> list[Any]:
        """Run `fn(item)` for every item as separate parts, on any worker, and return the results
        in order. The caller sees one progress: parts done out of `len(items)`, each report naming
        the part that finished (`describe(item)`).

        `fn` is a module-level function of the job modules; items and results travel as JSON.
        With `fail_fast` (the default) the first failing part ends the job with a `JobError` that
        names it, and the parts not yet started are cancelled; without it, a failed part's result
        is a `PartFailed` and the others go on. Parts may run more than once (after a lost
        worker): make them safe to repeat. See `mcp_jobs.fanout`.
        """
        # Imported here: the registry (which servers use) imports this module, and the worker side
        # of fan-out has no place in a server process.
        from mcp_jobs.fanout import run_inline, run_map

        if self._parts is None:
            return run_inline(self, fn, items, fail_fast, describe)
        self._maps += 1
        return run_map(self, self._parts, fn, items, fail_fast, describe, map_index=self._maps - 1)

    def _publish(self, value: float, total: float | None, message: str | None) -> None:
        """Send one checked update; raise if the job should stop (cancelled, or ended elsewhere)."""
        store = self._require_store()
        try:
            outcome = store.write(self.job_id, JobState.RUNNING, progress=value, total=total, message=message)
            if outcome.refused:
                state, error = store.ended_as(self.job_id)
        except redis.RedisError as exc:
            logger.warning("job %s: progress report skipped, Redis unavailable (%r)", self.job_id, exc)
            return
        if outcome.refused:
            raise JobEnded(_ended_message(self.job_id, state, error))
        if outcome.cancel_requested:
            raise JobCancelled(self.job_id)

    def _require_store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("this Progress has no job store; in unit tests use mcp_jobs.RecordingProgress")
        return self._store

    def _checked_message(self, message: object) -> str | None:
        if message is None:
            return None
        if not isinstance(message, str):
            raise TypeError(f"a progress message must be a str or None, not {type(message).__name__}")
        if len(message) > self.max_message_chars:
            raise ValueError(
                f"a progress message of {len(message)} characters is over the limit of "
                f"{self.max_message_chars} (MCP_JOBS_MAX_MESSAGE_CHARS)"
            )
        return message


def _ended_message(job_id: str, state: str, error: str | None) -> str:
    return f"job {job_id} was ended while it ran ({state}: {error or 'no reason recorded'}); this run stops"


def finite_number(name: str, value: object) -> float:
    """`value` as a float, if it is a finite real number (not a bool); else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except (OverflowError, TypeError):
        raise ValueError(f"{name} is too large to be sent as a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, not {number}")
    return number
