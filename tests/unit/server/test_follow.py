"""The follower's deadlines and notices, with a clock of the test's own (as `test_gate.py` does
for the gate): a job the follower waits on for minutes is followed in microseconds, and each
rule is pinned to the second. The end-to-end tests (`test_faults.py`, `test_tasks.py`) prove the
wiring with real workers and Redis; these prove the rules.

The stand-ins: a watch whose wait for the next event moves the clock on by the whole timeout (no
event comes unless a test queues one), and a store that holds one snapshot and applies the
follower's guarded writes to it as the write script would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from itertools import pairwise
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from mcp_jobs._events import FailureKind, JobEvent, JobState
from mcp_jobs._store import WriteOutcome
from mcp_jobs.server.deadlines import JobDeadlines
from mcp_jobs.server.follow import QUEUED_NOTICE_DELAY, FollowedJob, FollowPolicy, JobFollower
from mcp_jobs.server.gate import ProgressUpdate
from mcp_jobs.server.listener import RESYNC

pytestmark = pytest.mark.anyio

DEADLINES = JobDeadlines(
    max_queue_wait=300.0,
    worker_lost_after=10.0,
    heartbeat_interval=2.0,
    redelivery_wait=120.0,
    redis_outage_limit=45.0,
)
POLICY = FollowPolicy(
    progress_rate=10.0, poll_interval=5.0, keepalive_interval=20.0, max_message_chars=1000, deadlines=DEADLINES
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Watch:
    """Events a test queues, in order; otherwise the wait runs out, and the clock moves on by it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.items: deque[JobEvent | object] = deque()

    async def next(self, timeout: float | None) -> Any:
        if self.items:
            return self.items.popleft()
        assert timeout is not None, "a follower always has a next deadline"
        self._clock.now += timeout
        return None

    def put(self, item: object) -> None:
        self.items.append(item)


class Store:
    """One job's snapshot and liveness, the reads made (at what time), and the guarded writes."""

    def __init__(self, clock: Clock, snapshot: JobEvent | None, alive: bool = False) -> None:
        self._clock = clock
        self.snapshot = snapshot
        self.alive = alive
        self.reads: list[float] = []
        self.writes: list[dict[str, Any]] = []

    async def read(self, job_id: str) -> tuple[JobEvent | None, bool]:
        self.reads.append(self._clock.now)
        return self.snapshot, self.alive

    async def write(self, job_id: str, state: JobState, **options: Any) -> WriteOutcome:
        self.writes.append({"state": state, **options})
        current = self.snapshot
        if current is None or current.state.terminal or options.get("expect") not in (None, current.state):
            return WriteOutcome(seq=0, cancel_requested=False)
        error, kind = options.get("error"), options.get("error_type")
        self.snapshot = replace(current, seq=current.seq + 1, state=state, error=error, error_type=kind)
        return WriteOutcome(seq=self.snapshot.seq, cancel_requested=False)

    async def queue_depth(self, queue: str) -> int:
        return 3


class Sent:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.updates: list[tuple[float, ProgressUpdate]] = []

    async def __call__(self, update: ProgressUpdate) -> None:
        self.updates.append((self._clock.now, update))


def follower(
    clock: Clock, store: Store, *, retry_safe: bool = False, policy: FollowPolicy = POLICY
) -> tuple[JobFollower, Watch, Sent]:
    watch, sent = Watch(clock), Sent(clock)
    job = FollowedJob(job_id="j1", name="report", queue="celery", retry_safe=retry_safe, depth_readable=True)
    follow = JobFollower(job, cast(Any, watch), cast(Any, store), sent, policy, clock=clock)
    return follow, watch, sent


def queued(seq: int = 1) -> JobEvent:
    return JobEvent(seq=seq, state=JobState.QUEUED, message="queued")


def running(seq: int = 2, progress: float | None = None, message: str | None = None) -> JobEvent:
    return JobEvent(seq=seq, state=JobState.RUNNING, attempt=1, progress=progress, message=message)


