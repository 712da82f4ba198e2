"""Dispatch: one `tools/call` in, one Celery job out, its events back, its result out.

`Dispatcher.run` is the whole life of a call, top to bottom:

1. check the arguments' size, mint the job id (uuid4, also the Celery task id) and subscribe to
   the job's channel;
2. write the job's first snapshot (`queued`) and queue the Celery task, in one script when the
   broker is this Redis (`enqueue.py`);
3. follow the job to its end (`follow.JobFollower`: progress, log lines, snapshots, deadlines,
   notices); a question the job asks on the way goes to the call's `Ask` (`questions.py`), which
   gets it answered and lets the follow go on, or ends the call with it (`InputRequired`: the
   job is left waiting for the answer, which a later call delivers);
4. return the result, or raise `ToolError` with a message the model can act on.

If the call is cancelled (client cancel, or a closed HTTP stream on 2026-07-28), or ends in any
other way than with the job's outcome, the job is cancelled too: the cancellation flag is set for
the job's `Progress` reporter and the Celery task is revoked, in a shielded scope, and the
exception goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import anyio
import anyio.to_thread
from celery import Celery
from kombu.exceptions import OperationalError
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from mcp_jobs import tracing
from mcp_jobs._contract import task_name
from mcp_jobs._events import FailureKind, JobEvent, JobState
from mcp_jobs._store import WriteOutcome
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.registry import JobSpec
from mcp_jobs.server.callers import CALLER_FIELD
from mcp_jobs.server.enqueue import TaskMessages, arguments_repr
from mcp_jobs.server.follow import (
    Ask,
    FollowedJob,
    FollowPolicy,
    InputRequired,
    JobFollower,
    SendLog,
    SendProgress,
)
from mcp_jobs.server.gate import ProgressUpdate
from mcp_jobs.server.listener import JobWatch, Listener
from mcp_jobs.server.metrics import Metrics
from mcp_jobs.server.snapshots import AsyncJobStore
from mcp_jobs.settings import Settings

logger = logging.getLogger(__name__)

REDIS_DOWN = "Redis is unavailable, so the job could not be started; try again shortly."
REDIS_UNREADABLE = "Redis is unavailable, so the job's state cannot be read right now; try again shortly."


class JobHandedOff(ToolError):
    """The call ends while its job goes on: the caller follows it with the status tools."""

    def __init__(self, job_name: str, job_id: str, after: float) -> None:
        self.job_name = job_name
        self.job_id = job_id
        super().__init__(
            f"Job {job_name} is still running after {after:g} s and goes on in the background (job id {job_id}). "
            "This is not a failure. Call job_status with this job id to see its progress, job_result to "
            "get its result once it is done (it can wait for it), or job_cancel to stop it."
        )


class CallRefused(ToolError):
    """A call refused before anything was queued (a quota, or the server shutting down)."""


class Dispatcher:
    """Runs jobs for tool calls; one per server process, shared by all calls."""

    def __init__(
        self,
        settings: Settings,
        store: AsyncJobStore,
        listener: Listener,
        celery: Celery,
        metrics: Metrics | None = None,
        can_hand_off: bool = False,
    ) -> None:
        self._settings = settings
        self._store = store
        self._listener = listener
        self._celery = celery
        self._metrics = metrics or Metrics()
        self._can_hand_off = can_hand_off
        """Whether this server serves the handoff tools (then a drain hands calls off)."""
        self._policy = FollowPolicy.from_settings(settings)
        self._followers: set[JobFollower] = set()
        self._in_flight = 0
        self._closing = False
        # Queue depth is only readable when the broker is this very Redis.
        self._broker_is_redis = settings.broker_shares_redis
        self._default_queue = str(celery.conf.task_default_queue)
        # Jobs go on the broker with their first snapshot write when the broker is this very Redis.
        self._messages = TaskMessages(celery) if self._broker_is_redis else None
        # send_task and revoke block on the broker: they run on threads, at most this many at once.
        self._broker_threads = anyio.CapacityLimiter(16)

    async def run(
        self,
        spec: JobSpec,
        arguments: dict[str, Any],
        listeners: Listeners,
        handoff_after: float | None = None,
        record: dict[str, str] | None = None,
    ) -> tuple[str, Any]:
        """Run `spec` with validated `arguments`; return the job id and its JSON result.

        `listeners` get the gated progress, the job's log lines and its questions (see
        `Listeners`: without an `ask`, the job waits, unanswered, until its input timeout). With `handoff_after`, a job still going after that many seconds is left
        running and `JobHandedOff` is raised. `record` is stored with the job's snapshot (its
        caller, what it can answer). Raises `ToolError` when the job could not start, failed or
        was cancelled, and `InputRequired` when `ask` ends the call with the job's question.
        """
        self._check_size(arguments)
        job_id = str(uuid.uuid4())
        until = None if handoff_after is None else time.monotonic() + handoff_after
        label = "error"
        try:
            with self._admitted():
                await self._check_queue(spec)
                listening = self._listener.replies(job_id)  # the job will publish to this process
                async with self._watching(job_id, listening) as watch, self._cancel_job_unless_it_ended(job_id):
                    created = await self._queue(spec, job_id, arguments, record, self._listener.reply_channel)
                    final = await self._follow(spec.name, spec, job_id, watch, listeners, None, until, created.seq)
                    if final is None:
                        hand_off = self._can_hand_off or not self._closing
                        label = "handed_off" if hand_off else "cancelled"
                        await self._hand_off_or_end(spec.name, job_id, handoff_after, hand_off)
                label = final.state.value
            return job_id, outcome(spec.name, job_id, final)
        except CallRefused:
            label = "refused"
            raise
        except InputRequired:
            label = "input_required"
            raise
        except anyio.get_cancelled_exc_class():
            label = "cancelled"
            raise
        finally:
            self._metrics.calls.labels(spec.name, label).inc()

    def close(self) -> None:
        """The server is shutting down: refuse new calls from now on."""
        self._closing = True

    @property
    def closing(self) -> bool:
        return self._closing

    def drain(self) -> None:
        """End every call still being followed: handed off where the handoff tools exist (the job
        goes on, any replica can follow it), else cancelled, each with a result that says so."""
        self._closing = True
        for follower in list(self._followers):
            follower.stop_now()

    async def _hand_off_or_end(self, name: str, job_id: str, handoff_after: float | None, hand_off: bool) -> NoReturn:
        """End a call whose job goes on: handed off (the job runs on), or, when the server is
        draining without the handoff tools, cancelled with a result that says so."""
        if hand_off:
            raise JobHandedOff(name, job_id, handoff_after or 0)
        with anyio.CancelScope(shield=True):
            await self.cancel(job_id)
        raise ToolError(f"The server is shutting down, so job {name} was cancelled (job id {job_id}); call again.")

    @contextlib.contextmanager
    def _admitted(self) -> Iterator[None]:
        """Count the call in flight, or refuse it over this server process's limit. (The limit per
        caller is kept in Redis, across replicas, by the write that creates the job: `_queue`.)"""
        limit = self._settings.max_calls_in_flight
        if self._closing:
            raise CallRefused("This server is shutting down; call again (another server will take it).")
        if limit is not None and self._in_flight >= limit:
            raise CallRefused(f"The server is at its limit of {limit} calls in flight; retry in a few seconds.")
        self._in_flight += 1
        self._metrics.in_flight.inc()
        try:
            yield
        finally:
            self._metrics.in_flight.dec()
            self._in_flight -= 1

    async def _check_queue(self, spec: JobSpec) -> None:
        """Refuse a job whose queue already holds `max_queued_jobs` (readable on a Redis broker)."""
        limit = self._settings.max_queued_jobs
        if limit is None:
            return
        job = self.followed_job(spec.name, spec, "")
        if not job.depth_readable:
            return
        queue = job.queue
        try:
            depth = await self._store.queue_depth(queue)
        except REDIS_ERRORS as exc:
            raise ToolError(REDIS_DOWN) from exc
        if depth >= limit:
            raise CallRefused(
                f"Queue {queue!r} already holds {depth} jobs waiting for a worker (limit {limit}); retry in a minute."
            )

    async def start(self, spec: JobSpec, arguments: dict[str, Any], record: dict[str, str]) -> str:
        """Queue `spec` and return its job id without following it (a task: callers poll the
        snapshot). `record` is stored with the snapshot (task fields, the caller).

        The job's first snapshot is written before it is queued, so once this returns any server
        replica can read it. If the start is interrupted after queueing, the job is cancelled.
        """
        self._check_size(arguments)
        if self._closing:
            raise CallRefused("This server is shutting down; call again (another server will take it).")
        await self._check_queue(spec)
        job_id = str(uuid.uuid4())
        async with self._cancel_job_unless_it_ended(job_id):
            await self._queue(spec, job_id, arguments, record)
        self._metrics.tasks.labels(spec.name).inc()
        return job_id

    def _check_size(self, arguments: dict[str, Any]) -> None:
        size = len(json.dumps(arguments, separators=(",", ":")))
        if size > self._settings.max_argument_bytes:
            raise ToolError(
                f"The arguments are {size} bytes of JSON, over the {self._settings.max_argument_bytes}-byte limit."
            )

    async def follow(
        self,
        job_id: str,
        listeners: Listeners,
        spec: JobSpec | None = None,
        wait: float | None = None,
        owned: bool = True,
    ) -> Any:
        """Attach to a job that is already queued, running or finished, and return its result.

        The snapshot is read right after subscribing, so a job that ended before anyone listened
        returns at once. If `owned`, cancelling the caller cancels the job, as with `run`. A job
        still going after `wait` seconds raises `JobHandedOff`. `listeners` as for `run`.
        """
        until = None if wait is None else time.monotonic() + wait
        ownership = self._cancel_job_unless_it_ended(job_id) if owned else contextlib.nullcontext()
        async with self._watching(job_id, self._listener.watch(job_id)) as watch, ownership:
            first = await self._first_read(job_id)
            name = spec.name if spec else (await self._store.job_name(job_id) or "job")
            final = (
                first
                if first.state.terminal
                else await self._follow(name, spec, job_id, watch, listeners, first, until)
            )
            if final is None:
                raise JobHandedOff(name, job_id, wait or 0)
        return outcome(name, job_id, final)

    async def first_step(self, job_id: str, spec: JobSpec) -> JobEvent:
        """Follow a task's job (one that `asks_first`) to its first progress report or its end, and
        return its state then; a question it asks before that raises `InputRequired`. Cancelling
        the call before then cancels the job: no task handle was given out for it."""
        async with (
            self._watching(job_id, self._listener.watch(job_id)) as watch,
            self._cancel_job_unless_it_ended(job_id),
        ):
            first = await self._first_read(job_id)
            follower = JobFollower(
                self.followed_job(spec.name, spec, job_id),
                watch,
                self._store,
                None,
                self._policy,
                asks=True,
                first_step=True,
            )
            event = first if first.state.terminal else await follower.run(snapshot=first)
            if event is not None and event.state is JobState.INPUT_REQUIRED:
                raise InputRequired(job_id, event.round, event.inputs or {})
            return event or first

    async def _first_read(self, job_id: str) -> JobEvent:
        """The snapshot of a job being attached to (after subscribing: nothing is missed)."""
        try:
            first, _ = await self._store.read(job_id)
        except REDIS_ERRORS as exc:
            raise ToolError(REDIS_UNREADABLE) from exc
        if first is None:
            raise ToolError(f"No job with id {job_id} (unknown, or its result expired).")
        return first

    async def cancel(self, job_id: str) -> None:
        """Ask the job to stop: the flag its reporter checks, plus a Celery revoke for a queued job."""
        logger.info("cancelling job %s", job_id, extra={"job_id": job_id})
        try:
            await self._store.flag_cancel(job_id)
        except REDIS_ERRORS as exc:
            logger.warning("could not flag job %s as cancelled: %r", job_id, exc)
        try:
            async with self._broker_threads:
                await anyio.to_thread.run_sync(self._celery.control.revoke, job_id)
        except OperationalError as exc:
            logger.warning("could not revoke job %s: %r", job_id, exc)

    @property
    def policy(self) -> FollowPolicy:
        return self._policy

    @property
    def store(self) -> AsyncJobStore:
        return self._store

    def followed_job(self, name: str, spec: JobSpec | None, job_id: str) -> FollowedJob:
        """What a follower (or a task's status read) needs to know about a job."""
        queue = (spec.queue if spec else None) or self._default_queue
        return FollowedJob(
            job_id=job_id,
            name=name,
            queue=queue,
            retry_safe=bool(spec and spec.retry_safe),
            depth_readable=self._broker_is_redis,
        )

    async def _follow(
        self,
        name: str,
        spec: JobSpec | None,
        job_id: str,
        watch: JobWatch,
        listeners: Listeners,
        snapshot: JobEvent | None,
        until: float | None,
        seq: int = 0,
    ) -> JobEvent | None:
        """Follow a job to its end (None: still going at `until`, or the server is draining),
        through its questions; registered meanwhile, so that a drain reaches every call that
        waits on a job."""
        follower = JobFollower(
            self.followed_job(name, spec, job_id),
            watch,
            self._store,
            listeners.send,
            self._policy,
            self._metrics,
            asks=listeners.ask is not None,
            send_log=listeners.send_log,
        )
        self._followers.add(follower)
        try:
            while True:
                event = await follower.run(seq, snapshot=snapshot, until=until)
                if event is None or event.state is not JobState.INPUT_REQUIRED or listeners.ask is None:
                    return event
                await listeners.ask(job_id, event)
                seq, snapshot = event.seq, None
        finally:
            self._followers.discard(follower)

    async def answer(
        self, job_id: str, round_number: int, answers: dict[str, Any], can_ask: str = ""
    ) -> list[str] | None:
        """Deliver answers to the job's open round (see `AsyncJobStore.answer`): None if it is not
        waiting on that round, else the keys still unanswered (empty: the job goes on)."""
        try:
            return await self._store.answer(job_id, round_number, answers, can_ask=can_ask)
        except REDIS_ERRORS as exc:
            raise ToolError("Redis is unavailable, so the answers could not be delivered; try again shortly.") from exc

    @asynccontextmanager
    async def _watching(self, job_id: str, listening: AbstractAsyncContextManager[JobWatch]) -> AsyncIterator[JobWatch]:
        """Listen to the job's events (`listening`: a listener's `replies` or `watch`). Redis
        failing before that means the job was never started; failing later, while the call follows
        it, is said as such (the job is told to stop by then: `_cancel_job_unless_it_ended`)."""
        subscribed = False
        try:
            async with listening as watch:
                subscribed = True
                yield watch
        except (*REDIS_ERRORS, OSError, TimeoutError) as exc:
            if not subscribed:
                logger.warning("job %s: could not subscribe (%r)", job_id, exc, extra={"job_id": job_id})
                raise ToolError(REDIS_DOWN) from exc
            logger.warning("job %s: Redis failed while following it (%r)", job_id, exc, extra={"job_id": job_id})
            raise ToolError(
                f"Redis became unavailable while following job {job_id}: the call ended, and the job was told "
                "to stop if Redis let that through. Try again shortly."
            ) from exc

    @asynccontextmanager
    async def _cancel_job_unless_it_ended(self, job_id: str) -> AsyncIterator[None]:
        """Cancel the job if the call ends any way but with the job's outcome: the caller cancelled,
        or the call failed in the server. No job runs on that nobody waits for.

        A `ToolError` from inside means the job was never queued or has already ended (its snapshot
        says so), so there is nothing to cancel. The cancel is shielded, so it completes even when
        the call itself is being cancelled.
        """
        try:
            yield
        except (ToolError, InputRequired):
            raise  # the job ended, was never queued, or waits for the answer this call asked for
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                logger.error("job %s: the call failed (%r); cancelling the job", job_id, exc, extra={"job_id": job_id})
            with anyio.CancelScope(shield=True):
                await self.cancel(job_id)
            raise

    async def _queue(
        self,
        spec: JobSpec,
        job_id: str,
        arguments: dict[str, Any],
        record: dict[str, str] | None,
        reply_to: str | None = None,
    ) -> WriteOutcome:
        """Write the job's first snapshot (`queued`) and put the job on the broker: both in one
        script when the broker is this Redis (`enqueue.py`), else the snapshot first, then
        Celery's `send_task` on a thread. Either way the snapshot exists before a worker can start.
        With `reply_to`, the job's events are also published to that reply channel.

        With a limit per caller, the same script first counts the caller's live jobs (calls,
        tasks and handed-off jobs alike, on every replica) and creates nothing at the limit."""
        name = task_name(spec.name)
        limit = self._settings.max_calls_per_caller
        caller = (record or {}).get(CALLER_FIELD)
        admit = None if limit is None or caller is None else (caller, limit)
        # No Celery `expires`: it would also drop a retry-safe job redelivered after a lost worker.
        # A job that waited too long is ended by a guarded write instead, which a late worker obeys.
        queue = spec.queue or self._default_queue
        extra = {"job": spec.name, "created_at": repr(time.time()), **(record or {})}
        if reply_to:
            extra["reply_to"] = reply_to
        try:
            if caller is not None and extra.get("task") == "1":  # listed before it exists: never missed
                await self._store.index_task(caller, job_id, float(extra["created_at"]))
            with tracing.enqueue_span(spec.name, job_id) as headers:
                if headers:
                    extra[tracing.TRACE_FIELD] = headers[tracing.TRACE_FIELD]
                message = (
                    await self._messages.message(name, job_id, arguments, queue, headers) if self._messages else None
                )
                created = await self._store.write(
                    job_id, JobState.QUEUED, message="queued", extra=extra, enqueue=message, admit=admit
                )
                if message is None and not created.over_limit:
                    await self._send_task(name, job_id, arguments, queue, headers)
        except (*REDIS_ERRORS, OperationalError, OSError) as exc:
            if self._messages is not None:
                # The reply may be what was lost: a job that was queued after all must not run unowned.
                with anyio.CancelScope(shield=True):
                    await self.cancel(job_id)
            raise ToolError(REDIS_DOWN) from exc
        if created.over_limit:
            live = created.caller_jobs
            raise CallRefused(
                f"You have {live} job{'s' if live != 1 else ''} queued or running (calls, tasks and "
                "handed-off jobs), the limit per caller; retry when one of them has finished."
            )
        return created

    async def _send_task(
        self, name: str, job_id: str, arguments: dict[str, Any], queue: str, headers: dict[str, str]
    ) -> None:
        try:
            async with self._broker_threads:
                await anyio.to_thread.run_sync(
                    lambda: self._celery.send_task(
                        name,
                        args=(job_id, arguments),
                        task_id=job_id,
                        queue=queue,
                        argsrepr=arguments_repr(job_id, arguments),
                        headers=headers or None,
                    )
                )
        except OperationalError as exc:
            logger.warning("job %s: broker unavailable (%r)", job_id, exc)
            error = "The job queue (broker) is unavailable, so the job was not started; try again shortly."
            try:
                await self._store.write(
                    job_id, JobState.FAILED, expect=JobState.QUEUED, error=error, error_type=FailureKind.BROKER_DOWN
                )
            except REDIS_ERRORS:
                pass  # the snapshot expires by itself
            raise ToolError(error) from exc


def progress_token(request: ServerRequestContext[Any, Any], max_token_bytes: int) -> Any:
    """The request's `progressToken` (None: it asked for no progress); one over `max_token_bytes`
    of JSON is refused (-32602), since every notification echoes it."""
    meta = request.meta or {}
    token = meta.get("progress_token", meta.get("progressToken"))
    if token is not None and (size := len(json.dumps(token, separators=(",", ":")))) > max_token_bytes:
        raise MCPError(
            INVALID_PARAMS, f"The progressToken is {size} bytes of JSON, over the {max_token_bytes}-byte limit."
        )
    return token


def progress_sender(request: ServerRequestContext[Any, Any], max_token_bytes: int) -> SendProgress | None:
    """How to send progress for this request, or None when the caller asked for none (on its
    own stream, with its own token). The token is echoed on every notification, so an oversized
    one is refused (-32602) before anything is queued."""
    if progress_token(request, max_token_bytes) is None:
        return None

    async def send(update: ProgressUpdate) -> None:
        await request.session.report_progress(update.progress, update.total, update.message)

    return send


@dataclass(frozen=True)
class Listeners:
    """Where a followed job's gated progress, log lines and questions go (None: nowhere; no
    progress when the caller asked for none)."""

    send: SendProgress | None = None
    send_log: SendLog | None = None
    ask: Ask | None = None


class JobFailed(ToolError):
    """A job that ended failed or cancelled: the tool error the model reads, which names its job
    (the result's `_meta`, as a successful one's does), so an operator can look the job up."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


def outcome(job_name: str, job_id: str, final: JobEvent) -> Any:
    """The tool's return value for a finished job, or the `JobFailed` the model should read
    (`MCPError` for a job that ended with a protocol error)."""
    if final.state is JobState.SUCCEEDED:
        return final.result
    if final.error_code is not None:
        raise MCPError(final.error_code, final.error or f"Job {job_name} failed (job id {job_id}).")
    if final.state is JobState.CANCELLED:
        raise JobFailed(f"Job {job_name} was cancelled (job id {job_id}).", job_id)
    raise JobFailed(final.error or f"Job {job_name} failed (job id {job_id}).", job_id)
