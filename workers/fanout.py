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

Redis (under the namespace): `<ns>:job:<id>:parts` (hash: `claim:<i>` JSON {by, at}, `done:<i>`
JSON {ok} or {error}, `cancel`), `<ns>:job:<id>:parts:done` (list of finished indices),
`<ns>:job:<id>:part:<i>:alive` (liveness while a worker runs part i). All expire with the job.

A part function is a plain module-level function of one argument (the item, as JSON carries it)
in one of the job modules; it returns a JSON-able value. Cancelling the call cancels every part
not yet started; a part already running finishes its item (keep parts short).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from mcp_jobs._events import Keys
from mcp_jobs.errors import JobCancelled, JobError

if TYPE_CHECKING:
    from mcp_jobs._runner import Heartbeats
    from mcp_jobs._store import JobStore
    from mcp_jobs.progress import Progress

logger = logging.getLogger(__name__)

PART_TASK = "mcp_jobs.part"
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


def part_ref(fn: Callable[[Any], Any]) -> str:
    """The importable name of a part function (`module:qualname`)."""
    if "<locals>" in fn.__qualname__ or "<lambda>" in fn.__qualname__:
        raise ValueError(f"a part must be a module-level function, not {fn.__qualname__}")
    return f"{fn.__module__}:{fn.__qualname__}"


def resolve(ref: str, modules: Sequence[str]) -> Callable[[Any], Any]:
    """The part function named by `ref`, if it lives in one of the job `modules`."""
    module, _, qualname = ref.partition(":")
    if not any(module == m or module.startswith(m + ".") for m in modules):
        raise JobError(f"part function {ref} is not in the job modules")
    target: Any = importlib.import_module(module)
    for name in qualname.split("."):
        target = getattr(target, name)
    if not callable(target):
        raise JobError(f"part function {ref} is not callable")
    return target  # type: ignore[no-any-return]


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
) -> list[Any]:
    """Fan `items` out as parts of the job behind `progress`; return the results in order."""
    ref, n, job_id = part_ref(fn), len(items), progress.job_id
    keys, client = context.keys, context.store.client
    parts_key, done_key = keys.parts(job_id), keys.parts_done(job_id)
    items = [to_jsonable_python(item) for item in items]
    me = _worker_tag()
    known = {k: v for k, v in _decoded(client.hgetall(parts_key)).items()}
    outcomes: dict[int, dict[str, Any]] = {
        int(k.removeprefix("done:")): json.loads(v) for k, v in known.items() if k.startswith("done:")
    }
    client.hdel(parts_key, "cancel")
    for index in range(n):
        if index not in outcomes:
            context.send((job_id, index, ref, items[index]))
    client.expire(parts_key, context.ttl)
    base = progress.value
    progress.report(base + len(outcomes), f"{n} parts queued", total=base + n)
    results: dict[int, Any] = {}
    try:
        for index in sorted(outcomes):
            results[index] = _settle(index, items[index], outcomes[index], fail_fast, describe)
        while len(results) < n:
            finished = _take_finished(
                client, done_key, parts_key, results, block=not _run_one_here(context, job_id, fn, items, results, me)
            )
            for index, outcome in finished:
                results[index] = _settle(index, items[index], outcome, fail_fast, describe)
                progress.report(base + len(results), _done_message(index, n, items[index], outcome, describe))
            _reclaim_lost(context, job_id, fn, items, results, me)
    except BaseException:
        client.hset(parts_key, "cancel", "1")  # parts not yet started skip themselves
        raise
    return [results[index] for index in range(n)]


def run_part(context: PartsContext, job_id: str, index: int, ref: str, item: Any) -> None:
    """The `mcp_jobs.part` task: run part `index` of job `job_id` unless it was claimed or cancelled."""
    client, keys = context.store.client, context.keys
    parts_key = keys.parts(job_id)
    if client.hget(parts_key, "cancel") or context.store.cancel_requested(job_id):
        return
    if not client.hsetnx(parts_key, f"claim:{index}", _claim(_worker_tag())):
        return
    _execute(context, job_id, index, resolve(ref, context.modules), item)


def _run_one_here(
    context: PartsContext, job_id: str, fn: Callable[[Any], Any], items: Sequence[Any], results: dict[int, Any], me: str
) -> bool:
    """Claim the next part nobody has started and run it in the parent; False when none is left."""
    client, parts_key = context.store.client, context.keys.parts(job_id)
    for index in range(len(items)):
        if index not in results and client.hsetnx(parts_key, f"claim:{index}", _claim(me)):
            _execute(context, job_id, index, fn, items[index])
            return True
    return False


def _reclaim_lost(
    context: PartsContext, job_id: str, fn: Callable[[Any], Any], items: Sequence[Any], results: dict[int, Any], me: str
) -> None:
    """Run again, here, the parts whose worker stopped beating before finishing them."""
    client, keys = context.store.client, context.keys
    claims = _decoded(client.hgetall(keys.parts(job_id)))
    now = time.time()
    for index in range(len(items)):
        raw = claims.get(f"claim:{index}")
        if index in results or raw is None or f"done:{index}" in claims:
            continue
        claim = json.loads(raw)
        if claim["by"] == me or now - claim["at"] < context.lost_after:
            continue
        if not client.exists(keys.alive(_part_id(job_id, index))):
            logger.warning("job %s: part %d lost its worker (%s); running it again", job_id, index, claim["by"])
            client.hset(keys.parts(job_id), f"claim:{index}", _claim(me))
            _execute(context, job_id, index, fn, items[index])


def _take_finished(
    client: Any, done_key: str, parts_key: str, results: dict[int, Any], block: bool
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The parts that finished since the last look (waiting up to `WAIT_STEP` for one if `block`)."""
    indices: list[bytes | str] = []
    if block:
        popped = client.blpop([done_key], timeout=WAIT_STEP)
        if popped:
            indices.append(popped[1])
    indices += client.lpop(done_key, 1000) or []
    wanted = sorted({int(i) for i in indices} - set(results))
    if not wanted:
        return iter(())
    values = client.hmget(parts_key, [f"done:{i}" for i in wanted])
    return iter([(i, json.loads(v)) for i, v in zip(wanted, values) if v is not None])


def _execute(context: PartsContext, job_id: str, index: int, fn: Callable[[Any], Any], item: Any) -> None:
    """Run one part and record its outcome (with the part's liveness kept while it runs)."""
    part_id = _part_id(job_id, index)
    context.heartbeats.add(part_id)
    try:
        outcome = _call(fn, item)
    finally:
        context.heartbeats.discard(part_id)
    keys = context.keys
    pipe = context.store.client.pipeline(transaction=True)
    pipe.hset(keys.parts(job_id), f"done:{index}", json.dumps(outcome, separators=(",", ":")))
    pipe.rpush(keys.parts_done(job_id), index)
    pipe.expire(keys.parts(job_id), context.ttl)
    pipe.expire(keys.parts_done(job_id), context.ttl)
    pipe.delete(keys.alive(part_id))
    pipe.execute()


def _call(fn: Callable[[Any], Any], item: Any) -> dict[str, Any]:
    try:
        value = to_jsonable_python(fn(item))
        json.dumps(value, allow_nan=False)
    except (JobCancelled, KeyboardInterrupt, SystemExit):
        raise
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


def _part_id(job_id: str, index: int) -> str:
    return f"{job_id}:part:{index}"


def _worker_tag() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _claim(tag: str) -> str:
    return json.dumps({"by": tag, "at": time.time()})


def _decoded(fields: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
