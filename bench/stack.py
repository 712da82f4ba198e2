"""A throwaway mcp-jobs stack for benchmarks: Redis-compatible server, workers, HTTP server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from server.embedded import RedisProcess, free_port
from tests.processes import REPO, ManagedProcess, start_http_server, start_worker

BENCH_JOB_MODULES = "workers.examples,tests.jobs,bench.jobs"


@dataclass
class BenchStack:
    redis: RedisProcess
    env: dict[str, str]
    url: str
    server: ManagedProcess
    workers: list[ManagedProcess]


def bench_env(redis_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_JOBS_")}
    env |= {
        "MCP_JOBS_REDIS_URL": redis_url,
        "MCP_JOBS_NAMESPACE": f"bench-{uuid.uuid4().hex[:6]}",
        "MCP_JOBS_JOB_MODULES": BENCH_JOB_MODULES,
        "MCP_JOBS_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    env |= {f"MCP_JOBS_{key.upper()}": value for key, value in settings.items()}
    return env


@contextmanager
def bench_stack(workers: int = 2, concurrency: int = 2, server: bool = True, **settings: str) -> Iterator[BenchStack]:
    """Start Redis, `workers` worker processes (each with `concurrency` pool processes) and the server."""
    redis = RedisProcess(prefer_path=True).start()
    env = bench_env(redis.url, **settings)
    started: list[ManagedProcess] = []
    http: ManagedProcess | None = None
    try:
        for i in range(workers):
            started.append(start_worker(env, f"bench{i}-{uuid.uuid4().hex[:4]}", concurrency=concurrency))
        port = free_port()
        if server:
            http = start_http_server(env, port)
        yield BenchStack(redis, env, f"http://127.0.0.1:{port}/mcp", http, started)  # type: ignore[arg-type]
    finally:
        if http is not None:
            http.stop()
        for worker in started:
            worker.stop()
        redis.close()
