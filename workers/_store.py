"""Atomic writes of a job's snapshot together with its event (worker side, and the server's writes).

`WRITE_SCRIPT` runs inside Redis: it bumps the job's sequence number, writes the snapshot fields,
refreshes the TTL and publishes the event with that sequence number spliced in, all in one round
trip. It refuses to touch a job that already reached a terminal state (so nothing can follow a
result), or, when asked, one that is not in an expected state (so the server can end a job that
never started without racing a worker that just picked it up). It returns the cancellation flag,
so every progress report doubles as a cancellation check at no extra cost. A job created with a
`reply_to` channel (the server process that follows it) has each event published there too,
prefixed with the job's key, so that server needs no subscription per job. The server's first
write of a job can also push the job's Celery message onto its broker queue, in the same script:
the job is queued if and only if its snapshot exists, in one round trip (see `server/enqueue.py`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from mcp_jobs._events import TERMINAL_STATES, JobState, Keys, as_text
from mcp_jobs._timeline import STEP_HISTORY, step_entry
from mcp_jobs.redis_connect import REDIS_ERRORS, is_cluster

logger = logging.getLogger(__name__)

_WRITE_LUA = """
-- KEYS[1]: the job hash (and channel); KEYS[2]: the job's liveness key; KEYS[3]: a broker queue;
-- KEYS[4]: the set of a caller's jobs
-- ARGV: ttl, expected state or '', liveness ('' leave, '0' delete, else milliseconds to live),
--       '1' to begin a new attempt, event JSON (without seq and attempt), a message to push
--       onto KEYS[3] once written or '', the most live jobs KEYS[4] may hold or '', a step
--       that begins (JSON without attempt, see `_timeline.py`) or '', the most steps the job's
--       step list keeps, then field/value pairs
local key, alive = KEYS[1], KEYS[2]
if ARGV[7] ~= '' then
  -- Admission (the write that creates a job): count the caller's jobs still queued or running;
  -- a running one counts while its liveness key (the job key plus ':alive') exists. Finished and
  -- vanished ones leave the set, and so do queued ones already cancelled (a worker skips them),
  -- so the set never holds more than the limit.
  local live = 0
  for _, job in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    local other = redis.call('HGET', job, 'state')
    if not other or TERMINAL(other) or (other == 'queued' and redis.call('HGET', job, 'cancel') == '1') then
      redis.call('SREM', KEYS[4], job)
    elseif other ~= 'running' or redis.call('EXISTS', job .. ':alive') == 1 then
      live = live + 1
    end
  end
  if live >= tonumber(ARGV[7]) then
    return {-1, '', 0, live}
  end
  redis.call('SADD', KEYS[4], key)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[1]))
end
local state = redis.call('HGET', key, 'state')
local cancel = redis.call('HGET', key, 'cancel') or ''
if (state and TERMINAL(state)) or (ARGV[2] ~= '' and state ~= ARGV[2]) then
  if ARGV[3] == '0' then redis.call('DEL', alive) end
  return {0, cancel, 0}
end
local attempt
if ARGV[4] == '1' then
  attempt = redis.call('HINCRBY', key, 'attempt', 1)
else
  attempt = tonumber(redis.call('HGET', key, 'attempt') or '0')
end
local seq = redis.call('HINCRBY', key, 'seq', 1)
-- Read before this write's fields: the write that sets reply_to (the server's own, creating the
-- job) is not echoed back to the server that made it.
local reply_to = redis.call('HGET', key, 'reply_to')
if #ARGV > 9 then
  redis.call('HSET', key, unpack(ARGV, 10))
end
redis.call('EXPIRE', key, tonumber(ARGV[1]))
-- The step list lives as long as the snapshot: refreshed by each step, the outcome and heartbeats.
local steps = key .. ':steps'
if ARGV[8] ~= '' then
  redis.call('HINCRBY', key, 'steps', 1)
  redis.call('RPUSH', steps, '{"attempt":' .. attempt .. ',' .. string.sub(ARGV[8], 2))
  redis.call('LTRIM', steps, -tonumber(ARGV[9]), -1)
  redis.call('EXPIRE', steps, tonumber(ARGV[1]))
elseif ARGV[3] == '0' then
  redis.call('EXPIRE', steps, tonumber(ARGV[1]))
end
if ARGV[3] == '0' then
  redis.call('DEL', alive)
elseif ARGV[3] ~= '' then
  redis.call('SET', alive, '1', 'PX', tonumber(ARGV[3]))
end
local event = '{"seq":' .. seq .. ',"attempt":' .. attempt .. ',' .. string.sub(ARGV[5], 2)
redis.call('PUBLISH', key, event)
if reply_to then
  redis.call('PUBLISH', reply_to, key .. '\\n' .. event)
