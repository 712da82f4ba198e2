"""The server's access to job snapshots: the same atomic script the workers use, over asyncio."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, cast

import anyio
import redis.asyncio as aioredis

from mcp_jobs import tracing
from mcp_jobs._events import JobEvent, JobState, Keys, as_text, decoded
from mcp_jobs._store import WRITE_SCRIPT, WriteOutcome, job_script, script_args
from mcp_jobs.asking import ANSWER_SCRIPT, answer_args, answer_keys, pending_after
from mcp_jobs.redis_connect import REDIS_ERRORS, is_cluster
from mcp_jobs.server.admission import CallerJobs
from mcp_jobs.server.enqueue import QueueMessage

logger = logging.getLogger(__name__)

LOST_SINCE_FIELD = "lost_since"
"""The snapshot field where task reads keep when a job's worker was first seen missing."""

FLAG_CANCEL_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'cancel', '1') end
return 0
"""

WORKER_MISSING_SCRIPT = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return ARGV[2] end
local mark = redis.call('HGET', KEYS[1], '{LOST_SINCE_FIELD}')
if mark then
  local attempt, since = string.match(mark, '^([^:]*):(.*)$')
  if attempt == ARGV[1] then return since end
end
redis.call('HSET', KEYS[1], '{LOST_SINCE_FIELD}', ARGV[1] .. ':' .. ARGV[2])
return ARGV[2]
"""
"""KEYS[1] a job's snapshot, ARGV the attempt and now: when that attempt's worker was first missed
(this read, unless an earlier one recorded it). One script, so two replicas reading at once agree,
and a snapshot that expired meanwhile is not brought back as a stray hash without a TTL."""


TASK_INDEX_SLACK = 7 * 24 * 3600
"""Seconds past the result TTL that a task stays in its caller's index: longer than any job runs
(an entry whose record is gone is dropped by the listing that meets it)."""


