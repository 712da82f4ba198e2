"""What travels between a worker and the server: job states, events and the Redis key layout.

Redis layout (all under the configured namespace `<ns>`):

The job id is a hash tag (`{...}`): on a Redis Cluster every key of one job lives on one slot.

- `<ns>:job:{<job_id>}` (hash): the job's *snapshot*, the source of truth. Fields: `job` (name),
  `state`, `seq`, `progress`, `total`, `message`, `result` (JSON), `error`, `error_type`,
  `error_code` (a JSON-RPC error code, for a job that ended with a protocol error), `reply_to`
  (the reply channel of the server process following the job, if any),
  `attempt` (1, then 2... when a retry-safe job is re-run after a lost worker), `cancel` ("1" once cancellation was requested), `created_at`, `updated_at`;
  for a job that asks its caller (`asking.py`): `round` (its questions so far, one round per
  ask), `inputs` (JSON: the round's requests, `{key: {method, params}}`), `pending` (the keys of
  that round still unanswered, space-separated), `can_ask` (what the caller's client can answer,
  space-separated: `elicitation`, `sampling`, `roots`), `log_level` (the least severe log level
  the caller wants, if it asked), `log` (JSON: the job's last log line); `steps` (how many steps
  its runs began) and `traceparent` (the W3C trace context of the server span that queued it,
  when tracing is on: `tracing.py`).
- `<ns>:job:{<job_id>}:steps` (list): the job's last `STEP_HISTORY` steps, oldest first, as JSON
  `{attempt, at, progress, total, message}` (see `_timeline.py`); expires with the snapshot.
- `<ns>:job:{<job_id>}:answers` (hash): the answers to the current round, by key, as JSON.
- `<ns>:job:{<job_id>}:inbox` (list): the round number, pushed once every question of it is answered
  (what the waiting job blocks on).
- `<ns>:job:{<job_id>}:artifacts` (hash): the files a job stored (`progress.artifact`), by name: JSON
  `{mimeType, size}`; `<ns>:job:{<job_id>}:artifact:<name>` (string): each one's bytes. Both expire
  with the job's result.
- `<ns>:job:{<job_id>}:alive` (string with a TTL): refreshed by the worker while the job runs; its
  absence while the state is `running` means the worker was lost.
- `<ns>:worker:<hostname>` (string with a TTL): a live worker and the queues it consumes.
- `<ns>:caller:<hash>:jobs` (set with a TTL): the job keys of one caller's jobs that may still be
  queued or running, kept only when a per-caller limit is set (`MCP_JOBS_MAX_CALLS_PER_CALLER`).
- `<ns>:job:{<job_id>}` (pub/sub channel, same name as the hash): one JSON event per snapshot change, carrying the
  new `seq`. Pub/sub may drop messages; a consumer that sees a gap in `seq` re-reads the hash.
- `<ns>:server:<id>` (pub/sub channel): the *reply channel* of one server process. A job whose
  snapshot names it in `reply_to` has every event published there too, as `<job key>\n<event>`:
  the server that created the job follows it without subscribing per job.

The worker writes the hash and publishes the event in one server-side script (see `_store.py`),
so an event and the snapshot can never disagree.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any


class JobState(str, Enum):
    """Where a job is in its life."""

    QUEUED = "queued"  # accepted by the server, waiting for a worker
    RUNNING = "running"  # a worker is executing it
    INPUT_REQUIRED = "input_required"  # running, and waiting for its caller to answer a question
    SUCCEEDED = "succeeded"  # finished; `result` holds its return value
    FAILED = "failed"  # raised or was stopped by a limit; `error` says why
    CANCELLED = "cancelled"  # stopped because the caller cancelled

    @property
    def on_worker(self) -> bool:
        """A worker holds the job (running, or waiting there for an answer): its heartbeat counts."""
        return self in (JobState.RUNNING, JobState.INPUT_REQUIRED)

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


TERMINAL_STATES = frozenset(state.value for state in JobState if state.terminal)


class FailureKind(StrEnum):
    """Why a job failed, as its snapshot's `error_type` says (shown by `mcp-jobs jobs`, the jobs
    page and tasks). A job's own unexpected exception is recorded by its class name instead."""

    JOB_ERROR = "JobError"  # the job raised `JobError`: a failure it explains itself
    PROTOCOL_ERROR = "ProtocolError"  # the job raised `MCPError`: the call ends with that JSON-RPC error
    VALIDATION_ERROR = "ValidationError"  # the worker's copy of the job rejected arguments the server accepted
    TIME_LIMIT = "TimeLimitExceeded"  # ran past its time limit (soft in the job, or hard: killed)
    UNSERIALISABLE_RESULT = "UnserialisableResult"  # returned something that is not JSON
    RESULT_TOO_LARGE = "ResultTooLarge"  # returned more than `max_result_bytes`
    QUEUE_TIMEOUT = "QueueTimeout"  # no worker started it within `max_queue_wait`
    WORKER_LOST = "WorkerLost"  # its worker died (and it was not re-run)
    JOB_LOST = "JobLost"  # its snapshot vanished from Redis (restarted without persistence)
    BROKER_DOWN = "BrokerDown"  # the broker refused the job, so it never started
    INPUT_TIMEOUT = "InputTimeout"  # asked its caller, and no answer came within `input_timeout`
    REDIS_UNREACHABLE = "RedisUnreachable"  # the server could not read it for `redis_outage_limit` (never stored)


