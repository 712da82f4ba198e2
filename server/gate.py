"""The progress gate: what of a job's progress reaches the client, and when.

MCP requires `progress` to increase with every notification and no notification after the
result; it asks both sides to rate-limit. The SDK enforces none of this, so every call passes
its updates through one `ProgressGate`:

- a job update whose value is not above the job's previous one is dropped (a re-run of the job
  after a lost worker starts its own count: `restart()`);
- at most one notification per `min_interval`; updates in between are coalesced, keeping the
  latest, which is sent when the interval has passed (or by `drain()` before the result);
- the server's own notices (`notice()`: queued, still running, retrying) carry the last value
  sent plus a hair, and a job value at or below what the client already saw is sent as that
  value plus a hair too, so the client's values always increase while the job's messages still
  reach it. Values are otherwise exactly the job's;
- after `drain()` nothing is released.

The gate is pure bookkeeping with the clock passed in, so the caller's single task decides
when to send: no timer task of its own that could fire after the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress notification's content."""

    progress: float
    total: float | None = None
    message: str | None = None


def just_above(value: float) -> float:
    """The smallest step above `value` that a client will see as an increase."""
    return value + max(1e-6, 2 * math.ulp(value))


class ProgressGate:
    """Monotonic, rate-capped progress for one call."""

    def __init__(self, min_interval: float) -> None:
        self._min_interval = min_interval
        self._job_value: float | None = None
        self._pending: ProgressUpdate | None = None
        self._sent_value: float | None = None
        self._last_sent_at: float | None = None
        self._last_total: float | None = None
        self._closed = False

    @property
    def last_sent_at(self) -> float | None:
        return self._last_sent_at

    @property
    def pending(self) -> bool:
        """Whether a job update waits for the rate cap (a new one would replace it)."""
        return self._pending is not None

    def offer(self, update: ProgressUpdate) -> bool:
        """Take a job update as the pending one, unless its value does not increase; say whether it was kept."""
        if self._closed or (self._job_value is not None and update.progress <= self._job_value):
            return False
        self._job_value = update.progress
        self._pending = update
        return True

    def restart(self) -> None:
        """The job starts over (a new attempt): its values count afresh; the client's still only rise."""
        self._job_value = None

    def notice(self, message: str, now: float) -> ProgressUpdate | None:
        """A server notice to send now, unless a job update is pending (it goes first) or the gate is closed."""
        if self._closed or self._pending is not None:
            return None
        base = self._sent_value
        return self._mark_sent(
            ProgressUpdate(0.0 if base is None else just_above(base), self._last_total, message), now
        )

    def due(self, now: float) -> ProgressUpdate | None:
        """The pending update if the rate cap lets it go at `now`."""
        deadline = self.next_due()
        if deadline is None or now < deadline:
            return None
        return self._release(now)

    def next_due(self) -> float | None:
        """When the pending update may be sent (None: nothing pending)."""
        if self._pending is None or self._closed:
            return None
        if self._last_sent_at is None:
            return float("-inf")
        return self._last_sent_at + self._min_interval

    def drain(self, now: float) -> ProgressUpdate | None:
        """The pending update regardless of the rate cap, then close: nothing is released after this."""
        update = None if self._closed or self._pending is None else self._release(now)
        self._closed = True
        return update

    def _release(self, now: float) -> ProgressUpdate:
        update, self._pending = self._pending, None
        assert update is not None
        if self._sent_value is not None and update.progress <= self._sent_value:
            update = replace(update, progress=just_above(self._sent_value))
        return self._mark_sent(update, now)

    def _mark_sent(self, update: ProgressUpdate, now: float) -> ProgressUpdate:
        self._sent_value = update.progress
        self._last_total = update.total
        self._last_sent_at = now
        return update