async def test_a_job_nobody_starts_is_ended_at_its_queue_deadline_after_one_read() -> None:
    clock = Clock()
    start = clock.now
    store = Store(clock, queued())
    follow, _, sent = follower(clock, store)

    final = await follow.run(seq=1)

    assert final is not None and final.state is JobState.FAILED and final.error_type is FailureKind.QUEUE_TIMEOUT
    assert final.error and "No worker started job report within 300 s" in final.error
    assert store.writes == [
        {"state": JobState.FAILED, "expect": JobState.QUEUED, "error": final.error, "error_type": "QueueTimeout"}
    ]
    # A queued job changes state by events: its snapshot is read at the deadline only, not every poll.
    assert store.reads == [pytest.approx(start + DEADLINES.max_queue_wait)]
    # The caller heard "queued" after half a second, then a keep-alive notice every 20 s.
    times = [at - start for at, _ in sent.updates]
    assert times[0] == pytest.approx(QUEUED_NOTICE_DELAY)
    assert "queued: 3 jobs waiting in the queue" in (sent.updates[0][1].message or "")
    assert len(times) == 15 and all(b - a == pytest.approx(POLICY.keepalive_interval) for a, b in pairwise(times))


async def test_a_job_that_starts_late_is_not_ended_by_the_queue_deadline() -> None:
    clock = Clock()
    store = Store(clock, queued())
    follow, watch, _ = follower(clock, store)
    store.snapshot = running()  # a worker took it just before the deadline, and its event was lost
    store.alive = True
    watch.put(JobEvent(seq=3, state=JobState.SUCCEEDED, attempt=1, result=7))

    final = await follow.run(seq=1)

    assert final is not None and final.state is JobState.SUCCEEDED and final.result == 7
    assert store.writes == []


async def test_a_lost_worker_ends_the_job_only_after_two_missed_beats() -> None:
    clock = Clock()
    store = Store(clock, running(), alive=False)
    follow, watch, _ = follower(clock, store)
    watch.put(running())
    start = clock.now

    final = await follow.run(seq=1)

    assert final is not None and final.error_type is FailureKind.WORKER_LOST
    assert final.error and "is not marked safe to re-run" in final.error
    # First missing beat at the first poll; then a read each beat; ended once two beats are missed.
    first_miss = store.reads[0]
    assert first_miss == pytest.approx(start + POLICY.poll_interval)
    assert store.reads[-1] - first_miss >= 2 * DEADLINES.heartbeat_interval
    assert [w["expect"] for w in store.writes] == [JobState.RUNNING]


async def test_a_retry_safe_job_gets_its_redelivery_wait_before_it_is_ended() -> None:
    clock = Clock()
    store = Store(clock, running(), alive=False)
    follow, watch, _ = follower(clock, store, retry_safe=True)
    watch.put(running())

    final = await follow.run(seq=1)

    assert final is not None and final.error_type is FailureKind.WORKER_LOST
    assert final.error and "was not re-run within 120 s" in final.error
    assert store.reads[-1] - store.reads[0] > DEADLINES.redelivery_wait


async def test_a_beat_that_comes_back_clears_the_lost_worker() -> None:
    clock = Clock()
    store = Store(clock, running(), alive=False)
    follow, watch, _ = follower(clock, store)
    watch.put(running())
    watch.put(RESYNC)  # read at once: the beat is missing
    original_read = store.read

    async def read_then_beat(job_id: str) -> tuple[JobEvent | None, bool]:
        result = await original_read(job_id)
        if len(store.reads) == 2:  # the worker beats again (say, after a Redis restart)
            store.alive = True
        if len(store.reads) == 4:
            store.snapshot = JobEvent(seq=9, state=JobState.SUCCEEDED, attempt=1, result="done")
        return result

    store.read = read_then_beat  # type: ignore[method-assign]

    final = await follow.run(seq=1)

    assert final is not None and final.state is JobState.SUCCEEDED
    assert store.writes == [], "a worker that beats again is not lost"