@dataclass(frozen=True)
class Keys:
    """Names of the Redis keys and channels of one namespace."""

    namespace: str

    def job(self, job_id: str) -> str:
        """The snapshot hash of a job; also the name of its event channel.

        The job id is a hash tag (`<ns>:job:{<id>}`), and every other key of the job begins with
        this one: on a Redis Cluster a job's snapshot, liveness key, step list, answers, files and
        channel share a slot, so the scripts that touch several of them run there as they do on
        one Redis (see `redis_connect.py`)."""
        return f"{self.namespace}:job:{{{job_id}}}"

    def job_id_of(self, key: str) -> str | None:
        """The job id of a snapshot key (`job`), None for any other key (`<id>}:alive`, ...)."""
        prefix = f"{self.namespace}:job:{{"
        if not key.startswith(prefix) or not key.endswith("}"):
            return None
        job_id = key[len(prefix) : -1]
        return job_id if job_id and "}" not in job_id and "{" not in job_id else None

    def alive(self, job_id: str) -> str:
        """The liveness key of a running job (the write script's admission derives it from `job`)."""
        return f"{self.job(job_id)}:alive"

    def steps(self, job_id: str) -> str:
        """A job's step timeline, oldest first (the write script derives it from `job`; see `_timeline.py`)."""
        return f"{self.job(job_id)}:steps"

    def answers(self, job_id: str) -> str:
        """The answers to a job's current round of questions, by key (see `asking.py`)."""
        return f"{self.job(job_id)}:answers"

    def inbox(self, job_id: str) -> str:
        """Where a job waiting for answers is woken: the round number, once all are in."""
        return f"{self.job(job_id)}:inbox"

    def artifacts(self, job_id: str) -> str:
        """The names (and types and sizes) of the files a job stored."""
        return f"{self.job(job_id)}:artifacts"

    def artifact(self, job_id: str, name: str) -> str:
        """The bytes of one file a job stored."""
        return f"{self.job(job_id)}:artifact:{name}"

    def events(self) -> str:
        """The channel of server-wide events for `subscriptions/listen` streams (see `server/events.py`):
        JSON `{"method": "notifications/tools/list_changed", "params": {}}` and the like."""
        return f"{self.namespace}:events"

    def caller_jobs(self, caller: str) -> str:
        """The set of a caller's jobs that may still be live, for the per-caller limit (the
        caller's name hashed: it can be any string a token carries)."""
        return f"{self.namespace}:caller:{hashlib.sha256(caller.encode()).hexdigest()[:32]}:jobs"

    def caller_tasks(self, caller: str) -> str:
        """The index of a caller's tasks by creation time, for `tasks/list` (see `server/task_records.py`)."""
        return f"{self.namespace}:caller:{hashlib.sha256(caller.encode()).hexdigest()[:32]}:tasks"

    def parts(self, job_id: str, map_index: int = 0) -> str:
        """The parts of a job's `map_index`-th fan-out: claims and outcomes (see `fanout.py`)."""
        return f"{self.job(job_id)}:parts:{map_index}"

    def parts_done(self, job_id: str, map_index: int = 0) -> str:
        """The indices of those parts that finished, in the order they finished."""
        return f"{self.job(job_id)}:parts:{map_index}:done"

    def queued_parts(self, queue: str) -> str:
        """How many fan-out parts wait on `queue` (see `fanout.py`)."""
        return f"{self.namespace}:queue:{queue}:parts"

    def replies(self, server_id: str) -> str:
        """The reply channel of one server process (the jobs it follows publish there too)."""
        return f"{self.namespace}:server:{server_id}"

    def worker(self, hostname: str) -> str:
        """A worker's presence record (see `presence.py`)."""
        return f"{self.namespace}:worker:{hostname}"


