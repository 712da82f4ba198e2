"""The Celery application: one Celery task per registered job.

Each job becomes a task named `mcp_jobs.<job name>` that carries the job's own options. Celery
keeps no results: the outcome lives in the job's Redis snapshot, written by `_runner.run_job`.

Delivery settings, chosen deliberately:

- Jobs marked `retry_safe` use late acknowledgement and `reject_on_worker_lost`: if the pool
  process running one dies, the message goes back to the queue and another process re-runs it
  (at least once). If the whole worker dies, the Redis broker hands the unacknowledged message to
  another worker after `visibility_timeout` seconds, which must exceed the longest such job.
- Other jobs are acknowledged when they start (at most once). If their process dies, the main
  worker process records the failure at once (`task_failure`); if the whole worker dies, the
  server notices the missing heartbeat.
- `worker_disable_prefetch` (Redis brokers; `worker_prefetch_multiplier=1` for the others): a
  worker takes a message only when a slot is free, so a long job never sits reserved behind
  another on a busy worker, and a lost broker connection (a Redis failover) strands no reserved
  message: kombu 5.7 cannot put reserved messages back while its Sentinel channel reconnects.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Celery, Task
from celery.concurrency import get_implementation
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_failure,
    task_revoked,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from mcp_jobs import tracing
from mcp_jobs._contract import PART_TASK, TASK_PREFIX, task_name
from mcp_jobs._events import FailureKind, JobState, Keys
from mcp_jobs._runner import Heartbeats, RunLimits, run_job, time_limit_error
from mcp_jobs._store import JobStore
from mcp_jobs.fanout import PartsContext, run_part
from mcp_jobs.logs import ControlSafe, JsonFormatter
from mcp_jobs.presence import Presence
from mcp_jobs.producer import create_producer_app
from mcp_jobs.redis_connect import replicated, sync_client
from mcp_jobs.registry import JobSpec, load_jobs
from mcp_jobs.settings import Settings, get_settings

logger = logging.getLogger(__name__)

TIME_LIMIT_GRACE = 5.0
"""Seconds between a job's soft limit (an exception inside the job) and the hard kill of its process."""


def time_limit(spec: JobSpec, settings: Settings) -> float | None:
    """The time limit a job runs under: its own, else the global default."""
    return spec.time_limit if spec.time_limit is not None else settings.default_time_limit


class _StoreHolder:
    """One Redis client per worker process, created lazily so that it is made after the pool forks.

    The client retries through short Redis outages (a restart, a failover) before giving up.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: JobStore | None = None
        self._pid = 0

    def client(self) -> redis.Redis:
        return self.get().client

    def get(self) -> JobStore:
        if self._store is None or self._pid != os.getpid():
            client = sync_client(
                self._settings,
                socket_connect_timeout=2,
                socket_timeout=10,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                health_check_interval=30,
            )
            self._store = JobStore(
                client, Keys(self._settings.namespace), self._settings.result_ttl, replicated(self._settings)
            )
            self._pid = os.getpid()
        return self._store


def create_celery_app(settings: Settings | None = None, jobs: dict[str, JobSpec] | None = None) -> Celery:
    """Build the worker's Celery app for `settings`, with a task for every job in `jobs` (default:
    the job modules), and the signal handlers that record deaths and announce the worker."""
    settings = settings or get_settings()
    jobs = jobs if jobs is not None else load_jobs(settings.job_modules)
    app = create_producer_app(settings)
    stores = _StoreHolder(settings)
    heartbeats = Heartbeats(stores.get, settings.heartbeat_interval, settings.worker_lost_after)
    for spec in jobs.values():
        _register(app, spec, stores, heartbeats, settings)
    _register_parts(app, stores, heartbeats, settings)
    _record_deaths(app, jobs, stores, settings)
    _announce_presence(app, stores, settings)
    _safe_worker_logs()
    _trace_runs()
    return app


def _register(app: Celery, spec: JobSpec, stores: _StoreHolder, heartbeats: Heartbeats, settings: Settings) -> None:
    limit = time_limit(spec, settings)
    limits = RunLimits(
        time_limit=limit,
        max_result_bytes=settings.max_result_bytes,
        max_message_chars=settings.max_message_chars,
        alive_for=settings.worker_lost_after,
        input_timeout=settings.input_timeout,
        max_artifact_bytes=settings.max_artifact_bytes,
    )
    options: dict[str, Any] = {
        "name": task_name(spec.name),
        "bind": True,
        # Not shared: each app (one per Runtime) owns its tasks, bound to its own settings.
        "shared": False,
        "acks_late": spec.retry_safe,
        "reject_on_worker_lost": spec.retry_safe,
    }
    if limit is not None:
        options["soft_time_limit"] = limit
        options["time_limit"] = limit + TIME_LIMIT_GRACE

    def run(task: Task[Any, Any], job_id: str, arguments: dict[str, Any]) -> None:
        store = stores.get()
        parts = _parts_context(app, store, heartbeats, settings, queue=spec.queue)
        run_job(spec, store, heartbeats, job_id, arguments, limits, worker=task.request.hostname or "", parts=parts)

    run.__name__ = spec.name
    run.__doc__ = spec.description
    app.task(**options)(run)


def _parts_context(
    app: Celery, store: JobStore, heartbeats: Heartbeats, settings: Settings, queue: str | None
) -> PartsContext:
    """How a job running here fans out: its parts go on its own queue."""
    queue = queue or str(app.conf.task_default_queue)
    return PartsContext(
        store=store,
        keys=Keys(settings.namespace),
        # The message names the part only (ids, no data: see `fanout.py`), and so does its argsrepr.
        send=lambda args: app.send_task(PART_TASK, args=args, queue=queue, argsrepr=repr(args)),
        heartbeats=heartbeats,
        lost_after=settings.worker_lost_after,
        ttl=settings.result_ttl,
        modules=settings.job_modules,
        max_parts=settings.max_parts,
        queue=queue,
    )


def _register_parts(app: Celery, stores: _StoreHolder, heartbeats: Heartbeats, settings: Settings) -> None:
    """The task that runs one part of a fanned-out job (see `fanout.py`)."""

    def part(task: Task[Any, Any], job_id: str, map_index: int, index: int) -> None:
        queue = (task.request.delivery_info or {}).get("routing_key") or None
        run_part(_parts_context(app, stores.get(), heartbeats, settings, queue), job_id, map_index, index)

    app.task(name=PART_TASK, shared=False, bind=True)(part)


def _safe_worker_logs() -> None:
    """Celery's own log handlers (the worker's text log) get the same protection as ours: a job's
    error or a caller's argument quoted in a log line cannot forge lines (see `logs.ControlSafe`)."""

    def wrap(logger: logging.Logger | None = None, **_: Any) -> None:
        for handler in logger.handlers if logger is not None else []:
            if handler.formatter is not None and not isinstance(handler.formatter, ControlSafe | JsonFormatter):
                handler.setFormatter(ControlSafe(handler.formatter))

    after_setup_logger.connect(wrap, weak=False)
    after_setup_task_logger.connect(wrap, weak=False)