async def test_a_snapshot_gone_from_redis_ends_the_call_after_worker_lost_after() -> None:
    clock = Clock()
    store = Store(clock, None)
    follow, watch, _ = follower(clock, store)
    watch.put(running())
    watch.put(RESYNC)

    final = await follow.run(seq=1)

    assert final is not None and final.error_type is FailureKind.JOB_LOST
    assert store.reads[-1] - store.reads[0] > DEADLINES.worker_lost_after
    assert store.writes == [], "nothing to write to: the job is gone"


async def test_a_silent_running_job_gets_keep_alive_notices_with_its_last_message() -> None:
    clock = Clock()
    store = Store(clock, running(progress=1, message="step 1"), alive=True)
    follow, watch, sent = follower(clock, store)
    watch.put(running(progress=1, message="step 1"))
    until = clock.now + 65

    assert await follow.run(seq=1, until=until) is None, "still running at `until`: handed off"

    messages = [update.message for _, update in sent.updates]
    assert messages[0] == "step 1"
    assert messages[1:] == ["still running: step 1"] * 3, messages
    values = [update.progress for _, update in sent.updates]
    assert values == sorted(set(values)), "notices keep the values strictly increasing"


async def test_a_redis_outage_ends_the_call_at_its_limit_and_notices_claim_no_state() -> None:
    clock = Clock()
    store = Store(clock, queued())
    follow, watch, sent = follower(clock, store)
    watch.put(RESYNC)  # the listener lost its connection, came back, and the read fails
    failed_from: list[float] = []

    async def unreachable(job_id: str) -> tuple[JobEvent | None, bool]:
        failed_from.append(clock.now)
        raise RedisConnectionError("Connection refused")

    store.read = unreachable  # type: ignore[method-assign]

    final = await follow.run(seq=1)

    assert final is not None and final.state is JobState.FAILED
    assert final.error_type is FailureKind.REDIS_UNREACHABLE
    assert final.error and "Redis is unreachable" in final.error and "job id j1" in final.error
    assert clock.now - failed_from[0] == pytest.approx(DEADLINES.redis_outage_limit)
    assert store.writes == [], "nothing can be written while Redis is away"
    during = [update.message or "" for at, update in sent.updates if at > failed_from[0]]
    assert during and all("Redis unreachable" in text for text in during), during
    assert not any("queued" in text or "running" in text for text in during)


async def test_a_redis_outage_shorter_than_the_limit_changes_nothing() -> None:
    clock = Clock()
    store = Store(clock, running(progress=1), alive=True)
    follow, watch, _ = follower(clock, store)
    watch.put(running(progress=1))
    watch.put(RESYNC)
    original_read = store.read
    fails = iter([True, True, False])

    async def flaky(job_id: str) -> tuple[JobEvent | None, bool]:
        if next(fails, False):
            raise RedisConnectionError("Connection refused")
        store.snapshot = JobEvent(seq=5, state=JobState.SUCCEEDED, attempt=1, result=1)
        return await original_read(job_id)

    store.read = flaky  # type: ignore[method-assign]

    final = await follow.run(seq=1)

    assert final is not None and final.state is JobState.SUCCEEDED and final.result == 1


# Questions: a follower that `asks` returns each new question once, with its requests.

REQUESTS = {"go": {"method": "elicitation/create", "params": {"message": "Go?", "requestedSchema": {}}}}


def asking(seq: int, round_number: int = 1, inputs: dict[str, Any] | None = None) -> JobEvent:
    return JobEvent(seq=seq, state=JobState.INPUT_REQUIRED, attempt=1, round=round_number, inputs=inputs)


