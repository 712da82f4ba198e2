"""Prometheus metrics of the server (`/metrics`), with `prometheus-client`.

Label sets are bounded: `tool` is a registered job's name, `outcome`, `result` and `status` come
from fixed sets, `queue` from the jobs' queues. Callers, job ids and arguments are never labels.
Queue depth and live workers are read from Redis when `/metrics` is scraped.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """The metrics a server process keeps; one registry each, so in-process runtimes do not clash."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter(
            "mcp_jobs_calls", "Tool calls by tool and outcome (succeeded, failed, cancelled, "
            "handed_off, refused, error)", ["tool", "outcome"], registry=r
        )  # fmt: skip
        self.tasks = Counter("mcp_jobs_tasks_created", "Tool calls started as tasks, by tool", ["tool"], registry=r)
        self.queue_wait = Histogram(
            "mcp_jobs_queue_wait_seconds",
            "From a call's job being queued to a worker starting it",
            ["tool"],
            buckets=SECONDS,
            registry=r,
        )
        self.run_time = Histogram(
            "mcp_jobs_run_seconds",
            "From a worker starting a job to its outcome (the worker's clock)",
            ["tool"],
            buckets=SECONDS,
            registry=r,
        )
        self.step_time = Histogram(
            "mcp_jobs_step_seconds",
            "How long each step of a job took: from one progress message to the next (its step timeline)",
            ["tool"],
            buckets=SECONDS,
            registry=r,
        )
        self.progress_lag = Histogram(
            "mcp_jobs_progress_lag_seconds",
            "From a worker's progress report to the server receiving it (clocks of both machines)",
            buckets=SECONDS[:12],
            registry=r,
        )
        self.notifications = Counter(
            "mcp_jobs_notifications",
            "Job progress updates by what the gate did: sent, coalesced (replaced by a later one within the rate cap) "
            "or dropped (not increasing)",
            ["result"],
            registry=r,
        )
        # Multiprocess modes (`serve --processes N`): calls in flight add up over the live
        # processes; the two read from Redis are the same for all, so the latest reading counts.
        self.in_flight = Gauge(
            "mcp_jobs_calls_in_flight",
            "Streaming calls the server is following",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "mcp_jobs_queue_depth", "Jobs waiting in a Celery queue (Redis broker)", ["queue"], registry=r,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.workers_alive = Gauge(
            "mcp_jobs_workers_alive", "Workers announcing themselves for a queue", ["queue"], registry=r,
            multiprocess_mode="mostrecent",
        )  # fmt: skip

    def render(self) -> bytes:
        """This process's metrics or, under `serve --processes N` (prometheus-client's multiprocess
        mode, set up by the supervisor), those of all the processes together."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        together = CollectorRegistry()
        multiprocess.MultiProcessCollector(together)  # type: ignore[no-untyped-call]
        return generate_latest(together)
