"""Fan-out: one job's work split into parts that run as separate Celery tasks on any worker, with
one aggregated progress for the caller (`Progress.map`).

The job (the *parent*) queues one `mcp_jobs.part` task per item, then works too: it claims parts
nobody has started and runs them itself, so a fan-out never waits for a free worker (no deadlock
when every worker slot holds a parent), and idle workers take the rest. Each part is claimed once
(`HSETNX`), records its outcome in the parent's parts hash and pushes its index on a list the
parent waits on; the parent reports "part 3/8 done: ..." as each finishes, so the caller sees one
strictly increasing progress. A part whose worker dies (its liveness key lapses) is claimed again
and run by the parent: parts run at least once, so a part must be safe to repeat. Done parts
survive a re-run of the parent (a retry-safe job whose worker died): only the rest run again.

Redis (under the namespace), for the `m`-th map of job `id` (a job may fan out more than once):
`<ns>:job:{<id>}:parts:<m>` (hash: `fn` the part function's `module:qualname`, `item:<i>` each
item as JSON, `claim:<i>` JSON {by, at}, `done:<i>` JSON {ok} or {error}, `cancel`),
`<ns>:job:{<id>}:parts:<m>:done` (list of finished indices), and
`<ns>:job:{<id>:part:<m>:<i>}:alive` (liveness while a worker runs part i, on a slot of its
own). All expire with the job.
`<ns>:queue:<queue>:parts` counts the parts queued on a queue and not yet taken, so the queue-depth
admission (`MCP_JOBS_MAX_QUEUED_JOBS`) counts jobs, not the parts of jobs already admitted.

A part's broker message names only the job, the map and the index: the function and the item
are read from the parts hash, which only the running job writes. So a message forged on the
broker can run nothing but a part a job fanned out (not any helper of a job module), and
`celery inspect` and Flower show no caller data for parts. A map has at most `MCP_JOBS_MAX_PARTS`
parts; they count against their job (and so its caller) alone.

A part function is a plain module-level function of one argument (the item, as JSON carries it)
in one of the job modules; it returns a JSON-able value. Cancelling the call cancels every part
not yet started; a part already running finishes its item (keep parts short).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from billiard.exceptions import SoftTimeLimitExceeded
from pydantic_core import to_jsonable_python

from mcp_jobs._events import TERMINAL_STATES, Keys, as_text
from mcp_jobs.errors import JobCancelled, JobEnded, JobError

if TYPE_CHECKING:
    from mcp_jobs._runner import Heartbeats
    from mcp_jobs._store import JobStore
    from mcp_jobs.progress import Progress

logger = logging.getLogger(__name__)

WAIT_STEP = 0.2
"""Seconds the parent waits for a part to finish before looking for lost parts again."""


@dataclass(frozen=True)
class PartFailed:
    """A part that failed, in the results of `Progress.map(..., fail_fast=False)`."""

    index: int
    item: Any
    error: str


@dataclass
class PartsContext:
    """What a worker needs to fan a job out: its Redis store, how to queue a part, its heartbeats."""

    store: JobStore
    keys: Keys
    send: Callable[[tuple[Any, ...]], object]
    """Queue one part task with these arguments (on the parent's queue)."""
    heartbeats: Heartbeats
    lost_after: float
    ttl: int
    modules: Sequence[str]
    """The job modules: only their functions may run as parts."""
    max_parts: int = 1000
    """Most parts one map may have (`MCP_JOBS_MAX_PARTS`)."""
    queue: str = "celery"
    """The queue the parts go on (the job's own), whose queued parts are counted."""


def part_ref(fn: Callable[[Any], Any]) -> str:
    """The importable name of a part function (`module:qualname`)."""
    if "<locals>" in fn.__qualname__ or "<lambda>" in fn.__qualname__:
        raise ValueError(f"a part must be a module-level function, not {fn.__qualname__}")
    return f"{fn.__module__}:{fn.__qualname__}"


def resolve(ref: str, modules: Sequence[str]) -> Callable[[Any], Any]:
    """The part function named by `ref`: a plain function defined (not imported) under that very
    name in one of the job `modules`. Anything else is refused, so a message on the broker can
    only run a part function, never some other callable reachable from a job module."""
    module, _, qualname = ref.partition(":")
    if not any(module == m or module.startswith(m + ".") for m in modules):
        raise JobError(f"part function {ref} is not in the job modules")
    target: Any = importlib.import_module(module)
    for name in qualname.split("."):
        target = getattr(target, name, None)
    if not inspect.isfunction(target) or target.__module__ != module or target.__qualname__ != qualname:
        raise JobError(f"{ref} is not a part function of {module}")
    return target


def run_inline(
    progress: Progress, fn: Callable[[Any], Any], items: Sequence[Any], fail_fast: bool, describe: Callable[[Any], str]
) -> list[Any]:
    """`map` without a worker (unit tests with `RecordingProgress`): the parts one after another,
    with the same progress and failure rules."""
    results: list[Any] = []
    base = progress.value
    progress.report(base, f"{len(items)} parts queued", total=base + len(items))
    for index, item in enumerate(items):
        outcome = _call(fn, item)
        results.append(_settle(index, item, outcome, fail_fast, describe))
        progress.report(base + index + 1, _done_message(index, len(items), item, outcome, describe))
    return results


def run_map(
    progress: Progress,
    context: PartsContext,
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    fail_fast: bool,
    describe: Callable[[Any], str],
    map_index: int = 0,
) -> list[Any]:
    """Fan `items` out as parts of the job behind `progress` (its `map_index`-th map, so that a
    job may fan out more than once); return the results in order."""
    if len(items) > context.max_parts:
        raise JobError(
            f"A map of {len(items)} parts is over the limit of {context.max_parts} (MCP_JOBS_MAX_PARTS): "
            "give each part more items"
        )
    fan = _Fan(context, progress.job_id, map_index, fn, [to_jsonable_python(item) for item in items])
    client, n = context.store.client, len(items)
    outcomes = fan.finished_earlier()  # a re-run of the job keeps what its parts already did
    fan.record(outcomes)
    for index in range(n):
        if index not in outcomes:
            context.send((progress.job_id, map_index, index))
    base = progress.value
    progress.report(base + len(outcomes), f"{n} parts queued", total=base + n)
    results: dict[int, Any] = {}
    try:
        for index in sorted(outcomes):
            results[index] = _settle(index, fan.items[index], outcomes[index], fail_fast, describe)
        while len(results) < n:
            ran_one = fan.run_one_here(results)
            for index, outcome in fan.take_finished(results, block=not ran_one):
                results[index] = _settle(index, fan.items[index], outcome, fail_fast, describe)
                progress.report(base + len(results), _done_message(index, n, fan.items[index], outcome, describe))
            fan.reclaim_lost(results)
    except BaseException:
        pipe = client.pipeline(transaction=False)
        pipe.hset(fan.parts_key, "cancel", "1")  # parts not yet started skip themselves
        pipe.expire(fan.parts_key, context.ttl)
        pipe.execute()
        raise
    return [results[index] for index in range(n)]


def run_part(context: PartsContext, job_id: str, map_index: int, index: int) -> None:
    """The `mcp_jobs.part` task: run a part unless it was claimed, cancelled or its job has ended.

    The function and the item come from the parts hash the job wrote: a part nobody fanned out
    (a forged or stale message) is refused."""
    client, keys = context.store.client, context.keys
    parts_key = keys.parts(job_id, map_index)
    pipe = client.pipeline(transaction=False)
    pipe.decr(keys.queued_parts(context.queue))  # taken off the queue, whatever happens next
    pipe.hmget(parts_key, ["fn", f"item:{index}", "cancel"])
    _, (ref, raw_item, cancel) = pipe.execute()
    if ref is None or raw_item is None:
        logger.error("refused part %d of map %d of job %s: no such part was fanned out", index, map_index, job_id)
        return
    if cancel or context.store.cancel_requested(job_id):
        return
    state = client.hget(keys.job(job_id), "state")
    if state is not None and as_text(state) in TERMINAL_STATES:
        return  # the job ended (lost, timed out): nobody waits for this part
    if not client.hsetnx(parts_key, f"claim:{index}", _claim(_worker_tag())):
        return
    _execute(context, job_id, map_index, index, resolve(as_text(ref), context.modules), json.loads(raw_item))


class _Fan:
    """One `map` of one job, as its parent sees it."""

    def __init__(
        self, context: PartsContext, job_id: str, map_index: int, fn: Callable[[Any], Any], items: list[Any]
    ) -> None:
        self.context, self.job_id, self.map_index, self.fn, self.items = context, job_id, map_index, fn, items
        self.ref = part_ref(fn)
        self.parts_key = context.keys.parts(job_id, map_index)
        self.done_key = context.keys.parts_done(job_id, map_index)
        self.me = f"{_worker_tag()}:{uuid.uuid4().hex[:8]}"  # this run's own claims (a re-run has another)
        self._cursor = 0
        """Parts below it are claimed, by someone: never tried again (no quadratic claiming)."""
        self._next_lost_check = time.monotonic() + context.lost_after / 2

    def record(self, outcomes: dict[int, dict[str, Any]]) -> None:
        """Write what the parts to be queued need (the function, each item) before queueing them,
        and count them as queued on the job's queue; one round trip (not a MULTI: the counter of
        the queue lives on another slot of a cluster, and no part is queued before this returns)."""
        keys = self.context.keys
        fields: dict[Any, Any] = {"fn": self.ref}
        fields |= {f"item:{i}": json.dumps(item, separators=(",", ":")) for i, item in enumerate(self.items)}
        pipe = self.context.store.client.pipeline(transaction=False)
        pipe.hdel(self.parts_key, "cancel")
        pipe.hset(self.parts_key, mapping=fields)
        pipe.expire(self.parts_key, self.context.ttl)
        pipe.incrby(keys.queued_parts(self.context.queue), len(self.items) - len(outcomes))
        pipe.expire(keys.queued_parts(self.context.queue), self.context.ttl)
        pipe.execute()

    def finished_earlier(self) -> dict[int, dict[str, Any]]:
        client = self.context.store.client
        fields = client.hmget(self.parts_key, [f"done:{i}" for i in range(len(self.items))])
        return {i: json.loads(v) for i, v in enumerate(fields) if v is not None}

    def run_one_here(self, results: dict[int, Any]) -> bool:
        """Claim the next part nobody has started and run it here; False when none is left."""
        client = self.context.store.client
        while self._cursor < len(self.items):
            index = self._cursor
            self._cursor += 1
            if index not in results and client.hsetnx(self.parts_key, f"claim:{index}", _claim(self.me)):
                _execute(self.context, self.job_id, self.map_index, index, self.fn, self.items[index])
                return True
        return False

    def take_finished(self, results: dict[int, Any], block: bool) -> list[tuple[int, dict[str, Any]]]:
        """The parts that finished since the last look (waiting up to `WAIT_STEP` for one if `block`)."""
        client = self.context.store.client
        indices: list[bytes | str] = []
        if block:
            popped = client.blpop([self.done_key], timeout=WAIT_STEP)
            if popped:
                indices.append(popped[1])
        more = client.lpop(self.done_key, 1000)
        if isinstance(more, list):
            indices += more
        wanted = sorted({int(i) for i in indices} - set(results))
        if not wanted:
            return []
        values = client.hmget(self.parts_key, [f"done:{i}" for i in wanted])
        return [(i, json.loads(v)) for i, v in zip(wanted, values) if v is not None]

    def reclaim_lost(self, results: dict[int, Any]) -> None:
        """Every so often, run here again the parts whose worker stopped beating before finishing."""
        if time.monotonic() < self._next_lost_check:
            return
        self._next_lost_check = time.monotonic() + self.context.lost_after / 2
        client, keys = self.context.store.client, self.context.keys
        pending = [i for i in range(self._cursor) if i not in results]
        if not pending:
            return
        claims = client.hmget(self.parts_key, [f"claim:{i}" for i in pending])
        now = time.time()
        for index, raw in zip(pending, claims):
            if raw is None:
                continue
            claim = json.loads(raw)
            if claim["by"] == self.me or now - claim["at"] < self.context.lost_after:
                continue
            if not client.exists(keys.alive(_part_id(self.job_id, self.map_index, index))):
                logger.warning(
                    "job %s: part %d lost its worker (%s); running it again", self.job_id, index, claim["by"]
                )
                client.hset(self.parts_key, f"claim:{index}", _claim(self.me))
                _execute(self.context, self.job_id, self.map_index, index, self.fn, self.items[index])


def _execute(
    context: PartsContext, job_id: str, map_index: int, index: int, fn: Callable[[Any], Any], item: Any
) -> None:
    """Run one part and record its outcome (with the part's liveness kept while it runs)."""
    part_id = _part_id(job_id, map_index, index)
    context.heartbeats.add(part_id)
    try:
        outcome = _call(fn, item)
    finally:
        context.heartbeats.discard(part_id)
    keys = context.keys
    # In this order on the job's slot (one node, one connection): the outcome is stored before
    # its index wakes the job. Not a MULTI: the part's liveness key lives on a slot of its own.
    pipe = context.store.client.pipeline(transaction=False)
    pipe.hset(keys.parts(job_id, map_index), f"done:{index}", json.dumps(outcome, separators=(",", ":")))
    pipe.rpush(keys.parts_done(job_id, map_index), index)
    pipe.expire(keys.parts(job_id, map_index), context.ttl)
    pipe.expire(keys.parts_done(job_id, map_index), context.ttl)
    pipe.delete(keys.alive(part_id))
    pipe.execute()


def _call(fn: Callable[[Any], Any], item: Any) -> dict[str, Any]:
    try:
        value = to_jsonable_python(fn(item))
        json.dumps(value, allow_nan=False)
    except (JobCancelled, JobEnded, SoftTimeLimitExceeded, KeyboardInterrupt, SystemExit):
        raise  # the job's own cancellation or time limit, not the part's failure
    except JobError as exc:
        return {"error": str(exc) or type(exc).__name__}
    except Exception as exc:
        logger.exception("part %s failed", getattr(fn, "__qualname__", fn))
        return {"error": f"unexpected {type(exc).__name__} (details in the worker log)"}
    return {"ok": value}


def _settle(index: int, item: Any, outcome: dict[str, Any], fail_fast: bool, describe: Callable[[Any], str]) -> Any:
    if "error" not in outcome:
        return outcome.get("ok")
    if fail_fast:
        raise JobError(f"Part {index + 1} ({describe(item)}) failed: {outcome['error']}")
    return PartFailed(index, item, str(outcome["error"]))


def _done_message(index: int, n: int, item: Any, outcome: dict[str, Any], describe: Callable[[Any], str]) -> str:
    verb = "failed" if "error" in outcome else "done"
    return f"part {index + 1}/{n} {verb}: {describe(item)}"[:200]


def _part_id(job_id: str, map_index: int, index: int) -> str:
    return f"{job_id}:part:{map_index}:{index}"


def _worker_tag() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _claim(tag: str) -> str:
    return json.dumps({"by": tag, "at": time.time()})
