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

A job that asks its caller gets its answers from `answer`, a function of the question's key
and request (`{method, params}`) that returns the client's response (for an elicitation,
`{"action": "accept", "content": {...}}`); every round asked is kept in `questions`, and every
log line in `logs`. `can_ask` says what the pretend client can answer (all three by default).

```python
def test_the_cleanup_asks_before_it_deletes() -> None:
    progress = RecordingProgress(answer=lambda key, request: {"action": "accept", "content": {"ok": False}})
    assert cleanup(progress, "/tmp/x") == "kept 3 files"
    assert progress.questions[0]["ask-1"]["params"]["message"].startswith("Delete 3 files")
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp_jobs.artifacts import ArtifactInfo
from mcp_jobs.asking import Question
from mcp_jobs.progress import DEFAULT_MAX_MESSAGE_CHARS, Progress

Answer = Callable[[str, dict[str, Any]], Any]
"""The pretend client: a question's key and request in, its response out."""


def _decline(key: str, request: dict[str, Any]) -> Any:
    return {"action": "decline"} if request["method"] == "elicitation/create" else {"error": {"message": "no"}}


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
        answer: Answer = _decline,
        can_ask: frozenset[str] = frozenset({"elicitation", "sampling", "roots"}),
    ) -> None:
        """`cancel_after=n`: the caller cancels once the job has reported `n` updates."""
        super().__init__(None, job_id, attempt, max_message_chars)
        self.updates: list[RecordedUpdate] = []
        self.questions: list[dict[str, Any]] = []
        """Each round the job asked: its requests by key."""
        self.logs: list[dict[str, Any]] = []
        """Each log line the job sent (`{level, data, logger}`)."""
        self.files: dict[str, tuple[bytes, str]] = {}
        """Each artifact the job stored: its bytes and MIME type, by name."""
        self._answer = answer
        self._can = can_ask
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

    def _can_ask(self) -> set[str]:
        return set(self._can)

    def _upcoming_round(self) -> int:
        return len(self.questions) + 1

    def _ask_round(self, requests: dict[str, Any], questions: Mapping[str, Question]) -> dict[str, Any]:
        self.questions.append(requests)
        return {key: question.answer(self._answer(key, requests[key])) for key, question in questions.items()}

    def _send_log(self, line: dict[str, Any]) -> None:
        self.logs.append(line)

    def _store_artifact(self, name: str, data: bytes, mime_type: str) -> ArtifactInfo:
        self.files[name] = (data, mime_type)
        return ArtifactInfo(name, mime_type, len(data))