class AsyncJobStore:
    """Reads and writes job snapshots from the event loop."""

    def __init__(self, client: aioredis.Redis, keys: Keys, ttl: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl = ttl
        self._write = job_script(client, WRITE_SCRIPT)
        self._flag = client.register_script(FLAG_CANCEL_SCRIPT)
        self._missing = client.register_script(WORKER_MISSING_SCRIPT)
        self._answer = job_script(client, ANSWER_SCRIPT)
        self._callers = CallerJobs(client, keys, ttl) if is_cluster(client) else None
        """On a cluster, admission is a step of its own (`admission.py`); else the write script's."""

    async def write(
        self,
        job_id: str,
        state: JobState,
        *,
        enqueue: QueueMessage | None = None,
        admit: tuple[str, int] | None = None,
        **options: Any,
    ) -> WriteOutcome:
        """Write a snapshot and publish its event (refused if the job ended, or is not in `expect`);
        with `enqueue`, also push the job's broker message, in the same script. With `admit`
        (a caller and the most live jobs it may have), the write that creates a job first counts
        the caller's jobs, and creates nothing at the limit (`seq` -1)."""
        job = self._keys.job(job_id)
        keys = [job, self._keys.alive(job_id), job]  # the third: a queue, or unused
        if enqueue is not None:
            keys[2] = enqueue.key
            options["queue_message"] = enqueue.payload
        if admit is not None and self._callers is not None:
            return await self._write_admitted(job_id, state, admit, keys, options)
        if admit is not None:
            caller, options["admit"] = admit
            keys.append(self._keys.caller_jobs(caller))
        args = script_args(self._ttl, state, **options)
        return WriteOutcome.parse(await self._write(keys=keys, args=args))

    async def _write_admitted(
        self, job_id: str, state: JobState, admit: tuple[str, int], keys: list[str], options: dict[str, Any]
    ) -> WriteOutcome:
        """On a cluster: the job's first write, then its admission on the caller's key (see
        `admission.py`); at the limit nothing stays of the job (`seq` -1)."""
        assert self._callers is not None
        written = WriteOutcome.parse(await self._write(keys=keys, args=script_args(self._ttl, state, **options)))
        if not written.written:
            return written
        admitted, live = False, None
        try:
            live = await self._callers.admit(*admit, job_id)
            admitted = live is None
        finally:
            if not admitted:  # refused, or admission failed: never queued, nothing stays of it
                with anyio.CancelScope(shield=True), suppress(*REDIS_ERRORS, OSError):
                    await self._client.delete(self._keys.job(job_id))
        return written if live is None else WriteOutcome(seq=-1, cancel_requested=False, caller_jobs=live)

    async def answer(
        self, job_id: str, round_number: int, answers: Mapping[str, Any], **context: str
    ) -> list[str] | None:
        """Deliver answers to a job waiting on `round_number` (see `asking.ANSWER_SCRIPT`): None if
        it is not waiting on that round, else the keys still pending (empty: the job was woken).
        `context`: the answering request's `can_ask`."""
        args = answer_args(self._ttl, round_number, answers, **context)
        return pending_after(await self._answer(keys=answer_keys(self._keys, job_id), args=args))

    async def read(self, job_id: str) -> tuple[JobEvent | None, bool]:
        """The job's snapshot (None: unknown or gone) and whether its worker beat recently."""
        fields, alive = await self.read_record(job_id)
        try:
            return JobEvent.from_snapshot(fields), alive
        except ValueError as exc:
            # Only a writer other than our workers can put this there; treat the job as unreadable.
            logger.warning("job %s: ignoring a malformed snapshot (%s)", job_id, exc)
            return None, alive

    async def job_name(self, job_id: str) -> str | None:
        name = await self._client.hget(self._keys.job(job_id), "job")
        return name.decode() if isinstance(name, bytes) else name

    async def flag_cancel(self, job_id: str) -> None:
        """Set the job's cancel flag, if the job exists (never a stray hash without a TTL)."""
        await self._flag(keys=[self._keys.job(job_id)], args=[])

    async def queue_depth(self, queue: str) -> int:
        """Jobs waiting in a Celery queue on a Redis broker that shares this Redis: its messages,
        less the fan-out parts among them (the work of jobs already admitted, see `fanout.py`)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.llen(queue)
        pipe.get(self._keys.queued_parts(queue))
        messages, parts = await pipe.execute()
        return max(0, int(messages) - max(0, int(parts or 0)))

    async def worker_missing_since(self, job_id: str, attempt: int, now: float) -> float:
        """When a read first found this attempt of the job without its liveness key: kept in the
        snapshot (field `lost_since`, "<attempt>:<time>") so that any replica's next read of a task
        goes on from the same moment. The first caller sets it (a re-run's attempt replaces it)."""
        since = await self._missing(keys=[self._keys.job(job_id)], args=[attempt, repr(now)])
        return float(as_text(since))

    async def worker_seen(self, job_id: str) -> None:
        """The job's worker beats (again): a later loss of it starts a grace of its own."""
        await self._client.hdel(self._keys.job(job_id), LOST_SINCE_FIELD)

    async def index_task(self, caller: str, task_id: str, created: float) -> None:
        """List a task for its caller (`tasks/list`), forgetting entries older than any record lives."""
        key = self._keys.caller_tasks(caller)
        pipe = self._client.pipeline(transaction=False)
        pipe.zadd(key, {task_id: created})
        pipe.zremrangebyscore(key, "-inf", created - self._ttl - TASK_INDEX_SLACK)
        pipe.expire(key, self._ttl + TASK_INDEX_SLACK)
        await pipe.execute()

    async def listed_tasks(self, caller: str, after: tuple[float, str] | None, count: int) -> list[tuple[str, float]]:
        """Up to `count` of the caller's listed tasks created after `after` (a creation time and a
        task id: the last one seen), oldest first, as (task id, creation time)."""
        low = "-inf" if after is None else repr(after[0])
        seen: list[tuple[str, float]] = []
        offset = 0
        while len(seen) < count:
            batch = await self._client.zrangebyscore(
                self._keys.caller_tasks(caller), low, "+inf", start=offset, num=count, withscores=True
            )
            if not batch:
                break
            offset += len(batch)
            for member, score in cast("list[tuple[bytes | str, float]]", batch):
                task_id = as_text(member)
                if after is None or (score, task_id) > (after[0], after[1]):  # ties go by id, as Redis orders them
                    seen.append((task_id, float(score)))
        return seen[:count]

    async def unlist_task(self, caller: str, task_id: str) -> None:
        await self._client.zrem(self._keys.caller_tasks(caller), task_id)

    async def read_record(self, job_id: str) -> tuple[dict[str, str], bool]:
        """The job's raw snapshot fields (empty: unknown or expired) and whether its worker beat
        recently."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self._keys.job(job_id))
        pipe.exists(self._keys.alive(job_id))
        raw, alive = await pipe.execute()
        fields = decoded(raw)
        # Every request that reads a job (tasks/*, the handoff tools, a re-issued call answering
        # a question, resources) comes here: its span links to the job's trace.
        tracing.link_job(job_id, fields.get(tracing.TRACE_FIELD))
        return fields, bool(alive)
