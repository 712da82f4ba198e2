"""What is going on right now, read from Redis: jobs in flight, recent failures, queues, workers.

The data behind `mcp-jobs jobs` and the live jobs page. It reads only what workers and servers
already write (no index of its own, nothing to keep consistent):

- job snapshots `<ns>:job:{<id>}`, found with SCAN (liveness keys `<ns>:job:{<id>}:alive` skipped),
  read by a Lua script (`READ_SCRIPT`) in batches: the fields shown here for a job in flight or
  failed (never the `result`, which can be megabytes), and only state, caller and time for any
  other ended job, which is only counted;
- whether a running job's worker still beats (`<ns>:job:{<id>}:alive`);
- the workers' presence records `<ns>:worker:<hostname>` (see `presence.py`);
- the depth of each queue (`LLEN`), only when the Celery broker is this very Redis.

The work is bounded: SCAN walks the keyspace in batches and stops after `max_keys` snapshots
(the view says `complete=False` then), and each list returned holds at most `limit` jobs (the
view says how many there were). Snapshots expire `result_ttl` after their last update, so a
failure stays visible for at most that long whatever `recent_failures_for` asks.

`scan_jobs` does the reading, `select` the filtering (by caller) and capping, so one scan can
serve many viewers; `list_jobs` is both in one call.

`read_job` reads one job, whatever its state (`mcp-jobs jobs JOB_ID`, the page's job panel): its
snapshot (still never the `result`) and its step list `<ns>:job:{<id>}:steps` in one round trip,
made into a `JobDetail` with the timeline of `_timeline.timeline`, the one the metrics use too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot

from mcp_jobs._contract import is_job_id, status_line
from mcp_jobs._events import JobEvent, JobState, Keys, as_text, strict_json
from mcp_jobs._timeline import Step, parse_entries, timeline
from mcp_jobs.redis_connect import is_cluster
from mcp_jobs.tracing import TRACE_FIELD, trace_id

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 500
"""Most jobs in each list of a view (in flight, recent failures)."""

DEFAULT_MAX_KEYS = 20_000
"""Most job snapshots one scan reads; beyond it the view is marked incomplete."""

SCAN_BATCH = 1000
"""`COUNT` of each SCAN step (keys Redis looks at per round trip)."""

READ_BATCH = 200
"""Snapshots read per `READ_SCRIPT` call (each call holds Redis for about a millisecond)."""

CLUSTER_READS_AT_ONCE = 16
"""On a cluster, `READ_SCRIPT` calls (one per slot, so about one per job) in flight at once."""

MAX_TEXT = 2000
"""Longest message or error kept per job (the rest is cut, with an ellipsis)."""

DEFAULT_QUEUE = "celery"
"""Celery's default queue, always listed."""

FIELDS = (
    "job",
    "state",
    "seq",
    "progress",
    "total",
    "message",
    "error",
    "error_type",
    "created_at",
    "updated_at",
    "started_at",
    "caller",
    "task",
    "attempt",
    "worker",
    "log",
)
"""The snapshot fields a view reads (`started_at` is optional: with it, a running job's queue wait
is known)."""

DETAIL_FIELDS = (*FIELDS, "steps", TRACE_FIELD)
"""The snapshot fields `read_job` reads: those of a row, the count of steps begun and the trace context."""

COUNTED_ONLY = ("state", "caller", "updated_at")
"""What a view reads of an ended job other than a failure: it is only counted."""

_READ_LUA = """
-- KEYS: job snapshot keys (on a cluster, of one slot). For each job: its FIELDS and whether its
-- liveness key exists; only its COUNTED_ONLY fields when it ended other than by failing; false
-- when it is gone. One call per batch instead of two commands per job: the commands cost the
-- server's event loop far more to pack than Redis takes to run them.
local out = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HGET', key, 'state')
  if not state then
    out[i] = false
  elseif COUNTED(state) then
    out[i] = redis.call('HMGET', key, COUNTED_ONLY)
  else
    local row = redis.call('HMGET', key, FIELDS)
    row[#row + 1] = redis.call('EXISTS', key .. ':alive')
    out[i] = row
  end
end
return out
"""


