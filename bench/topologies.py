"""The same work on each Redis topology mcp-jobs supports, in one run: no-op jobs/s through one
server and the progress lag (a worker's stamp to the client's callback), on a standalone Redis,
on a Sentinel-managed master (a replica and three sentinels beside it, the master's writes
replicated, final writes waiting for the replica's `WAIT`) and on a Redis Cluster of 1, 2 and 3
masters (the broker a standalone Redis beside it; events on sharded pub/sub, each call
subscribing to its job's channel, the message sent after the snapshot).
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
from mcp_jobs.server.dev_redis import RedisProcess, free_port
from tests.support.cluster import cluster_set
from tests.support.processes import start_http_server, start_worker
from tests.support.sentinel import MASTER_NAME, sentinel_set

SCENARIO = "9 Redis topology"
BASELINE = "standalone Redis"
CLUSTER_MASTERS = (1, 2, 3)


@contextmanager
def served(env: dict[str, str]) -> Iterator[str]:
    """Two workers (2 processes each) and a server with `env`; yields the MCP URL."""
    workers = [start_worker(env, f"bench-t{i}-{uuid.uuid4().hex[:4]}", concurrency=2) for i in range(2)]
    port = free_port()
    server = start_http_server(env, port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.stop()
        for worker in workers:
            worker.stop()


@contextmanager
def sentinel_stack() -> Iterator[str]:
    """The stack on a Sentinel-managed master."""
    with sentinel_set() as sentinels:
        env = bench_env("redis://found-by-sentinel/0", progress_rate="1000") | {
            "MCP_JOBS_REDIS_SENTINELS": sentinels.nodes,
            "MCP_JOBS_REDIS_SENTINEL_MASTER": MASTER_NAME,
        }
        with served(env) as url:
            yield url


@contextmanager
def cluster_stack(masters: int) -> Iterator[str]:
    """The stack on a Redis Cluster of `masters` nodes, its broker a standalone Redis."""
    with cluster_set(masters) as cluster, RedisProcess(prefer_path=True) as broker:
        env = bench_env(cluster.url, progress_rate="1000") | {
            "MCP_JOBS_REDIS_CLUSTER": "true",
            "MCP_JOBS_BROKER_URL": broker.url,
        }
        with served(env) as url:
            yield url


def measure(url: str, jobs: int, steps: int) -> tuple[float, float]:
    """No-op jobs/s, and the progress lag p50 (ms) of one stamped call."""
    rate = anyio.run(calls_per_second, url, "noop", jobs)
    (stamps,), _ = anyio.run(stamped_calls, url, "stamped", {"steps": steps, "interval": INTERVAL})
    return rate, 1000 * p50(stamps.latencies)


def topologies(quick: bool) -> list[Row]:
    jobs, steps = (200, 150) if quick else (600, 500)
    with bench_stack(workers=2, concurrency=2, progress_rate="1000") as stack:
        standalone = measure(stack.url, jobs, steps)
    measured = {BASELINE: standalone}
    with sentinel_stack() as url:
        measured["Sentinel (master + replica)"] = measure(url, jobs, steps)
    for masters in CLUSTER_MASTERS:
        with cluster_stack(masters) as url:
            measured[f"Redis Cluster, {masters} master{'s' if masters > 1 else ''}"] = measure(url, jobs, steps)
    note = f"{jobs} no-op jobs, 1 server process, 2 workers x 2 processes; baseline: standalone Redis"
    rows = [
        Row(SCENARIO, f"no-op jobs/s, {name}", rate, "/s", None if name == BASELINE else standalone[0], note=note)
        for name, (rate, _) in measured.items()
    ]
    lag_note = f"{steps} steps {INTERVAL} s apart; baseline: standalone Redis"
    rows += [
        Row(
            SCENARIO, f"progress lag p50, {name}", lag, "ms", None if name == BASELINE else standalone[1], note=lag_note
        )
        for name, (_, lag) in measured.items()
    ]
    return rows
