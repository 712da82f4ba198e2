"""Dispatch: one `tools/call` in, one Celery job out, its events back, its result out.

`Dispatcher.run` is the whole life of a call, top to bottom:

1. mint the job id (uuid4, also the Celery task id) and subscribe to the job's channel;
2. write the job's first snapshot (`queued`) and enqueue the Celery task (off the event loop);
3. follow the job: forward its progress through the call's `ProgressGate`, re-read the snapshot
   after a sequence gap, a reconnect, or `snapshot_poll_interval` seconds of silence;
4. on the terminal state, flush the latest progress and return the result, or raise `ToolError`.

If the call is cancelled (client cancel, or a closed HTTP stream on 2026-07-28), the job is
cancelled too: the cancellation flag is set for the job's `Progress` reporter and the Celery task
is revoked, in a shielded scope, and the cancellation is re-raised.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import redis.asyncio as aioredis
from celery import Celery
from mcp.server.mcpserver.exceptions import ToolError
from redis.exceptions import RedisError

from server.gate import ProgressGate, ProgressUpdate
from server.listener import RESYNC, JobListener, JobWatch
from workers.celery_app import task_name
from workers.events import JobEvent, JobState, Keys
from workers.registry import JobSpec
from workers.settings import Settings
from workers.store import WRITE_SCRIPT, WriteOutcome, encode_write

logger = logging.getLogger(__name__)

SendProgress = Callable[[ProgressUpdate], Awaitable[None]]


class Dispatcher:
    """Runs jobs for tool calls; one per server process, shared by all calls."""

    def __init__(self, settings: Settings, client: aioredis.Redis, listener: JobListener, celery: Celery) -> None:
        self._settings = settings
        self._client = client
        self._listener = listener
        self._celery = celery
        self._keys = Keys(settings.namespace)
        self._write = client.register_script(WRITE_SCRIPT)
        # apply_async and revoke block on the broker: they run on threads, at most this many at once.
        self._broker_threads = anyio.CapacityLimiter(16)

    async def run(self, spec: JobSpec, arguments: dict[str, Any], send: SendProgress | None) -> tuple[str, Any]:
        """Run `spec` with validated `arguments`; return the job id and its JSON result.

        `send` receives the gated progress (None: the caller asked for no progress).
        Raises `ToolError` when the job failed or was cancelled.
        """
        job_id = str(uuid.uuid4())
        async with self._listener.watch(job_id) as watch, self._cancel_job_if_cancelled(job_id):
            created = await self._create(spec, job_id)
            await self._enqueue(spec, job_id, arguments)
            final = await self._follow(job_id, watch, created.seq, send)
        return job_id, _outcome(spec.name, job_id, final)

    async def follow(self, job_id: str, send: SendProgress | None) -> Any:
        """Attach to a job that is already queued, running or finished, and return its result.

        The snapshot is read right after subscribing, so a job that ended before anyone listened
        returns at once. Cancelling the caller cancels the job, as with `run`.
        """
        async with self._listener.watch(job_id) as watch, self._cancel_job_if_cancelled(job_id):
            first = await self.snapshot(job_id)
            if first is None:
                raise ToolError(f"No job with id {job_id} (unknown, or its result expired).")
            final = first if first.state.terminal else await self._follow(job_id, watch, first.seq, send)
        return _outcome(await self._job_name(job_id), job_id, final)

    async def cancel(self, job_id: str) -> None:
        """Ask the job to stop: the flag its reporter checks, plus a Celery revoke for a queued job."""
        logger.info("cancelling job %s", job_id)
        try:
            await self._client.hset(self._keys.job(job_id), "cancel", "1")
        except RedisError as exc:
            logger.warning("could not flag job %s as cancelled: %r", job_id, exc)
        async with self._broker_threads:
            await anyio.to_thread.run_sync(self._celery.control.revoke, job_id)

    async def snapshot(self, job_id: str) -> JobEvent | None:
        """The job's current snapshot (None if unknown, expired or Redis is unreachable)."""
        try:
            fields = await self._client.hgetall(self._keys.job(job_id))
        except RedisError as exc:
            logger.warning("snapshot read of job %s failed: %r", job_id, exc)
            return None
        return JobEvent.from_snapshot(fields)

    async def _create(self, spec: JobSpec, job_id: str) -> WriteOutcome:
        event, fields = encode_write(
            JobState.QUEUED, message="queued", extra={"job": spec.name, "created_at": repr(time.time())}
        )
        reply = await self._write(keys=[self._keys.job(job_id)], args=[self._settings.result_ttl, event, *fields])
        return WriteOutcome.parse(reply)

    async def _enqueue(self, spec: JobSpec, job_id: str, arguments: dict[str, Any]) -> None:
        options: dict[str, Any] = {"task_id": job_id}
        if spec.queue:
            options["queue"] = spec.queue
        task = self._celery.tasks[task_name(spec.name)]
        async with self._broker_threads:
            await anyio.to_thread.run_sync(lambda: task.apply_async(args=(job_id, arguments), **options))

    @asynccontextmanager
    async def _cancel_job_if_cancelled(self, job_id: str) -> AsyncIterator[None]:
        """Cancel the job when the call is cancelled; shielded, so the cancel itself completes."""
        try:
            yield
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.cancel(job_id)
            raise

    async def _job_name(self, job_id: str) -> str:
        name = await self._client.hget(self._keys.job(job_id), "job")
        return name.decode() if isinstance(name, bytes) else str(name or "job")

    async def _follow(self, job_id: str, watch: JobWatch, seq: int, send: SendProgress | None) -> JobEvent:
        """Forward the job's progress until its terminal state, which is returned.

        `seq` is the last sequence number already seen; a snapshot read covers anything missed.
        """
        gate = ProgressGate(1.0 / self._settings.progress_rate)
        poll_interval = self._settings.snapshot_poll_interval
        next_poll = time.monotonic() + poll_interval
        while True:
            now = time.monotonic()
            wake = min(next_poll, gate.next_due() or next_poll)
            item = await watch.next(max(0.0, wake - now))
            now = time.monotonic()
            event: JobEvent | None = None
            if item is RESYNC or (item is None and now >= next_poll) or (
                isinstance(item, JobEvent) and item.seq > seq + 1
            ):
                event = await self.snapshot(job_id)
                if isinstance(item, JobEvent) and (event is None or event.seq < item.seq):
                    event = item
                next_poll = now + poll_interval
            elif isinstance(item, JobEvent):
                event = item
            if event is not None and event.seq > seq:
                seq = event.seq
                if event.state.terminal:
                    last = gate.drain(now)
                    if last is not None and send is not None:
                        await send(last)
                    return event
                if event.progress is not None:
                    gate.offer(ProgressUpdate(event.progress, event.total, event.message))
            update = gate.due(now)
            if update is not None and send is not None:
                await send(update)


def _outcome(job_name: str, job_id: str, final: JobEvent) -> Any:
    """The tool's return value for a finished job, or the `ToolError` the model should read."""
    if final.state is JobState.SUCCEEDED:
        return final.result
    if final.state is JobState.CANCELLED:
        raise ToolError(f"Job {job_name} was cancelled (job id {job_id}).")
    raise ToolError(final.error or f"Job {job_name} failed (job id {job_id}).")
