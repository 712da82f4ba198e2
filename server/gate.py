"""The progress gate: what of a job's progress reaches the client, and when.

MCP requires `progress` to increase with every notification and no notification after the
result; it asks both sides to rate-limit. The SDK enforces none of this, so every call passes
its updates through one `ProgressGate`:

- an update whose value is not above the last one accepted is dropped;
- at most one notification per `min_interval`; updates in between are coalesced, keeping the
  latest, which is sent when the interval has passed (or by `drain()` before the result);
- after `close()` nothing is released.

The gate is pure bookkeeping with the clock passed in, so the caller's single task decides
when to send: no timer task of its own that could fire after the result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress notification's content."""

    progress: float
    total: float | None = None
    message: str | None = None


class ProgressGate:
    """Monotonic, rate-capped progress for one call."""

    def __init__(self, min_interval: float) -> None:
        self._min_interval = min_interval
        self._accepted: float | None = None
        self._pending: ProgressUpdate | None = None
        self._last_sent_at: float | None = None
        self._closed = False

    def offer(self, update: ProgressUpdate) -> bool:
        """Take an update as the pending one, unless its value does not increase; say whether it was kept."""
        if self._closed or (self._accepted is not None and update.progress <= self._accepted):
            return False
        self._accepted = update.progress
        self._pending = update
        return True

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

    def close(self) -> None:
        self._closed = True
        self._pending = None

    def _release(self, now: float) -> ProgressUpdate | None:
        update, self._pending = self._pending, None
        self._last_sent_at = now
        return update
