"""The deadline rules, once, with times the test chooses (the follower and tasks both use them)."""

from __future__ import annotations

import pytest

from mcp_jobs._events import FailureKind, JobState
from mcp_jobs.server.deadlines import JobDeadlines, WatchedJob, judge, judge_outage

DEADLINES = JobDeadlines(
    max_queue_wait=300.0, worker_lost_after=10.0, heartbeat_interval=2.0, redelivery_wait=120.0, redis_outage_limit=45.0
)
JOB = WatchedJob(job_id="j1", name="report", queue="gpu", retry_safe=False)
SAFE = WatchedJob(job_id="j2", name="report", queue="gpu", retry_safe=True)


def test_a_queued_job_is_ended_at_its_queue_deadline_naming_its_queue() -> None:
    early = judge(JOB, DEADLINES, 1299.9, state=JobState.QUEUED, queued_since=1000, alive=False, lost_since=None)
    assert not early.ends
    late = judge(JOB, DEADLINES, 1300.0, state=JobState.QUEUED, queued_since=1000, alive=False, lost_since=None)
    assert late.kind is FailureKind.QUEUE_TIMEOUT
    assert late.error == ("No worker started job report within 300 s (job id j1); is a worker running for queue 'gpu'?")


@pytest.mark.parametrize("missing", [0.0, 1.0, 3.9])
def test_a_missing_beat_gets_two_heartbeats_of_grace(missing: float) -> None:
    verdict = judge(
        JOB, DEADLINES, 1000 + missing, state=JobState.RUNNING, queued_since=0, alive=False, lost_since=1000
    )
    assert not verdict.ends
    assert verdict.look_again_at is not None and 1000 + missing < verdict.look_again_at <= 1004.0


def test_a_worker_missing_past_the_grace_ends_a_job_that_is_not_retry_safe() -> None:
    verdict = judge(JOB, DEADLINES, 1004.0, state=JobState.RUNNING, queued_since=0, alive=False, lost_since=1000)
    assert verdict.kind is FailureKind.WORKER_LOST and "not marked safe to re-run" in (verdict.error or "")


def test_a_retry_safe_job_waits_for_its_redelivery() -> None:
    waiting = judge(SAFE, DEADLINES, 1100.0, state=JobState.RUNNING, queued_since=0, alive=False, lost_since=1000)
    assert not waiting.ends
    ended = judge(SAFE, DEADLINES, 1120.5, state=JobState.RUNNING, queued_since=0, alive=False, lost_since=1000)
    assert ended.kind is FailureKind.WORKER_LOST and "was not re-run within 120 s" in (ended.error or "")


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_nothing_ends_a_job_that_ended_or_whose_worker_beats(state: JobState) -> None:
    assert not judge(JOB, DEADLINES, 9e9, state=state, queued_since=0, alive=False, lost_since=0).ends
    assert not judge(JOB, DEADLINES, 9e9, state=JobState.RUNNING, queued_since=0, alive=True, lost_since=0).ends


def test_a_redis_outage_ends_the_call_at_its_limit() -> None:
    waiting = judge_outage(JOB, DEADLINES, 1044.0, unreachable_since=1000)
    assert not waiting.ends and waiting.look_again_at == 1045.0
    ended = judge_outage(JOB, DEADLINES, 1045.0, unreachable_since=1000)
    assert ended.kind is FailureKind.REDIS_UNREACHABLE
    assert ended.error and ended.error.startswith("Redis is unreachable (no answer for 45 s)")
