"""The same work on each Redis topology mcp-jobs supports, in one run: no-op jobs/s through one
server and the progress lag (a worker's stamp to the client's callback), on a standalone Redis
and on a Sentinel-managed master (a replica and three sentinels beside it, the master's writes
replicated, final writes waiting for the replica's `WAIT`).

Redis Cluster is not a topology mcp-jobs runs on yet (the write script's admission, enqueue and
reply channel need the redesign the issue describes; Celery has no Cluster broker), so it has
no row here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from bench.latency import INTERVAL, stamped_calls
from bench.measure import Row, p50
from bench.stack import bench_env, bench_stack
from bench.throughput import calls_per_second
from mcp_jobs.server.dev_redis import free_port
from tests.support.processes import start_http_server, start_worker
from tests.support.sentinel import MASTER_NAME, sentinel_set

SCENARIO = "9 Redis topology"


@contextmanager
def sentinel_stack() -> Iterator[str]:
    """Two workers (2 processes each) and a server on a Sentinel-managed master; yields the MCP URL."""
    with sentinel_set() as sentinels:
        env = bench_env("redis://found-by-sentinel/0", progress_rate="1000") | {
            "MCP_JOBS_REDIS_SENTINELS": sentinels.nodes,
            "MCP_JOBS_REDIS_SENTINEL_MASTER": MASTER_NAME,
        }
        workers = [start_worker(env, f"bench-s{i}-{uuid.uuid4().hex[:4]}", concurrency=2) for i in range(2)]
        port = free_port()
        server = start_http_server(env, port)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.stop()
            for worker in workers:
                worker.stop()


def measure(url: str, jobs: int, steps: int) -> tuple[float, float]:
    """No-op jobs/s, and the progress lag p50 (ms) of one stamped call."""
    rate = anyio.run(calls_per_second, url, "noop", jobs)
    (stamps,), _ = anyio.run(stamped_calls, url, "stamped", {"steps": steps, "interval": INTERVAL})
    return rate, 1000 * p50(stamps.latencies)


def topologies(quick: bool) -> list[Row]:
    jobs, steps = (200, 150) if quick else (600, 500)
    with bench_stack(workers=2, concurrency=2, progress_rate="1000") as stack:
        standalone = measure(stack.url, jobs, steps)
    with sentinel_stack() as url:
        sentinel = measure(url, jobs, steps)
    note = f"{jobs} no-op jobs, 1 server process, 2 workers x 2 processes; baseline: standalone Redis"
    return [
        Row(SCENARIO, "no-op jobs/s, standalone Redis", standalone[0], "/s", note=note),
        Row(SCENARIO, "no-op jobs/s, Sentinel (master + replica)", sentinel[0], "/s", standalone[0], note=note),
        Row(
            SCENARIO,
            "progress lag p50, standalone Redis",
            standalone[1],
            "ms",
            note=f"{steps} steps {INTERVAL} s apart",
        ),
        Row(
            SCENARIO,
            "progress lag p50, Sentinel (master + replica)",
            sentinel[1],
            "ms",
            standalone[1],
            note="baseline: standalone Redis",
        ),
    ]
