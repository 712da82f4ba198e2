"""Atomic writes of a job's snapshot together with its event (worker side, and the server's writes).

`WRITE_SCRIPT` runs inside Redis: it bumps the job's sequence number, writes the snapshot fields,
refreshes the TTL and publishes the event with that sequence number spliced in, all in one round
trip. It refuses to touch a job that already reached a terminal state (so nothing can follow a
result), or, when asked, one that is not in an expected state (so the server can end a job that
never started without racing a worker that just picked it up). It returns the cancellation flag,
so every progress report doubles as a cancellation check at no extra cost.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from workers.events import TERMINAL_STATES, JobState, Keys

logger = logging.getLogger(__name__)

WRITE_SCRIPT = """
local key = KEYS[1]
local state = redis.call('HGET', key, 'state')
local cancel = redis.call('HGET', key, 'cancel') or ''
if state and (%s) then
  return {0, cancel}
end
if ARGV[2] ~= '' and state ~= ARGV[2] then
  return {0, cancel}
end
local seq = redis.call('HINCRBY', key, 'seq', 1)
if #ARGV > 3 then
  redis.call('HSET', key, unpack(ARGV, 4))
end
redis.call('EXPIRE', key, tonumber(ARGV[1]))
redis.call('PUBLISH', key, '{"seq":' .. seq .. ',' .. string.sub(ARGV[3], 2))
return {seq, cancel}
""" % " or ".join(f"state == '{s}'" for s in sorted(TERMINAL_STATES))

FINAL_WRITE_DEADLINE = 60.0
"""Seconds a worker keeps retrying the write of a job's outcome while Redis is unreachable."""


def encode_write(
    state: JobState,
    *,
    progress: float | None = None,
    total: float | None = None,
    message: str | None = None,
    result: Any = None,
    error: str | None = None,
    error_type: str | None = None,
    attempt: int = 0,
    extra: dict[str, str] | None = None,
) -> tuple[str, list[str]]:
    """The event JSON and the snapshot field/value pairs for one write.

    Every write sets all progress fields (empty string for None), so the snapshot is always
    exactly the latest event.
    """
    event: dict[str, Any] = {"state": state.value, "attempt": attempt}
    fields: dict[str, str] = {
        "state": state.value,
        "progress": "" if progress is None else repr(float(progress)),
        "total": "" if total is None else repr(float(total)),
        "message": message or "",
        "attempt": str(attempt),
        "updated_at": repr(time.time()),
    }
    for name, value in (("progress", progress), ("total", total), ("message", message)):
        if value is not None:
            event[name] = value
    if state.terminal:
        fields |= {"result": json.dumps(result, separators=(",", ":")), "error": error or "", "error_type": error_type or ""}
        event |= {"result": result, "error": error, "error_type": error_type}
    fields |= extra or {}
    flat = [item for pair in fields.items() for item in pair]
    return json.dumps(event, separators=(",", ":")), flat


@dataclass
class WriteOutcome:
    """What the script answered: the new sequence number (0: refused, the job is finished or moved on)."""

    seq: int
    cancel_requested: bool

    @classmethod
    def parse(cls, reply: list[Any]) -> WriteOutcome:
        return cls(seq=int(reply[0]), cancel_requested=reply[1] in (b"1", "1"))


class JobStore:
    """Synchronous access to job snapshots, as used inside worker processes."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl = ttl
        self._write = client.register_script(WRITE_SCRIPT)

    def write(self, job_id: str, state: JobState, *, expect: JobState | None = None, **values: Any) -> WriteOutcome:
        """Write a snapshot and publish its event (refused if the job ended, or is not in `expect`)."""
        event, fields = encode_write(state, **values)
        args = [self._ttl, expect.value if expect else "", event, *fields]
        return WriteOutcome.parse(self._write(keys=[self._keys.job(job_id)], args=args))

    def write_final(self, job_id: str, state: JobState, **values: Any) -> None:
        """Write a job's outcome, retrying through a Redis outage for up to `FINAL_WRITE_DEADLINE` s."""
        deadline = time.monotonic() + FINAL_WRITE_DEADLINE
        delay = 0.1
        while True:
            try:
                self.write(job_id, state, **values)
                return
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    logger.error("giving up writing the outcome of job %s: %r", job_id, exc)
                    return
                logger.warning("Redis unavailable while writing the outcome of job %s (%r); retrying", job_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def begin_attempt(self, job_id: str, alive_for: float) -> int:
        """Mark the job alive and count one more attempt at it; return the attempt number."""
        pipe = self._client.pipeline()
        pipe.set(self._keys.alive(job_id), "1", px=int(alive_for * 1000))
        pipe.hincrby(self._keys.job(job_id), "attempt", 1)
        return int(pipe.execute()[1])

    def beat(self, job_id: str, alive_for: float) -> None:
        """Keep the job's liveness key for another `alive_for` seconds."""
        self._client.set(self._keys.alive(job_id), "1", px=int(alive_for * 1000))

    def end_attempt(self, job_id: str) -> None:
        self._client.delete(self._keys.alive(job_id))

    def cancel_requested(self, job_id: str) -> bool:
        return self._client.hget(self._keys.job(job_id), "cancel") in (b"1", "1")
