"""The Celery application: one Celery task per registered job.

Each job becomes a task named `mcp_jobs.<job name>` that carries the job's own options (time
limit, queue, late acknowledgement when it is safe to re-run). Celery keeps no results: the
outcome lives in the job's Redis snapshot, written by `runner.run_job`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import task_revoked

from workers.events import JobState, Keys
from workers.registry import JobSpec, load_jobs
from workers.runner import run_job
from workers.settings import Settings, get_settings
from workers.store import JobStore

logger = logging.getLogger(__name__)

TASK_PREFIX = "mcp_jobs."
TIME_LIMIT_GRACE = 5.0
"""Seconds between a job's soft limit (an exception inside the job) and the hard kill of its process."""


def task_name(job_name: str) -> str:
    return TASK_PREFIX + job_name


class _StoreHolder:
    """One Redis client per worker process, created lazily so that it is made after the pool forks."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: JobStore | None = None
        self._pid = 0

    def get(self) -> JobStore:
        if self._store is None or self._pid != os.getpid():
            client = redis.Redis.from_url(self._settings.redis_url)
            self._store = JobStore(client, Keys(self._settings.namespace), self._settings.result_ttl)
            self._pid = os.getpid()
        return self._store


def create_celery_app(settings: Settings | None = None, jobs: dict[str, JobSpec] | None = None) -> Celery:
    """Build the Celery app for `settings`, with a task for every job in `jobs` (default: the job modules)."""
    settings = settings or get_settings()
    jobs = jobs if jobs is not None else load_jobs(settings.job_modules)
    app = Celery("mcp_jobs", broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # A job is long: a worker process takes one at a time, so idle processes get the next one.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    stores = _StoreHolder(settings)
    for spec in jobs.values():
        _register(app, spec, stores)

    @task_revoked.connect(weak=False)
    def _record_revoked(request: Any = None, **_: Any) -> None:
        # A job revoked before it ran never reaches run_job: record the cancellation here.
        task_id = getattr(request, "id", None)
        if task_id and str(getattr(request, "name", "")).startswith(TASK_PREFIX):
            stores.get().write(task_id, JobState.CANCELLED, message="cancelled before it started")

    app.mcp_jobs = jobs  # type: ignore[attr-defined]
    return app


def _register(app: Celery, spec: JobSpec, stores: _StoreHolder) -> None:
    options: dict[str, Any] = {
        "name": task_name(spec.name),
        "bind": True,
        # Not shared: each app (one per Runtime) owns its tasks, bound to its own settings.
        "shared": False,
        "acks_late": spec.retry_safe,
        "reject_on_worker_lost": spec.retry_safe,
    }
    if spec.time_limit is not None:
        options["soft_time_limit"] = spec.time_limit
        options["time_limit"] = spec.time_limit + TIME_LIMIT_GRACE
    if spec.queue:
        options["queue"] = spec.queue

    def run(task: Task, job_id: str, arguments: dict[str, Any]) -> None:
        run_job(spec, stores.get(), job_id, arguments, worker=task.request.hostname or "")

    run.__name__ = spec.name
    run.__doc__ = spec.description
    app.task(**options)(run)
