"""A throwaway mcp-jobs stack for benchmarks: Redis-compatible server, workers, HTTP server."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mcp_jobs.server.dev_redis import RedisProcess, free_port
from tests.support.processes import REPO, ManagedProcess, start_http_server, start_worker, wait_until

BENCH_JOB_MODULES = "mcp_jobs.examples,tests.jobs,bench.jobs"


@dataclass
class BenchStack:
    redis: RedisProcess
    env: dict[str, str]
    url: str
    server: ManagedProcess
    workers: list[ManagedProcess]


def bench_env(redis_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_JOBS_", "OTEL_"))}
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
def bench_stack(
    workers: int = 2, concurrency: int = 2, pool: str = "prefork", server: bool = True, **settings: str
) -> Iterator[BenchStack]:
    """Start Redis, `workers` worker processes (each with `concurrency` pool slots) and the server."""
    redis = RedisProcess(prefer_path=True).start()
    env = bench_env(redis.url, **settings)
    started: list[ManagedProcess] = []
    http: ManagedProcess | None = None
    try:
        for i in range(workers):
            started.append(start_worker(env, f"bench{i}-{uuid.uuid4().hex[:4]}", concurrency=concurrency, pool=pool))
        port = free_port()
        if server:
            http = start_http_server(env, port)
            if int(settings.get("processes", "1")) > 1:  # healthy as soon as one of them serves
                http.wait_for_line("server processes ready", timeout=60)
        yield BenchStack(redis, env, f"http://127.0.0.1:{port}/mcp", http, started)  # type: ignore[arg-type]
    finally:
        if http is not None:
            http.stop()
        for worker in started:
            worker.stop()
        redis.close()


_sdk_servers: dict[str, int] = {}


@contextmanager
def sdk_server() -> Iterator[str]:
    """The plain SDK baseline server; yields its MCP URL (`sdk_server_pid(url)` gives its pid)."""
    port = free_port()
    process = ManagedProcess(
        "sdk server", [sys.executable, "-m", "bench.sdk_server", "--port", str(port)], bench_env("")
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_until(lambda: _accepts(port), timeout=30, what="the SDK baseline server", process=process)
        _sdk_servers[url] = process.pid
        yield url
    finally:
        _sdk_servers.pop(url, None)
        process.stop()


def sdk_server_pid(url: str) -> int:
    return _sdk_servers[url]


@contextmanager
def bare_celery_worker(redis_url: str, concurrency: int = 2, processes: int = 2) -> Iterator[list[ManagedProcess]]:
    """Worker processes of the bare Celery baseline app on `redis_url`."""
    env = bench_env(redis_url)
    workers = []
    try:
        for i in range(processes):
            args = ["-m", "celery", "-A", "bench.bare_celery", "worker", "--loglevel", "INFO", "-c", str(concurrency)]
            args += ["-n", f"bare{i}-{uuid.uuid4().hex[:4]}@%h", "--without-mingle", "--without-gossip"]
            worker = ManagedProcess("bare celery", [sys.executable, *args], env)
            worker.wait_for_line(r"ready\.", timeout=60)
            workers.append(worker)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