@dataclass(frozen=True)
class JobEvent:
    """One observed state of a job: a pub/sub event or a snapshot read, they have the same shape."""

    seq: int
    state: JobState
    progress: float | None = None
    total: float | None = None
    message: str | None = None
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    error_code: int | None = None
    """The JSON-RPC error code when the job ended with a protocol error (it raised `MCPError`)."""
    at: float | None = None
    """When the worker wrote it (its clock, Unix time)."""
    result_elsewhere: bool = False
    """A terminal event whose result was too large to carry: read it from the snapshot."""
    attempt: int = 0
    """Which run of the job this is: 0 while queued, 1 for the first run, 2+ after a lost worker."""
    round: int = 0
    """How many rounds of questions the job has asked (the last one is outstanding while `input_required`)."""
    inputs: dict[str, Any] | None = None
    """The outstanding round's requests, `{key: {method, params}}` (only answered ones removed);
    in a snapshot, not in events (a follower reads the snapshot when a job asks)."""
    log: dict[str, Any] | None = None
    """A log line the job sent (`{level, data, logger}`): in the event that carried it."""

    @classmethod
    def from_message(cls, data: bytes | str) -> JobEvent:
        """Parse a published event; `ValueError` if it is not one a worker could have sent."""
        raw = strict_json(data)
        if not isinstance(raw, dict):
            raise ValueError("an event must be a JSON object")
        return cls(
            seq=_integer(raw.get("seq")),
            state=JobState(raw.get("state")),
            progress=_finite(raw.get("progress")),
            total=_finite(raw.get("total")),
            message=_string(raw.get("message")),
            result=raw.get("result"),
            error=_string(raw.get("error")),
            error_type=_string(raw.get("error_type")),
            error_code=None if raw.get("error_code") is None else _integer(raw.get("error_code")),
            at=_finite(raw.get("at")),
            attempt=_integer(raw.get("attempt", 0)),
            result_elsewhere=raw.get("state") == JobState.SUCCEEDED.value and "result" not in raw,
            round=_integer(raw.get("round", 0)),
            log=_log_line(raw.get("log")),
        )

    @classmethod
    def from_snapshot(cls, fields: dict[bytes, bytes] | dict[str, str]) -> JobEvent | None:
        """Parse a snapshot hash (`HGETALL`); None when the job is unknown or expired, `ValueError`
        if it holds what no worker writes."""
        snap = decoded(fields)
        if "state" not in snap:
            return None
        result = snap.get("result")
        return cls(
            seq=_integer(snap.get("seq", "0")),
            state=JobState(snap["state"]),
            progress=_finite(_number(snap.get("progress"))),
            total=_finite(_number(snap.get("total"))),
            message=snap.get("message") or None,
            result=strict_json(result) if result else None,
            error=snap.get("error") or None,
            error_type=snap.get("error_type") or None,
            error_code=_integer(snap["error_code"]) if snap.get("error_code") else None,
            at=_finite(_number(snap.get("updated_at"))),
            attempt=_integer(snap.get("attempt") or "0"),
            round=_integer(snap.get("round") or "0"),
            inputs=_pending_inputs(snap) if snap["state"] == JobState.INPUT_REQUIRED.value else None,
        )


LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
"""MCP's log levels (RFC 5424's), least severe first."""


def _log_line(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("level") not in LOG_LEVELS or "data" not in value:
        raise ValueError("a log line must be an object with a known level and data")
    logger = _string(value.get("logger"))
    return {"level": value["level"], "data": value["data"], "logger": logger}


def _pending_inputs(snap: dict[str, str]) -> dict[str, Any]:
    """The requests of the outstanding round that are still unanswered."""
    requests = strict_json(snap.get("inputs") or "{}")
    if not isinstance(requests, dict):
        raise ValueError("inputs must be a JSON object")
    pending = set((snap.get("pending") or "").split())
    return {key: request for key, request in requests.items() if key in pending}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)
"""One decoder for every event (`json.loads` with options builds a new one per call)."""


def strict_json(data: bytes | str) -> Any:
    """`json.loads` that refuses NaN and Infinity, which Python accepts but JSON does not have."""
    return _STRICT.decode(data.decode() if isinstance(data, bytes) else data)


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (clients may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value


def decoded(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    """A Redis hash reply (`HGETALL`) as text."""
    return {as_text(k): as_text(v) for k, v in fields.items()}


def _number(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _finite(value: object) -> float | None:
    """A finite number or None; anything else (a string, a bool, NaN, Infinity) is malformed."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("a number too large for a float") from None
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a finite number")
    return number


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _string(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value