def _lua_strings(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


_COUNTED_STATES = [state.value for state in JobState if state.terminal and state is not JobState.FAILED]

READ_SCRIPT = (
    _READ_LUA.replace("COUNTED(state)", " or ".join(f"state == '{state}'" for state in _COUNTED_STATES))
    .replace("HMGET', key, COUNTED_ONLY", f"HMGET', key, {_lua_strings(COUNTED_ONLY)}")
    .replace("HMGET', key, FIELDS", f"HMGET', key, {_lua_strings(FIELDS)}")
)
"""`_READ_LUA` with the states and field names written in."""


@dataclass(frozen=True)
class JobRow:
    """One job as shown: a job in flight, or a recent failure."""

    job_id: str
    tool: str
    caller: str
    """Who started it ("" without authentication)."""
    state: str
    progress: float | None
    total: float | None
    status: str
    """The status line tasks report: "[3/5] 60% scanning logs"."""
    message: str | None
    created_at: float | None
    updated_at: float | None
    age: float | None
    """Seconds since the job was created."""
    queue_wait: float | None
    """Seconds it waited for a worker: so far for a queued job; for a running one only when its
    snapshot records `started_at`; else None."""
    attempt: int
    task: bool
    worker: str | None
    heartbeat: bool | None
    """For a running job, whether its worker beat recently (False: the worker may be lost)."""
    error: str | None = None
    error_type: str | None = None
    last_log: str | None = None
    """The job's last log line ("info: ..."): the only place a task's log lines can be seen."""

    @property
    def fraction(self) -> float | None:
        """Progress as a fraction of the total (0..1), when there is a total."""
        if self.progress is None or not self.total:
            return None
        return min(max(self.progress / self.total, 0.0), 1.0)


@dataclass(frozen=True)
class WorkerRow:
    hostname: str
    queues: list[str]
    pid: int | None


@dataclass(frozen=True)
class QueueRow:
    name: str
    depth: int | None
    """Messages waiting (None: the broker is not this Redis, so it cannot be read here)."""
    workers: int
    """Live workers consuming it."""


@dataclass(frozen=True)
class JobsScan:
    """Everything one scan read, for all callers; `select` makes views of it."""

    now: float
    jobs: list[JobRow]
    """Jobs in flight, and failed jobs (other ended jobs are only counted)."""
    ended: list[tuple[str, str, float | None]]
    """(caller, state, updated_at) of every other job seen, for the counts."""
    workers: list[WorkerRow]
    queues: list[QueueRow]
    scanned: int
    complete: bool
    """False when the scan stopped at its `max_keys` bound."""


@dataclass(frozen=True)
class JobsView:
    """The jobs one viewer may see, plus the queues and workers."""

    now: float
    caller: str | None
    """Whose jobs these are (None: everyone's)."""
    in_flight: list[JobRow]
    """Queued and running jobs, oldest first."""
    in_flight_total: int
    failures: list[JobRow]
    """Jobs that failed within `recent_failures_for` seconds, newest first."""
    failures_total: int
    recent_failures_for: float
    counts: dict[str, int]
    """Jobs by state among those scanned (ended ones: within `recent_failures_for` only)."""
    queues: list[QueueRow]
    workers: list[WorkerRow]
    limit: int
    scanned: int
    complete: bool
    """False when the scan stopped at its bound: some jobs may be missing."""

    @property
    def truncated(self) -> bool:
        """Whether some jobs are left out (a list over `limit`, or an incomplete scan)."""
        return (
            not self.complete or self.in_flight_total > len(self.in_flight) or self.failures_total > len(self.failures)
        )

    def to_json(self, *, hosts: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (the `--json-output` of the CLI and the page's stream). Without
        `hosts`, workers are only counted, and jobs do not name theirs."""
        data = asdict(self)
        data["truncated"] = self.truncated
        data["workers_alive"] = len(self.workers)
        if not hosts:
            data["workers"] = []
            for row in (*data["in_flight"], *data["failures"]):
                row["worker"] = None
        for row, job in zip((*data["in_flight"], *data["failures"]), (*self.in_flight, *self.failures)):
            row["fraction"] = job.fraction
        return data


@dataclass(frozen=True)
class JobDetail:
    """One job and its step timeline, as `mcp-jobs jobs JOB_ID` and the page's job panel show it."""

    now: float
    job: JobRow
    started_at: float | None
    """When its latest run started (a retried job's latest attempt); None before it started."""
    ended_at: float | None
    """When it ended (its last write); None while it is queued, running or waiting for an answer."""
    run_time: float | None
    """Seconds its latest run took (so far, while in flight); None before it started."""
    trace_id: str | None
    """The trace of the call that queued it (when tracing was on)."""
    steps: list[Step]
    """The steps kept (the last `STEP_HISTORY`), oldest first, with durations and the slowest marked."""
    steps_total: int
    """How many steps its runs began in all: more than `len(steps)` when the list was trimmed."""

    @property
    def first_number(self) -> int:
        """The number (from 1) of the first step kept: a trimmed list has lost the earliest."""
        return self.steps_total - len(self.steps) + 1

    @property
    def trimmed(self) -> bool:
        """Whether earlier steps are no longer kept."""
        return self.steps_total > len(self.steps)

    def as_json(self, *, hosts: bool = True, trace_url: str | None = None) -> dict[str, Any]:
        """A JSON-ready dict (`--json-output`, the page's `job/<id>` route). Without `hosts` the job
        does not name its worker; with `trace_url` (a template with `{trace_id}`) the trace is linked.
        Each step also has its `number` and its `offset`, seconds since the first step kept."""
        row = asdict(self.job) | {"fraction": self.job.fraction}
        if not hosts:
            row["worker"] = None
        first = self.steps[0].at if self.steps else 0.0
        return {
            "now": self.now,
            "job": row,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "queue_wait": self.job.queue_wait,
            "run_time": self.run_time,
            "trace_id": self.trace_id,
            "trace_link": trace_link(trace_url, self.trace_id),
            "steps": [
                step.as_json() | {"number": self.first_number + index, "offset": step.at - first}
                for index, step in enumerate(self.steps)
            ],
            "steps_shown": len(self.steps),
            "steps_total": self.steps_total,
        }


def trace_link(trace_url: str | None, trace: str | None) -> str | None:
    """Where the trace `trace` is shown: `trace_url` with the id written in (None without either).
    Replaced, not `str.format`ted: the URL may hold other braces."""
    if trace_url is None or trace is None:
        return None
    return trace_url.replace("{trace_id}", trace)


async def read_job(
    client: aioredis.Redis, keys: Keys, job_id: str, now: float, caller: str | None = None
) -> JobDetail | None:
    """One job and its timeline, read in one round trip (a MULTI, so the snapshot and the step list
    agree); None when it is unknown, expired or malformed, or is not `caller`'s (None: anyone's):
    another caller's job is as unknown as one that never was. `ValueError` if `job_id` is not a
    job id, checked before any key is built (no made-up id names another key)."""
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    pipe = client.pipeline(transaction=True)
    pipe.hmget(keys.job(job_id), list(DETAIL_FIELDS))
    pipe.exists(keys.alive(job_id))
    pipe.lrange(keys.steps(job_id), 0, -1)
    values, alive, entries = await pipe.execute()
    fields = {name: as_text(value) for name, value in zip(DETAIL_FIELDS, values) if value is not None}
    if "state" not in fields or (caller is not None and fields.get("caller", "") != caller):
        return None
    return detail_of(job_id, fields, bool(alive), entries, now)


def detail_of(
    job_id: str, fields: dict[str, str], alive: bool, entries: Sequence[bytes | str], now: float
) -> JobDetail | None:
    """The detail of a job from its snapshot `fields`, whether it beats (`alive`) and its stored
    step list; None when the snapshot is malformed."""
    row = _row(job_id, fields, alive, now)
    if row is None:
        return None
    ended = row.updated_at if JobState(row.state).terminal else None
    started = stamp(fields.get("started_at"))
    steps = timeline(parse_entries(entries), ended, now)
    try:
        counted = int(fields.get("steps") or 0)
    except ValueError:
        counted = 0
    return JobDetail(
        now=now,
        job=row,
        started_at=started,
        ended_at=ended,
        run_time=None if started is None else max((now if ended is None else ended) - started, 0.0),
        trace_id=trace_id(fields.get(TRACE_FIELD)),
        steps=steps,
        steps_total=max(counted, len(steps)),
    )


async def list_jobs(
    client: aioredis.Redis,
    keys: Keys,
    caller: str | None,
    now: float,
    recent_failures_for: float = 3600,
    *,
    queues: Iterable[str] = (),
    queue_depths: bool = True,
    limit: int = DEFAULT_LIMIT,
    max_keys: int = DEFAULT_MAX_KEYS,
) -> JobsView:
    """Jobs in flight and recent failures of `caller` (None: of everyone), with queue depths and
    live workers. `queues` are listed besides those live workers serve and Celery's default one;
    `queue_depths=False` when the broker is not this Redis (depths are then unknown)."""
    scan = await scan_jobs(client, keys, now, queues=queues, queue_depths=queue_depths, max_keys=max_keys)
    return select(scan, caller, recent_failures_for, limit)


async def scan_jobs(
    client: aioredis.Redis,
    keys: Keys,
    now: float,
    *,
    queues: Iterable[str] = (),
    queue_depths: bool = True,
    max_keys: int = DEFAULT_MAX_KEYS,
) -> JobsScan:
    """Read every job snapshot of the namespace (up to `max_keys`), the workers and the queues."""
    ids, complete = await job_ids(client, keys, max_keys)
    jobs: list[JobRow] = []
    ended: list[tuple[str, str, float | None]] = []
    read = client.register_script(READ_SCRIPT)
    for start in range(0, len(ids), READ_BATCH):
        batch = ids[start : start + READ_BATCH]
        for job_id, reply in zip(batch, await _read_batch(client, read, [keys.job(job_id) for job_id in batch])):
            if not reply:  # expired since the SCAN
                continue
            if len(reply) == len(COUNTED_ONLY):
                state, caller, updated = (as_text(value) if value is not None else None for value in reply)
                ended.append((caller or "", str(state), stamp(updated)))
                continue
            fields = {name: as_text(value) for name, value in zip(FIELDS, reply) if value is not None}
            row = _row(job_id, fields, bool(reply[-1]), now)
            if row is not None:
                jobs.append(row)
    workers = await _workers(client, keys)
    return JobsScan(
        now=now,
        jobs=jobs,
        ended=ended,
        workers=workers,
        queues=await _queues(client, workers, queues, queue_depths),
        scanned=len(ids),
        complete=complete,
    )


async def _read_batch(client: aioredis.Redis, read: Any, job_keys: list[str]) -> list[Any]:
    """`READ_SCRIPT`'s replies for `job_keys`, in their order: one call, or on a cluster one per
    slot, all at once (a script reaches its own slot only)."""
    if not is_cluster(client):
        return list(await read(keys=job_keys, args=[]))
    slots: dict[int, list[int]] = {}
    for index, key in enumerate(job_keys):
        slots.setdefault(key_slot(key.encode()), []).append(index)
    groups = list(slots.values())
    replies: list[Any] = []
    for start in range(0, len(groups), CLUSTER_READS_AT_ONCE):  # a cluster pool refuses, not waits, past its bound
        chunk = groups[start : start + CLUSTER_READS_AT_ONCE]
        replies += await asyncio.gather(*(read(keys=[job_keys[i] for i in group], args=[]) for group in chunk))
    ordered: list[Any] = [None] * len(job_keys)
    for group, reply in zip(groups, replies):
        for index, row in zip(group, reply):
            ordered[index] = row
    return ordered


def select(
    scan: JobsScan, caller: str | None, recent_failures_for: float = 3600, limit: int = DEFAULT_LIMIT
) -> JobsView:
    """The view of `caller` (None: everyone) of a scan: at most `limit` jobs in each list."""
    since = scan.now - recent_failures_for
    mine = [job for job in scan.jobs if caller is None or job.caller == caller]
    in_flight = sorted(
        (job for job in mine if job.state != JobState.FAILED.value),
        key=lambda job: (job.created_at or math.inf, job.job_id),
    )
    failures = sorted(
        (job for job in mine if job.state == JobState.FAILED.value and (job.updated_at or 0) >= since),
        key=lambda job: (-(job.updated_at or 0), job.job_id),
    )
    counts = {state.value: 0 for state in JobState}
    for job in in_flight:
        counts[job.state] += 1
    counts[JobState.FAILED.value] = len(failures)
    for who, state, updated in scan.ended:
        if (caller is None or who == caller) and (updated or 0) >= since:
            counts[state] = counts.get(state, 0) + 1
    return JobsView(
        now=scan.now,
        caller=caller,
        in_flight=in_flight[:limit],
        in_flight_total=len(in_flight),
        failures=failures[:limit],
        failures_total=len(failures),
        recent_failures_for=recent_failures_for,
        counts=counts,
        queues=scan.queues,
        workers=scan.workers,
        limit=limit,
        scanned=scan.scanned,
        complete=scan.complete,
    )


def without_clock(data: dict[str, Any]) -> dict[str, Any]:
    """A view's JSON without what changes with the clock alone (`now`, ages, waits so far): equal
    for two views that show the same jobs in the same state."""
    clean = {key: value for key, value in data.items() if key != "now"}
    for name in ("in_flight", "failures"):
        if isinstance(clean.get(name), list):
            clean[name] = [{k: v for k, v in row.items() if k not in ("age", "queue_wait")} for row in clean[name]]
    return clean


def scan_pattern(keys: Keys, kind: str = "job") -> str:
    """The SCAN `MATCH` pattern of the namespace's `job` (or `worker`) keys, with any glob
    characters of the namespace escaped."""
    namespace = "".join("\\" + char if char in "*?[]\\" else char for char in keys.namespace)
    return f"{namespace}:{kind}:*"


async def job_ids(client: aioredis.Redis, keys: Keys, max_keys: int) -> tuple[list[str], bool]:
    """The ids of the namespace's job snapshots (at most `max_keys`; False: the scan stopped there)."""
    seen: set[str] = set()  # SCAN may return a key more than once
    async for key in client.scan_iter(match=scan_pattern(keys), count=SCAN_BATCH):
        job_id = keys.job_id_of(as_text(key))
        if job_id is None:  # `<id>}:alive`, or not a job of ours
            continue
        if job_id not in seen and len(seen) >= max_keys:
            return sorted(seen), False
        seen.add(job_id)
    return sorted(seen), True


def _row(job_id: str, fields: dict[str, str], alive: bool, now: float) -> JobRow | None:
    try:
        event = JobEvent.from_snapshot(fields)
    except ValueError as exc:
        logger.warning("job %s: skipping a malformed snapshot (%s)", job_id, exc)
        return None
    if event is None:  # expired between SCAN and HMGET
        return None
    created = stamp(fields.get("created_at"))
    started = stamp(fields.get("started_at"))
    if event.state is JobState.QUEUED:
        queue_wait = None if created is None else max(now - created, 0.0)
    elif started is not None and created is not None:
        queue_wait = max(started - created, 0.0)
    else:
        queue_wait = None
    return JobRow(
        job_id=job_id,
        tool=fields.get("job", ""),
        caller=fields.get("caller", ""),
        state=event.state.value,
        progress=event.progress,
        total=event.total,
        status=_cut(status_line(event)) or "",
        message=_cut(event.message),
        created_at=created,
        updated_at=event.at,
        age=None if created is None else max(now - created, 0.0),
        queue_wait=queue_wait,
        attempt=event.attempt,
        task=fields.get("task") == "1",
        worker=fields.get("worker") or None,
        heartbeat=alive if event.state.on_worker else None,
        error=_cut(event.error) if event.state is JobState.FAILED else None,
        error_type=event.error_type if event.state is JobState.FAILED else None,
        last_log=_log_text(fields.get("log")),
    )


def _log_text(raw: str | None) -> str | None:
    """A snapshot's last log line as "level: text", or None (absent, or not what a worker writes)."""
    if not raw:
        return None
    try:
        line = strict_json(raw)
        level, data = line["level"], line["data"]
    except (ValueError, KeyError, TypeError):
        return None
    return _cut(f"{level}: {data if isinstance(data, str) else json.dumps(data)}")


async def queue_rows(client: aioredis.Redis, keys: Keys, queues: Iterable[str], depths: bool) -> list[QueueRow]:
    """Each queue (those given, the default one, and any a live worker consumes) with its depth
    (when `depths`: the broker is this Redis) and its live workers, from their presence records."""
    return await _queues(client, await _workers(client, keys), queues, depths)


async def _workers(client: aioredis.Redis, keys: Keys) -> list[WorkerRow]:
    prefix = keys.worker("")
    names = [as_text(name) async for name in client.scan_iter(match=scan_pattern(keys, "worker"), count=SCAN_BATCH)]
    names = sorted(set(names))
    # On a cluster the records lie on many slots: redis-py's `mget_nonatomic` reads each node's.
    read = client.mget_nonatomic if is_cluster(client) else client.mget  # type: ignore[attr-defined]
    records = await read(names) if names else []
    workers = []
    for name, record in zip(names, records):
        if record is None:  # withdrawn since the scan
            continue
        queues: list[str] = []
        pid: int | None = None
        try:
            data = json.loads(record)
            if isinstance(data, dict):
                raw_queues = data.get("queues", [])
                queues = sorted(str(queue) for queue in raw_queues) if isinstance(raw_queues, list) else []
                pid = data["pid"] if isinstance(data.get("pid"), int) else None
        except ValueError:
            pass
        workers.append(WorkerRow(hostname=name.removeprefix(prefix), queues=queues, pid=pid))
    return workers


async def _queues(
    client: aioredis.Redis, workers: Sequence[WorkerRow], queues: Iterable[str], depths: bool
) -> list[QueueRow]:
    served: dict[str, int] = {}
    for worker in workers:
        for queue in worker.queues:
            served[queue] = served.get(queue, 0) + 1
    names = sorted({DEFAULT_QUEUE, *queues, *served})
    lengths: list[int | None] = [None] * len(names)
    if depths:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        # A key of another type (not a Redis broker's queue) answers an error: depth unknown.
        lengths = [reply if isinstance(reply, int) else None for reply in await pipe.execute(raise_on_error=False)]
    return [QueueRow(name=name, depth=depth, workers=served.get(name, 0)) for name, depth in zip(names, lengths)]


def stamp(value: str | None) -> float | None:
    """A snapshot's Unix time field as a number (None: absent, or not a finite number)."""
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 1] + "…"
