"""Following one job for one call, from the first event to the terminal state.

`JobFollower.run` is a single loop that waits for the next event with a timeout and, on each
turn, does what is due:

- an event arrives: apply it (a sequence gap means events were lost: read the snapshot; a job
  that succeeded with a large result: read it from the snapshot, since events carry only small ones);
- a `RESYNC` (the pub/sub connection came back) or `poll_interval` of silence: read the snapshot
  and the job's liveness key, which also catches a result whose event was lost;
- deadlines, as `deadlines.py` rules them (queue wait, lost worker, redelivery wait, Redis out of
  reach for `redis_outage_limit`); a snapshot gone from Redis for `worker_lost_after` (Redis
  restarted without persistence) ends the call;
- notifications: job progress through the `ProgressGate`, and when nothing was sent for
  `keepalive_interval` a notice ("queued: 3 waiting", "still running: ...") so clients that reset
  their timeout on progress wait for a slow job. A queued job is announced after `QUEUED_NOTICE_DELAY`.
  While Redis cannot be read, the notice says so rather than repeat a state nobody can see.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp_jobs._events import FailureKind, JobEvent, JobState
from mcp_jobs._timeline import StepClock
from mcp_jobs.producer import UNACKED_RESTORE_INTERVAL
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.server.deadlines import JobDeadlines, Verdict, WatchedJob, judge, judge_outage
from mcp_jobs.server.gate import ProgressGate, ProgressUpdate
from mcp_jobs.server.listener import RESYNC, JobWatch
from mcp_jobs.server.metrics import Metrics
from mcp_jobs.server.snapshots import AsyncJobStore
from mcp_jobs.settings import Settings

logger = logging.getLogger(__name__)

SendProgress = Callable[[ProgressUpdate], Awaitable[None]]
SendLog = Callable[[dict[str, Any]], Awaitable[None]]
"""Sends one of the job's log lines (`{level, data, logger}`) to the caller."""

Ask = Callable[[str, JobEvent], Awaitable[None]]
"""Gets the answers to a job's question (the job id, and the snapshot that holds the round's
requests) to the job, and returns for the call to follow on; or raises `InputRequired` to end the
call with the question, leaving the job parked (2026-07-28)."""


class InputRequired(Exception):
    """The call ends with its job's question (`InputRequiredResult`); the job waits for the answer."""

    def __init__(self, job_id: str, round_number: int, inputs: dict[str, Any]) -> None:
        super().__init__(f"job {job_id} asked its caller (round {round_number})")
        self.job_id = job_id
        self.round = round_number
        self.inputs = inputs


QUEUED_NOTICE_DELAY = 0.5
"""Seconds a job may sit in the queue before the caller is told it is queued."""


@dataclass(frozen=True)
class FollowPolicy:
    """The timings a follower works to, from the settings."""

    progress_rate: float
    poll_interval: float
    keepalive_interval: float
    max_message_chars: int
    """Messages longer than this are cut (workers refuse them; this guards against other writers)."""
    deadlines: JobDeadlines

    @classmethod
    def from_settings(cls, settings: Settings) -> FollowPolicy:
        return cls(
            progress_rate=settings.progress_rate,
            poll_interval=settings.snapshot_poll_interval,
            keepalive_interval=settings.keepalive_interval,
            max_message_chars=settings.max_message_chars,
            deadlines=JobDeadlines(
                max_queue_wait=settings.max_queue_wait,
                worker_lost_after=settings.worker_lost_after,
                heartbeat_interval=settings.heartbeat_interval,
                # A retry-safe job whose worker died is handed on by the broker only after the
                # visibility timeout (plus one restore sweep); then it may queue like any job.
                redelivery_wait=settings.visibility_timeout + UNACKED_RESTORE_INTERVAL + settings.max_queue_wait,
                redis_outage_limit=settings.redis_outage_limit,
            ),
        )


@dataclass(frozen=True)
class FollowedJob(WatchedJob):
    """What the follower knows of the job it follows."""

    depth_readable: bool = False
    """Whether its queue's depth can be read from this Redis (a Redis broker), for the queued notice."""