end
if ARGV[6] ~= '' then
  redis.call('LPUSH', KEYS[3], ARGV[6])
end
return {seq, cancel, attempt}
"""


def _is_terminal(variable: str) -> str:
    """A Lua test of `variable` against the terminal states, inline (no table built per write)."""
    return "(" + " or ".join(f"{variable} == '{state}'" for state in sorted(TERMINAL_STATES)) + ")"


WRITE_SCRIPT = _WRITE_LUA.replace("TERMINAL(other)", _is_terminal("other")).replace(
    "TERMINAL(state)", _is_terminal("state")
)

_PUBLISH = "redis.call('PUBLISH', key, event)"


def sharded(script: str) -> str:
    """A job script as a Redis Cluster runs it: the job's event goes on sharded pub/sub
    (`SPUBLISH` on the job's own channel, served by the job's own slot). There no job names a
    reply channel (another slot) and no write admits or enqueues: those steps run apart (see
    `redis_connect.py`)."""
    if _PUBLISH not in script:
        raise ValueError("not a job script: it publishes no event on the job's channel")
    return script.replace(_PUBLISH, "redis.call('SPUBLISH', key, event)")


def job_script(client: Any, script: str) -> Any:
    """`script` registered on `client`, as the topology it talks to runs it (`sharded` on a cluster)."""
    return client.register_script(sharded(script) if is_cluster(client) else script)


def script_args(
    ttl: int,
    state: JobState,
    *,
    expect: JobState | None = None,
    alive_for: float | None = None,
    begin: bool = False,
    queue_message: str = "",
    admit: int | None = None,
    step: bool = False,
    **values: Any,
) -> list[Any]:
    """The ARGV of one `WRITE_SCRIPT` call. `alive_for`: None leaves the liveness key, 0 deletes it;
    `queue_message` is pushed onto the script's third key if the write is done; with `admit`, the
    write is refused while the set of the script's fourth key holds that many live jobs; with
    `step`, the write's message begins a step of the job's timeline (see `_timeline.py`)."""
    event, fields, at = encode_write(state, **values)
    alive = "" if alive_for is None else str(int(alive_for * 1000))
    limit = "" if admit is None else str(admit)
    message = values.get("message")
    begun = step_entry(at, values.get("progress"), values.get("total"), message) if step and message else ""
    return [
        ttl,
        expect.value if expect else "",
        alive,
        "1" if begin else "",
        event,
        queue_message,
        limit,
        begun,
        STEP_HISTORY,
        *fields,
    ]


INLINE_RESULT_BYTES = 2048
"""Largest result (as JSON) a terminal event carries; larger ones are read from the snapshot."""

REPLICA_WAIT_MS = 2000
"""Longest a job's final write waits for a replica to acknowledge it (with Sentinel)."""

REPLICA_RECHECK = 30.0
"""Seconds a worker process writes outcomes without waiting once no replica acknowledged one."""

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
    error_code: int | None = None,
    log: dict[str, Any] | None = None,
    round_number: int | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[str, list[str], float]:
    """The event JSON, the snapshot field/value pairs and the time (`at`) of one write.

    A progress write sets all progress fields (empty string for None), so the snapshot is exactly
    the latest event (a `log` line rides along, and the snapshot keeps the last one). A terminal event carries the result only when it is small (`INLINE_RESULT_BYTES`). A terminal write keeps the job's last progress, total and message (unless it
    gives its own): a caller that learns the outcome from the snapshot can still show the job's
    final state before the result.
    """
    now = time.time()
    event: dict[str, Any] = {"state": state.value, "at": now}
    fields: dict[str, str] = {"state": state.value, "updated_at": repr(now)}
    for name, value in (("progress", progress), ("total", total), ("message", message)):
        if value is not None:
            event[name] = value
            fields[name] = value if isinstance(value, str) else repr(float(value))
        elif not state.terminal:
            fields[name] = ""
    if round_number is not None:
        event["round"] = round_number
        fields["round"] = str(round_number)
    if log is not None:
        event["log"] = log
        fields["log"] = json.dumps(log, separators=(",", ":"), allow_nan=False)
    if state.terminal:
        result_json = json.dumps(result, separators=(",", ":"), allow_nan=False)
        fields |= {
            "result": result_json,
            "error": error or "",
            "error_type": error_type or "",
            "error_code": "" if error_code is None else str(error_code),
        }
        # A large result stays out of the event: it can be megabytes, and every call's events share
        # one pub/sub connection (and its output buffer limit); a server then reads it from the
        # snapshot. A small one rides along, which saves that read for most calls.
        if len(result_json) <= INLINE_RESULT_BYTES:
            event["result"] = result
        event |= {"error": error, "error_type": error_type, "error_code": error_code}
    fields |= extra or {}
    flat = [item for pair in fields.items() for item in pair]
    return json.dumps(event, separators=(",", ":"), allow_nan=False), flat, now


