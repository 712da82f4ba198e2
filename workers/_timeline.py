"""A job's step timeline: when each of its steps began, and how long each took.

A *step* begins whenever a run reports a message other than its last one (the start of a run,
"started", is the first step; a question's "waiting for an answer: ..." is one too), so a job
that counts items under one message is one step, and one that reports "fetching", "parsing",
"writing" is three. The worker's write that begins a step also appends it to the job's step list
`<ns>:job:<id>:steps` (JSON `{"attempt", "at", "progress", "total", "message"}`), trimmed to the
last `STEP_HISTORY` entries, and counts it in the snapshot's `steps` field, in the same script
as the snapshot (`_store.WRITE_SCRIPT`): the list is bounded whatever a job reports, and the count
says how many steps there were in all.

A step lasts until the next one begins, the last until the job ended (or until now, while it
runs). `timeline` turns the stored entries into `Step`s; the server's metrics use the same
function on the steps it saw go by (`StepClock`), so the page, `mcp-jobs jobs JOB_ID` and the
`mcp_jobs_step_seconds` histogram agree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

STEP_HISTORY = 100
"""Steps a job's list keeps (the most recent); the snapshot's `steps` field counts them all."""


@dataclass(frozen=True)
class Step:
    """One step of a job as a timeline shows it."""

    attempt: int
    at: float
    """When it began (Unix time, the worker's clock)."""
    progress: float | None
    total: float | None
    message: str
    duration: float | None
    """Seconds until the next step (or the job's end); None while it is the running job's last."""
    slowest: bool = False
    """The longest step of the timeline (one only, the first of equals)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": self.at,
            "progress": self.progress,
            "total": self.total,
            "message": self.message,
            "duration": self.duration,
            "slowest": self.slowest,
        }


def step_entry(at: float, progress: float | None, total: float | None, message: str) -> str:
    """A step's JSON as the write script stores it (the script adds the run's `attempt`)."""
    return json.dumps(
        {"at": at, "progress": progress, "total": total, "message": message}, separators=(",", ":"), allow_nan=False
    )


def parse_entries(raw: Iterable[bytes | str]) -> list[dict[str, Any]]:
    """The stored entries of a step list (`LRANGE`), skipping any that is not a step's JSON."""
    entries = []
    for item in raw:
        try:
            entry = json.loads(item)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("at"), int | float) and math.isfinite(entry["at"]):
            entries.append(entry)
    return entries


def timeline(entries: Sequence[dict[str, Any]], ended_at: float | None, now: float) -> list[Step]:
    """The steps of `entries` (oldest first) with their durations: each until the next, the last
    until `ended_at` (None: the job still runs, so the last step's duration is not known yet and
    counts as `now - at` only for marking the slowest). The slowest finished step is marked."""
    steps: list[Step] = []
    for index, entry in enumerate(entries):
        start = float(entry["at"])
        end = float(entries[index + 1]["at"]) if index + 1 < len(entries) else ended_at
        steps.append(
            Step(
                attempt=int(entry.get("attempt") or 1),
                at=start,
                progress=_number(entry.get("progress")),
                total=_number(entry.get("total")),
                message=str(entry.get("message") or ""),
                duration=None if end is None else max(end - start, 0.0),
            )
        )
    lengths = [step.duration if step.duration is not None else max(now - step.at, 0.0) for step in steps]
    if len(steps) > 1:
        slowest = lengths.index(max(lengths))
        steps[slowest] = _marked(steps[slowest])
    return steps


def _marked(step: Step) -> Step:
    return Step(step.attempt, step.at, step.progress, step.total, step.message, step.duration, slowest=True)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class StepClock:
    """The steps of one followed job as its events go by (the server's metrics): fed each event's
    time and message, it closes a step whenever the message changes, by the same rule as the
    worker's step list (so the same durations)."""

    began: float | None = None
    """When the job started running (its first `running` event)."""
    _message: str | None = None
    _since: float | None = None
    durations: list[float] = field(default_factory=list)
    """The durations of the steps closed so far, oldest first."""

    def seen(self, at: float, message: str | None, running: bool) -> None:
        """An event of the job at `at`, with its message, while it runs (`running`) or not."""
        if not running:
            return
        if self.began is None:
            self.began = at
        if message is not None and message != self._message:
            self._close(at)
            self._message, self._since = message, at

    def ended(self, at: float) -> None:
        """The job ended at `at`: its last step closes there."""
        self._close(at)
        self._message = self._since = None

    def _close(self, at: float) -> None:
        if self._since is not None:
            self.durations.append(max(at - self._since, 0.0))