class JobFollower:
    """Follows one job to its end, sending the call's progress on the way."""

    def __init__(
        self,
        job: FollowedJob,
        watch: JobWatch,
        store: AsyncJobStore,
        send: SendProgress | None,
        policy: FollowPolicy,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        asks: bool = False,
        send_log: SendLog | None = None,
        first_step: bool = False,
    ) -> None:
        self._job = job
        self._first_step = first_step
        """Whether `run` returns at the job's first progress report too (see `Dispatcher.first_step`)."""
        self._asks = asks
        """Whether `run` returns at the job's questions (else it follows on while the job waits)."""
        self._send_log = send_log
        self._logs: list[dict[str, Any]] = []
        self._question: JobEvent | None = None
        self._answered_round = 0
        self._clock = clock
        """Monotonic seconds; the unit tests pass a clock of their own, as the gate's tests do."""
        self._metrics = metrics
        self._running_since: float | None = None
        self._steps = StepClock()
        self._timed = True
        self._watch = watch
        self._store = store
        self._send = send
        self._policy = policy
        self._gate = ProgressGate(1.0 / policy.progress_rate)
        self._seq = 0
        self._state = JobState.QUEUED
        self._attempt = 0
        self._message: str | None = None
        self._final: JobEvent | None = None
        now = clock()
        self._started = now
        self._queued_since = now
        self._lost_since: float | None = None
        self._missing_since: float | None = None
        self._unreachable_since: float | None = None
        self._next_poll = self._poll_after(now)
        self._until: float | None = None

    async def run(self, seq: int = 0, snapshot: JobEvent | None = None, until: float | None = None) -> JobEvent | None:
        """Follow from sequence number `seq` (already seen), or from a `snapshot` already read,
        and return the terminal event; None if the job is still going at `until` (monotonic
        time: the call hands the job off), after the last progress is flushed. A follower that
        `asks` also returns the snapshot of each new question (state `input_required`, with its
        requests); call `run` again, with that event's `seq`, to follow on once it is answered."""
        self._until = until
        self._seq = max(self._seq, seq)
        self._question = None
        self._timed = snapshot is None  # queue wait and run time only for jobs followed from the start
        if snapshot is not None:
            self._apply(snapshot, self._clock(), authoritative=True)
        while True:
            now = self._clock()
            item = await self._watch.next(max(0.0, self._next_wake() - now))
            now = self._clock()
            if item is RESYNC or (item is None and now >= self._next_poll):
                await self._check(now)
            elif isinstance(item, JobEvent):
                if item.seq > self._seq + 1 or (item.seq <= self._seq and self._missing_since is not None):
                    await self._check(now)  # events were lost, or Redis lost the job: trust the snapshot
                if item.result_elsewhere and item.seq > self._seq:
                    await self._check(now)  # a large result is in the snapshot, not in the event
                else:
                    self._apply(item, now)
            await self._send_logs()
            if self._first_step and self._state is JobState.RUNNING and self._gate.pending:
                return JobEvent(seq=self._seq, state=self._state, message=self._message)
            if self._final is not None or (self._until is not None and now >= self._until):
                await self._emit(self._gate.drain(now))
                return self._final
            if (question := await self._open_question(now)) is not None:
                await self._emit(self._gate.drain(now))
                return question
            await self._emit(self._gate.due(now))
            if now >= self._notice_due():
                await self._emit(self._gate.notice(await self._notice_text(), now))

    def _next_wake(self) -> float:
        wake = min(self._next_poll, self._notice_due(), self._until or float("inf"))
        due = self._gate.next_due()
        return wake if due is None else min(wake, due)

    def _notice_due(self) -> float:
        """When the caller should next hear from us if nothing else is sent."""
        last = self._gate.last_sent_at
        if last is not None:
            return last + self._policy.keepalive_interval
        first = QUEUED_NOTICE_DELAY if self._state is JobState.QUEUED else self._policy.keepalive_interval
        return self._started + first

    def _poll_after(self, now: float) -> float:
        """When to read the snapshot next. A queued job changes state by events, and a reconnect
        brings a resync, so until it runs only its queue deadline needs a read (which keeps
        thousands of queued calls from polling Redis). A running job is polled for its liveness,
        and a job missing from Redis for how long it stays missing."""
        if self._state is JobState.QUEUED and self._missing_since is None and self._unreachable_since is None:
            return max(now + self._policy.poll_interval, self._queued_since + self._policy.deadlines.max_queue_wait)
        return now + self._policy.poll_interval

    async def _open_question(self, now: float) -> JobEvent | None:
        """The job's new question, with its requests (read from the snapshot if the event that
        announced it is all we have), once; None if there is none, or it was answered meanwhile."""
        question = self._question
        if question is None or not self._asks:
            return None
        if question.inputs is None:
            await self._check(now)
            question = self._question
            if question is None or question.inputs is None:
                return None
        self._question = None
        self._answered_round = question.round
        return question

    def _note_question(self, event: JobEvent) -> None:
        """Keep the job's newest unanswered question (a snapshot's, with its requests, over an event's)."""
        question = self._question
        if event.state is JobState.INPUT_REQUIRED:
            fresher = question is None or question.round != event.round or event.inputs is not None
            if event.round > self._answered_round and fresher:
                self._question = event
        elif question is not None and event.seq > question.seq:
            self._question = None  # answered (or ended) before this call asked it

    def _apply(self, event: JobEvent, now: float, *, authoritative: bool = False) -> None:
        """Take an event (or a snapshot, which may go back in sequence after Redis lost data)."""
        if authoritative or event.seq > self._seq:
            self._note_question(event)
        if event.log is not None and event.seq > self._seq:
            self._logs.append(event.log)
        if event.seq <= self._seq and not (authoritative and event.seq != self._seq):
            return
        self._seq = event.seq
        self._missing_since = None
        if event.attempt > self._attempt:
            if self._attempt > 0:
                self._gate.restart()
            self._attempt = event.attempt
            self._lost_since = None
        if event.state is JobState.QUEUED and self._state is not JobState.QUEUED:
            self._queued_since = now
        self._timing(event, now)
        if event.state is not self._state:
            self._state = event.state
            self._next_poll = self._poll_after(now)
        if event.at is not None and not authoritative and self._metrics is not None:
            self._metrics.progress_lag.observe(max(0.0, time.time() - event.at))
        if event.message:
            self._message = _capped(event.message, self._policy.max_message_chars)
        if event.progress is not None:
            # A terminal event carries no progress, but a terminal snapshot keeps the job's last one,
            # which the caller may not have seen yet: the events carrying it can still be on the way.
            message = self._message if event.message else None
            if self._attempt > 1 and message:
                message = f"{message} (attempt {self._attempt})"
            replaces = self._gate.pending
            kept = self._gate.offer(ProgressUpdate(event.progress, event.total, message))
            if self._metrics is not None and (replaces or not kept):
                self._metrics.notifications.labels("coalesced" if kept else "dropped").inc()
        if event.state.terminal:
            self._final = event

    async def _check(self, now: float) -> None:
        """Read the snapshot and liveness, and enforce the deadlines."""
        self._next_poll = now + self._policy.poll_interval
        try:
            snapshot, alive = await self._store.read(self._job.job_id)
        except REDIS_ERRORS as exc:
            self._unreachable(now, exc)
            return
        self._unreachable_since = None
        if snapshot is None:
            self._missing_since = self._missing_since or now
            if now - self._missing_since > self._policy.deadlines.worker_lost_after:
                self._fail(
                    f"Job {self._job.name} vanished from Redis (restarted without persistence?)", FailureKind.JOB_LOST
                )
            return
        self._apply(snapshot, now, authoritative=True)
        self._next_poll = self._poll_after(now)
        if self._final is None:
            await self._enforce_deadlines(now, alive)

    def _unreachable(self, now: float, exc: Exception) -> None:
        """A read failed: retry at the poll interval, and end the call once the outage is too long
        (nothing can be written either, so the call ends without touching the snapshot)."""
        if self._unreachable_since is None:
            self._unreachable_since = now
            logger.warning("job %s: Redis unreachable (%r); retrying", self._job.job_id, exc)
        verdict = judge_outage(self._job, self._policy.deadlines, now, self._unreachable_since)
        if verdict.ends:
            logger.error("%s", verdict.error)
            self._fail(verdict.error or "", verdict.kind or FailureKind.REDIS_UNREACHABLE)
        self._look_again(verdict)

    async def _enforce_deadlines(self, now: float, alive: bool) -> None:
        if self._state.on_worker and not alive:
            # The first read without liveness starts the grace; a beat that comes back ends it.
            self._lost_since = self._lost_since or now
        elif alive:
            self._lost_since = None
        verdict = judge(
            self._job,
            self._policy.deadlines,
            now,
            state=self._state,
            queued_since=self._queued_since,
            alive=alive,
            lost_since=self._lost_since,
        )
        await self._act_on(verdict)

    async def _act_on(self, verdict: Verdict) -> None:
        if verdict.ends and verdict.kind is not None:
            await self._end(self._state, verdict.error or "", verdict.kind)
        self._look_again(verdict)

    def _look_again(self, verdict: Verdict) -> None:
        """Read the snapshot again no later than the verdict asks (a grace or an outage running out)."""
        if verdict.look_again_at is not None:
            self._next_poll = min(self._next_poll, verdict.look_again_at)

    async def _end(self, expect: JobState, error: str, kind: FailureKind) -> None:
        """End the job as failed, unless it moved on meanwhile (then the next check sees where to)."""
        outcome = await self._store.write(
            self._job.job_id, JobState.FAILED, expect=expect, error=error, error_type=kind
        )
        if outcome.written:
            logger.warning(error)
            self._fail(error, kind, seq=outcome.seq)
        else:
            self._next_poll = self._clock()

    def _fail(self, error: str, kind: FailureKind, seq: int = 0) -> None:
        self._final = JobEvent(seq=seq, state=JobState.FAILED, error=error, error_type=kind, attempt=self._attempt)

    async def _notice_text(self) -> str:
        if self._unreachable_since is not None:
            down = self._clock() - self._unreachable_since
            return f"Redis unreachable for {down:.0f} s; retrying (the job's state cannot be read)"
        if self._state is JobState.QUEUED:
            if self._job.depth_readable:
                try:
                    depth = await self._store.queue_depth(self._job.queue)
                    if depth:
                        return f"queued: {depth} job{'s' if depth != 1 else ''} waiting in the queue"
                except REDIS_ERRORS:
                    pass
            return "queued, waiting for a free worker"
        if self._lost_since is not None:
            return "worker lost; waiting for the job to be re-run"
        return f"still running: {self._message}" if self._message else "still running"

    def stop_now(self) -> None:
        """End the follow at once (the server is draining): `run` returns None on its next turn."""
        self._until = self._clock()
        self._watch.put(RESYNC)

    def _timing(self, event: JobEvent, now: float) -> None:
        """The metrics of a job followed from the start: its queue wait as this server saw it, and
        its run and step times from the worker's own clock (the numbers of its step timeline)."""
        if self._metrics is None or not self._timed:
            return
        state = event.state
        if state is JobState.RUNNING and self._running_since is None:
            self._running_since = now
            self._metrics.queue_wait.labels(self._job.name).observe(now - self._started)
        if event.at is None:
            return
        steps = self._steps
        steps.seen(event.at, event.message, running=not state.terminal and state is not JobState.QUEUED)
        if state.terminal and steps.began is not None:
            steps.ended(event.at)
            self._metrics.run_time.labels(self._job.name).observe(max(event.at - steps.began, 0.0))
            for duration in steps.durations:
                self._metrics.step_time.labels(self._job.name).observe(duration)
            steps.durations.clear()

    async def _send_logs(self) -> None:
        logs, self._logs = self._logs, []
        if self._send_log is not None:
            for line in logs:
                await self._send_log(line)

    async def _emit(self, update: ProgressUpdate | None) -> None:
        if update is not None and self._send is not None:
            await self._send(update)
            if self._metrics is not None:
                self._metrics.notifications.labels("sent").inc()


def _capped(message: str, limit: int) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