async def test_a_question_comes_back_with_its_requests_read_from_the_snapshot() -> None:
    clock = Clock()
    store = Store(clock, asking(3, inputs=REQUESTS), alive=True)
    watch, sent = Watch(clock), Sent(clock)
    job = FollowedJob(job_id="j1", name="report", queue="celery", retry_safe=False)
    follow = JobFollower(job, cast(Any, watch), cast(Any, store), sent, POLICY, clock=clock, asks=True)
    watch.put(running(2, progress=1, message="working"))
    watch.put(asking(3))  # the event names the round; the requests are in the snapshot

    question = await follow.run(seq=1)

    assert question is not None and question.state is JobState.INPUT_REQUIRED and question.inputs == REQUESTS
    assert len(store.reads) == 1
    assert [update.message for _, update in sent.updates] == ["working"], "progress is flushed before asking"
    # Once answered, the follow goes on from there; the same round is never returned again.
    store.snapshot = JobEvent(seq=5, state=JobState.SUCCEEDED, result=1)
    watch.put(asking(3, inputs=REQUESTS))
    watch.put(JobEvent(seq=4, state=JobState.RUNNING, attempt=1, message="answered"))
    watch.put(JobEvent(seq=5, state=JobState.SUCCEEDED, result=1))
    final = await follow.run(seq=question.seq)
    assert final is not None and final.state is JobState.SUCCEEDED


async def test_a_question_answered_before_it_was_read_is_not_asked() -> None:
    clock = Clock()
    store = Store(clock, running(4, progress=2), alive=True)
    watch, sent = Watch(clock), Sent(clock)
    job = FollowedJob(job_id="j1", name="report", queue="celery", retry_safe=False)
    follow = JobFollower(job, cast(Any, watch), cast(Any, store), sent, POLICY, clock=clock, asks=True)
    watch.put(asking(3))
    watch.put(JobEvent(seq=5, state=JobState.SUCCEEDED, result="done"))

    final = await follow.run(seq=2)

    assert final is not None and final.state is JobState.SUCCEEDED


async def test_a_follower_that_does_not_ask_follows_on_while_the_job_waits() -> None:
    clock = Clock()
    store = Store(clock, asking(3, inputs=REQUESTS), alive=True)
    follow, watch, _ = follower(clock, store)
    watch.put(asking(3))
    watch.put(JobEvent(seq=4, state=JobState.FAILED, error="no answer", error_type=FailureKind.INPUT_TIMEOUT))

    final = await follow.run(seq=2)

    assert final is not None and final.error_type is FailureKind.INPUT_TIMEOUT


async def test_a_job_waiting_for_an_answer_whose_worker_died_is_ended_as_lost() -> None:
    clock = Clock()
    store = Store(clock, asking(3, inputs=REQUESTS), alive=False)
    follow, watch, _ = follower(clock, store)
    watch.put(asking(3))

    final = await follow.run(seq=2)

    assert final is not None and final.error_type is FailureKind.WORKER_LOST
    assert store.writes[0]["expect"] is JobState.INPUT_REQUIRED


async def test_log_lines_go_out_in_order_once_each() -> None:
    clock = Clock()
    store = Store(clock, None)
    watch, sent = Watch(clock), Sent(clock)
    lines: list[dict[str, Any]] = []

    async def send_log(line: dict[str, Any]) -> None:
        lines.append(line)

    job = FollowedJob(job_id="j1", name="report", queue="celery", retry_safe=False)
    follow = JobFollower(job, cast(Any, watch), cast(Any, store), sent, POLICY, clock=clock, send_log=send_log)
    for seq, text in ((2, "one"), (3, "two")):
        watch.put(replace(running(seq), log={"level": "info", "data": text, "logger": None}))
    watch.put(replace(running(3), log={"level": "info", "data": "two", "logger": None}))  # a duplicate
    watch.put(JobEvent(seq=4, state=JobState.SUCCEEDED, result=None))

    await follow.run(seq=1)

    assert [line["data"] for line in lines] == ["one", "two"]