POOLS_WITH_PROCESS_INIT = ("celery.concurrency.prefork", "celery.concurrency.solo")
"""Pools whose processes announce themselves (`worker_process_init`): tracing is set up there."""


def _trace_runs() -> None:
    """Set tracing up (when the environment asks, see `tracing.py`) in the process that runs the
    jobs: each prefork pool process, as the Celery instrumentation requires (an exporter's thread
    does not survive the fork), else the worker itself (thread pools)."""

    @worker_process_init.connect(weak=False)
    def _pool_process(**_: Any) -> None:
        tracing.configure(tracing.WORKER_SERVICE, celery=True)

    @worker_init.connect(weak=False)
    def _worker(sender: Any = None, **_: Any) -> None:
        pool = get_implementation(getattr(sender, "pool_cls", None) or "prefork")
        if pool.__module__ not in POOLS_WITH_PROCESS_INIT:
            tracing.configure(tracing.WORKER_SERVICE, celery=True)


def _announce_presence(app: Celery, stores: _StoreHolder, settings: Settings) -> None:
    """Announce each worker of this app, with its queues, while it runs (see `presence.py`)."""
    presence = Presence(
        stores.client, Keys(settings.namespace), settings.heartbeat_interval, settings.worker_lost_after
    )

    @worker_ready.connect(weak=False)
    def _ready(sender: Any = None, **_: Any) -> None:
        if sender is not None and sender.app is app:
            presence.start(str(sender.hostname), list(app.amqp.queues.consume_from or app.amqp.queues))

    @worker_shutdown.connect(weak=False)
    def _shutdown(sender: Any = None, **_: Any) -> None:
        presence.stop()


def _record_deaths(app: Celery, jobs: dict[str, JobSpec], stores: _StoreHolder, settings: Settings) -> None:
    """Record, from the worker's main process, the ends a job cannot record itself."""

    def spec_of(task: Any) -> JobSpec | None:
        name = str(getattr(task, "name", ""))
        return jobs.get(name.removeprefix(TASK_PREFIX)) if name.startswith(TASK_PREFIX) and task.app is app else None

    @task_revoked.connect(weak=False)
    def _revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
        # A job revoked (or expired) before it ran never reaches run_job.
        if spec_of(sender) is not None and request is not None:
            stores.get().write_final(request.id, JobState.CANCELLED, message="cancelled before it started")

    @task_failure.connect(weak=False)
    def _failed(sender: Any = None, task_id: str = "", exception: BaseException | None = None, **_: Any) -> None:
        spec = spec_of(sender)
        if spec is None:
            return
        if isinstance(exception, TimeLimitExceeded):
            error = time_limit_error(spec.name, task_id, time_limit(spec, settings))
            kind = FailureKind.TIME_LIMIT
        elif isinstance(exception, WorkerLostError):
            error = (
                f"Job {spec.name} lost its worker process ({exception}) and is not marked safe to re-run, "
                f"so it was not retried (job id {task_id})."
            )
            kind = FailureKind.WORKER_LOST
        else:
            return  # run_job records every failure raised inside the job
        logger.error(error)
        stores.get().write_final(task_id, JobState.FAILED, error=error, error_type=kind)
