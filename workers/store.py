"""Atomic writes of a job's snapshot together with its event (worker side, and the server's first write).

`WRITE_SCRIPT` runs inside Redis: it bumps the job's sequence number, writes the snapshot fields,
refreshes the TTL and publishes the event with that sequence number spliced in, all in one round
trip. It refuses to touch a job that already reached a terminal state, so nothing can follow a
result, and it returns the cancellation flag so that every progress report doubles as a
cancellation check at no extra cost.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from workers.events import TERMINAL_STATES, JobState, Keys

WRITE_SCRIPT = """
local key = KEYS[1]
local state = redis.call('HGET', key, 'state')
local cancel = redis.call('HGET', key, 'cancel') or ''
if state and (%s) then
  return {0, cancel}
end
local seq = redis.call('HINCRBY', key, 'seq', 1)
if #ARGV > 2 then
  redis.call('HSET', key, unpack(ARGV, 3))
end
redis.call('EXPIRE', key, tonumber(ARGV[1]))
redis.call('PUBLISH', key, '{"seq":' .. seq .. ',' .. string.sub(ARGV[2], 2))
return {seq, cancel}
""" % " or ".join(f"state == '{s}'" for s in sorted(TERMINAL_STATES))


def encode_write(
    state: JobState,
    *,
    progress: float | None = None,
    total: float | None = None,
    message: str | None = None,
    result: Any = None,
    error: str | None = None,
    error_type: str | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[str, list[str]]:
    """The event JSON and the snapshot field/value pairs for one write.

    Every write sets all progress fields (empty string for None), so the snapshot is always
    exactly the latest event.
    """
    event: dict[str, Any] = {"state": state.value}
    fields: dict[str, str] = {
        "state": state.value,
        "progress": "" if progress is None else repr(float(progress)),
        "total": "" if total is None else repr(float(total)),
        "message": message or "",
        "updated_at": repr(time.time()),
    }
    for name, value in (("progress", progress), ("total", total), ("message", message)):
        if value is not None:
            event[name] = value
    if state.terminal:
        result_json = json.dumps(result, separators=(",", ":"))
        fields |= {"result": result_json, "error": error or "", "error_type": error_type or ""}
        event |= {"result": result, "error": error, "error_type": error_type}
    fields |= extra or {}
    flat = [item for pair in fields.items() for item in pair]
    return json.dumps(event, separators=(",", ":")), flat


@dataclass
class WriteOutcome:
    """What the script answered: the new sequence number (0: the job was already finished)."""

    seq: int
    cancel_requested: bool

    @classmethod
    def parse(cls, reply: list[Any]) -> WriteOutcome:
        cancel = reply[1]
        return cls(seq=int(reply[0]), cancel_requested=cancel in (b"1", "1"))


class JobStore:
    """Synchronous access to job snapshots, as used inside worker processes."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl = ttl
        self._write = client.register_script(WRITE_SCRIPT)

    def write(self, job_id: str, state: JobState, **values: Any) -> WriteOutcome:
        event, fields = encode_write(state, **values)
        reply = self._write(keys=[self._keys.job(job_id)], args=[self._ttl, event, *fields])
        return WriteOutcome.parse(reply)

    def cancel_requested(self, job_id: str) -> bool:
        return self._client.hget(self._keys.job(job_id), "cancel") in (b"1", "1")

    def state(self, job_id: str) -> JobState | None:
        value = self._client.hget(self._keys.job(job_id), "state")
        return JobState(value.decode()) if value else None
