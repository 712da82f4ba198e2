"""`RecordingProgress`: a `Progress` for unit-testing jobs without Redis, Celery or a server.

```python
from mcp_jobs import RecordingProgress
from myjobs import render_report

def test_render_report_reports_every_month() -> None:
    progress = RecordingProgress()
    report = render_report(progress, "acme", months=3)
    assert report.pages == 6
    assert [u.progress for u in progress.updates] == [0, 1, 2, 3]
    assert progress.updates[-1].message == "month 3/3 rendered"
```

It applies the same checks as the real reporter (finite numbers, string messages within the size
limit), so a job that would fail on a worker fails in its unit test too. `cancel()` (or
`cancel_after=`) makes the job see a cancellation at its next report, check or sleep; `sleep`
returns at once and adds up the time the job asked to wait in `slept`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_jobs.progress import DEFAULT_MAX_MESSAGE_CHARS, Progress


@dataclass(frozen=True)
class RecordedUpdate:
    """One update a job reported."""

    progress: float
    total: float | None
    message: str | None


class RecordingProgress(Progress):
    """A `Progress` that records every update in `updates` instead of sending it."""

    def __init__(
        self,
        *,
        job_id: str = "test-job",
        attempt: int = 1,
        cancel_after: int | None = None,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    ) -> None:
        """`cancel_after=n`: the caller cancels once the job has reported `n` updates."""
        super().__init__(None, job_id, attempt, max_message_chars)
        self.updates: list[RecordedUpdate] = []
        self.slept: float = 0.0
        """Seconds the job asked to sleep through `sleep()` (which returns at once)."""
        self._cancel_after = cancel_after
        self._cancelled = False

    def cancel(self) -> None:
        """Act as the caller cancelling: the job's next report, check or sleep raises `JobCancelled`."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled or (self._cancel_after is not None and len(self.updates) >= self._cancel_after)

    def sleep(self, seconds: float) -> None:
        self.check_cancelled()
        self.slept += seconds

    def _publish(self, value: float, total: float | None, message: str | None) -> None:
        self.updates.append(RecordedUpdate(value, total, message))
        self.check_cancelled()
