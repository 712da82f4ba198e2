"""Scale: many calls in flight on one server process, and jobs/s as worker processes are added.

In flight: N calls of a job that stays busy for a while. They are sent over raw HTTP (2025-11-25
sessions) so the client stays light; the server's RSS and Redis connections are read once all N
calls have their job queued (its snapshot written). Jobs run on a threads pool, so 100 run at once and the rest wait
in the queue: a call is in flight on the server either way. Progress latency is measured on the
running ones (each reports once a second, stamped).
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack

import anyio
import httpx
import psutil
import redis

from bench.measure import Row, p50, pct
from bench.stack import bench_stack, sdk_server, sdk_server_pid
from tests.support.rawclient import open_session, tool_call

CALLS_PER_CLIENT = 100


async def _in_flight(
    url: str, tool: str, calls: int, server_pid: int, redis_url: str | None = None, namespace: str = ""
) -> dict[str, float]:
    """Hold `calls` calls of `tool` open; measure the server once they are all in flight."""
    latencies: list[float] = []
    admin = redis.Redis.from_url(redis_url, decode_responses=True) if redis_url else None
    server = psutil.Process(server_pid)
    idle_rss = server.memory_info().rss
    idle_connections = _server_connections(admin) if admin else 0
    in_flight = 0
    # Many small clients: httpx's pool does linear work per request, so one pool with 10,000 open
    # streams would make the client, not the server, the bottleneck.
    clients = [
        httpx.AsyncClient(timeout=httpx.Timeout(None, connect=60), limits=httpx.Limits(max_connections=None))
        for _ in range(-(-calls // CALLS_PER_CLIENT))
    ]
    async with AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        sessions = [await open_session(client, url) for client in clients]

        async def call(i: int) -> None:
            nonlocal in_flight
            k = i // CALLS_PER_CLIENT
            async with clients[k].stream(
                "POST", url, json=tool_call(i + 1, tool, {"seconds": 600}, i), headers=sessions[k]
            ) as stream:
                in_flight += 1
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and '"notifications/progress"' in line:
                        message = json.loads(line[5:])["params"].get("message", "")
                        try:
                            latencies.append(time.time() - float(message))
                        except ValueError:
                            pass  # a queued notice

        tasks = [asyncio.ensure_future(call(i)) for i in range(calls)]
        deadline = time.monotonic() + 300
        # In flight: the response stream is open, and (for the bridge) the job queued.
        while time.monotonic() < deadline and (in_flight < calls or (admin and _queued(admin, namespace) < calls)):
            await asyncio.sleep(0.5)
        queued = _queued(admin, namespace) if admin else in_flight
        await asyncio.sleep(1)  # let the first notices and allocations settle
        latencies.clear()
        await asyncio.sleep(5)  # a window of progress at full scale (jobs report once a second)
        figures = {
            "in_flight": queued,
            "rss_per_call_kb": (server.memory_info().rss - idle_rss) / 1024 / max(1, queued),
            "connections_idle": idle_connections,
            "connections_loaded": _server_connections(admin) if admin else 0,
            "latency_p50_ms": 1000 * p50(latencies),
            "latency_p99_ms": 1000 * pct(latencies, 0.99),
            "samples": len(latencies),
        }
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return figures


def _queued(admin: redis.Redis, namespace: str) -> int:
    """Jobs whose first snapshot is written (their calls are followed on the reply channel)."""
    return sum(1 for _ in admin.scan_iter(match=f"{namespace}:job:*", _type="HASH", count=1000))


def _server_connections(admin: redis.Redis) -> int:
    return sum(1 for c in admin.client_list() if c.get("name") == "mcp-jobs-server")


def in_flight(quick: bool) -> list[Row]:
    with sdk_server() as url:  # the SDK's own memory per held HTTP call (it barely varies with N)
        sdk = anyio.run(_in_flight, url, "sdk_hold", 1000, sdk_server_pid(url))
    rows: list[Row] = []
    for calls in (1000,) if quick else (1000, 10_000):
        with bench_stack(workers=1, concurrency=100, pool="threads", keepalive_interval="60") as stack:
            f = anyio.run(
                _in_flight, stack.url, "hold", calls, stack.server.pid, stack.redis.url, stack.env["MCP_JOBS_NAMESPACE"]
            )
        scenario = f"6 scale {calls:,} in flight"
        rows += [
            Row(scenario, "calls in flight (job queued)", f["in_flight"], "calls"),
            Row(
                scenario,
                "server Redis connections",
                f["connections_loaded"],
                "conns",
                f["connections_idle"],
                "constant",
                "bounded pool of 50 + 1 pub/sub; baseline: idle",
            ),
            Row(
                scenario,
                "server RSS per in-flight call",
                f["rss_per_call_kb"],
                "KB",
                sdk["rss_per_call_kb"],
                "≤ 50 KB",
                "baseline: plain SDK tool holding 1,000 calls",
            ),
            Row(
                scenario,
                "progress latency p50",
                f["latency_p50_ms"],
                "ms",
                note=f"{f['samples']} samples from 100 running jobs",
            ),
            Row(scenario, "progress latency p99", f["latency_p99_ms"], "ms"),
        ]
    return rows


async def _primes_per_second(url: str, jobs: int) -> float:
    from mcp import Client

    async with Client(url, mode="auto") as client:
        await client.call_tool("count_primes", {"limit": 1000})
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(jobs):
                tg.start_soon(client.call_tool, "count_primes", {"limit": 20_000_000, "chunks": 5})
        return jobs / (time.perf_counter() - started)


def scaling_out(quick: bool) -> list[Row]:
    jobs = 8 if quick else 16
    rates = {}
    for workers in (1, 2, 4):
        with bench_stack(workers=workers, concurrency=1) as stack:
            rates[workers] = anyio.run(_primes_per_second, stack.url, jobs)
    return [
        Row(
            "7 scaling out",
            f"count_primes jobs/s, {n} worker process{'es' if n > 1 else ''}",
            rate,
            "/s",
            rates[1],
            note="baseline: 1 process; 2 cores",
        )
        for n, rate in rates.items()
    ]
