"""What the dispatcher tells a follower about a job's queue: its name always, its depth only when readable."""

from __future__ import annotations

from typing import Any, cast

from mcp_jobs._events import FailureKind, JobState
from mcp_jobs.producer import create_producer_app
from mcp_jobs.registry import build_spec
from mcp_jobs.server.deadlines import judge
from mcp_jobs.server.dispatch import Dispatcher
from mcp_jobs.settings import Settings


def report() -> str:
    return "done"


def dispatcher(broker_url: str | None) -> Dispatcher:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", broker_url=broker_url)
    return Dispatcher(settings, cast(Any, None), cast(Any, None), create_producer_app(settings))


def test_a_job_routed_to_its_queue_on_another_broker_waits_in_that_queue() -> None:
    """With RabbitMQ the queue's depth cannot be read from Redis, but the job still waits in `gpu`
    (before the split, a job that waited too long was reported as waiting in `celery`)."""
    spec = build_spec(report, queue="gpu")
    jobs = dispatcher("amqp://guest@127.0.0.1:1//")
    job = jobs.followed_job("report", spec, "j1")
    assert (job.queue, job.depth_readable) == ("gpu", False)
    deadlines = jobs.policy.deadlines
    verdict = judge(
        job, deadlines, deadlines.max_queue_wait, state=JobState.QUEUED, queued_since=0, alive=False, lost_since=None
    )
    assert verdict.kind is FailureKind.QUEUE_TIMEOUT and "queue 'gpu'" in (verdict.error or "")


def test_a_job_without_a_queue_waits_in_the_default_one_whose_depth_redis_holds() -> None:
    job = dispatcher(None).followed_job("report", build_spec(report), "j1")
    assert (job.queue, job.depth_readable) == ("celery", True)