@dataclass
class WriteOutcome:
    """What the script answered: the new sequence number (0: refused, the job is finished or moved
    on; -1: not created, the caller is at its limit), whether the caller asked to cancel, the job's
    attempt number, and for a job not created, how many live jobs its caller has."""

    seq: int
    cancel_requested: bool
    attempt: int = 0
    caller_jobs: int = 0

    @property
    def written(self) -> bool:
        """The snapshot was written (and its event published): `seq` is its new sequence number."""
        return self.seq > 0

    @property
    def refused(self) -> bool:
        """Nothing was written: the job had already finished, or was not in the state the write expected."""
        return self.seq == 0

    @property
    def over_limit(self) -> bool:
        """Nothing was created: the caller already has as many live jobs as its limit allows."""
        return self.seq < 0

    @classmethod
    def parse(cls, reply: list[Any]) -> WriteOutcome:
        return cls(
            seq=int(reply[0]),
            cancel_requested=reply[1] in (b"1", "1"),
            attempt=int(reply[2]),
            caller_jobs=int(reply[3]) if len(reply) > 3 else 0,
        )


class JobStore:
    """Synchronous access to job snapshots, as used inside worker processes."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl: int, replicated: bool = False) -> None:
        self.client = client
        self._keys = keys
        self._ttl = ttl
        self._replicated = replicated
        self._alone_until = 0.0
        self._write = job_script(client, WRITE_SCRIPT)

    @property
    def keys(self) -> Keys:
        return self._keys

    @property
    def ttl(self) -> int:
        """Seconds a job's records live after its last write (`MCP_JOBS_RESULT_TTL`)."""
        return self._ttl

    def write(self, job_id: str, state: JobState, **options: Any) -> WriteOutcome:
        """Write a snapshot and publish its event in one round trip (see `script_args` for the options)."""
        args = script_args(self._ttl, state, **options)
        return WriteOutcome.parse(self._write(keys=[self._keys.job(job_id), self._keys.alive(job_id)], args=args))

    def write_final(self, job_id: str, state: JobState, **values: Any) -> None:
        """Write a job's outcome (and drop its liveness key), retrying through a Redis outage for up
        to `FINAL_WRITE_DEADLINE` seconds. With replicas (Sentinel), the write then waits for one
        to have it (`WAIT`, at most `REPLICA_WAIT_MS`): nothing follows an outcome that would make
        good a write the master took but did not pass on before a failover."""
        deadline = time.monotonic() + FINAL_WRITE_DEADLINE
        delay = 0.1
        while True:
            try:
                written = self.write(job_id, state, alive_for=0, **values).written
                if written:
                    self._await_replica(job_id)
                return
            except REDIS_ERRORS as exc:
                if time.monotonic() > deadline:
                    logger.error("giving up writing the outcome of job %s: %r", job_id, exc)
                    return
                logger.warning("Redis unavailable while writing the outcome of job %s (%r); retrying", job_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _await_replica(self, job_id: str) -> None:
        """With replicas, wait (`WAIT 1`) until one has the write just made. When none answered,
        the master has lost its replicas (a failover left it alone): writes then go on without
        waiting for `REPLICA_RECHECK` seconds, instead of each paying the whole wait."""
        if not self._replicated or time.monotonic() < self._alone_until:
            return
        if self.client.wait(1, REPLICA_WAIT_MS) < 1:
            self._alone_until = time.monotonic() + REPLICA_RECHECK
            logger.warning(
                "job %s: no replica acknowledged its outcome within %d ms; not waiting for replicas for %g s",
                job_id,
                REPLICA_WAIT_MS,
                REPLICA_RECHECK,
            )

    def beat(self, job_ids: list[str], alive_for: float) -> None:
        """Keep the liveness keys of `job_ids` for another `alive_for` seconds, and their snapshots
        for another TTL (a long job that reports nothing must not lose its record), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.set(self._keys.alive(job_id), "1", px=int(alive_for * 1000))
            pipe.expire(self._keys.job(job_id), self._ttl)
            pipe.expire(self._keys.steps(job_id), self._ttl)
        pipe.execute()

    def ended_as(self, job_id: str) -> tuple[str, str | None]:
        """How a job that refused a write ended: its state and error (as the snapshot says)."""
        state, error = self.client.hmget(self._keys.job(job_id), ["state", "error"])
        return as_text(state) if state else "gone", as_text(error) if error else None

    def cancel_requested(self, job_id: str) -> bool:
        return self.client.hget(self._keys.job(job_id), "cancel") in (b"1", "1")
