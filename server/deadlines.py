"""When the server ends a job that cannot end by itself: one policy for every path that follows jobs.

A streaming call's follower (`follow.py`) and a task read (`tasks.py`) apply the same rules:

- **queue wait**: a job still queued `max_queue_wait` after it was queued is ended (a late worker
  skips it), with an error naming its queue;
- **lost worker**: a running job's liveness key expires `worker_lost_after` after its worker's
  last beat. A Redis restart drops the key too, so the worker only counts as lost once no beat
  brought it back within two heartbeat intervals of the first read that missed it; then a job
  that is not retry-safe is ended, and a retry-safe one is given `redelivery_wait` to start again
  (the broker hands it on after its visibility timeout) before it is ended;
- **Redis out of reach**: while no read of the job succeeds, a call is ended once Redis has been
  unreachable for `redis_outage_limit`, with an error that says so.

The policy is pure: it holds no state and reads no clock. Callers pass `now` and what they know
(the follower from memory, a task from its snapshot, which any replica can read), and act on the
`Verdict`. Times are in seconds, on whatever clock the caller uses consistently.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_jobs._events import FailureKind, JobState

REDIS_UNREACHABLE = (
    "Redis is unreachable (no answer for {seconds:g} s), so the state of job {name} (job id {job_id}) "
    "cannot be read; the call ends here. The job may still finish: try again shortly."
)


@dataclass(frozen=True)
class JobDeadlines:
    """The timings the rules work to (see `FollowPolicy.from_settings`)."""

    max_queue_wait: float
    worker_lost_after: float
    heartbeat_interval: float
    redelivery_wait: float
    redis_outage_limit: float


@dataclass(frozen=True)
class WatchedJob:
    """The job the rules are applied to."""

    job_id: str
    name: str
    queue: str
    """The Celery queue it was routed to."""
    retry_safe: bool


@dataclass(frozen=True)
class Verdict:
    """What to do now: end the job (`kind` and `error` set), or look again by `look_again_at`
    (None: nothing is due sooner than the caller's own polling)."""

    kind: FailureKind | None = None
    error: str | None = None
    look_again_at: float | None = None

    @property
    def ends(self) -> bool:
        return self.kind is not None


KEEP = Verdict()


def queue_timeout_error(job: WatchedJob, deadlines: JobDeadlines) -> str:
    return (
        f"No worker started job {job.name} within {deadlines.max_queue_wait:g} s (job id {job.job_id}); "
        f"is a worker running for queue {job.queue!r}?"
    )


def worker_lost_error(job: WatchedJob, deadlines: JobDeadlines) -> str:
    if not job.retry_safe:
        return (
            f"Job {job.name} lost its worker (no heartbeat for {deadlines.worker_lost_after:g} s) and is not "
            f"marked safe to re-run (job id {job.job_id})."
        )
    return (
        f"Job {job.name} lost its worker and was not re-run within {deadlines.redelivery_wait:g} s "
        f"(job id {job.job_id})."
    )


def redis_unreachable_error(job: WatchedJob, seconds: float) -> str:
    return REDIS_UNREACHABLE.format(seconds=seconds, name=job.name, job_id=job.job_id)


def judge(
    job: WatchedJob,
    deadlines: JobDeadlines,
    now: float,
    *,
    state: JobState,
    queued_since: float,
    alive: bool,
    lost_since: float | None,
) -> Verdict:
    """The queue-wait and lost-worker rules, for a job read just now in `state`.

    `lost_since`: when a read first found this running job without its liveness key (None: the
    last read found it alive, or this is the first read without it; then pass `now`)."""
    if state is JobState.QUEUED:
        if now - queued_since >= deadlines.max_queue_wait:
            return Verdict(FailureKind.QUEUE_TIMEOUT, queue_timeout_error(job, deadlines))
        return KEEP
    if not state.on_worker or alive or lost_since is None:
        return KEEP
    missing = now - lost_since
    if missing < 2 * deadlines.heartbeat_interval:
        return Verdict(
            look_again_at=min(now + deadlines.heartbeat_interval, lost_since + 2 * deadlines.heartbeat_interval)
        )
    if not job.retry_safe or missing > deadlines.redelivery_wait:
        return Verdict(FailureKind.WORKER_LOST, worker_lost_error(job, deadlines))
    return KEEP


def judge_outage(job: WatchedJob, deadlines: JobDeadlines, now: float, unreachable_since: float) -> Verdict:
    """The Redis-outage rule, for a read of the job that just failed."""
    down = now - unreachable_since
    if down >= deadlines.redis_outage_limit:
        return Verdict(FailureKind.REDIS_UNREACHABLE, redis_unreachable_error(job, down))
    return Verdict(look_again_at=unreachable_since + deadlines.redis_outage_limit)
