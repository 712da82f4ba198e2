"""Throughput and per-job overhead, each against its baseline in the same run.

- Server throughput: notifications/s one server process forwards (rate cap off, jobs reporting
  as fast as they can) against the SDK server pushing `report_progress` in a loop, same client.
- Per-job overhead: a zero-step job end to end against a bare Celery no-op round trip on the
  same broker (Celery's own result backend) and a direct SDK tool, one call at a time.
- Job throughput: no-op jobs/s through the server against bare Celery no-ops/s, same workers.

Beside each wall-clock figure, the server process's own CPU time (user + system, from psutil) for
the same work: on a 2-core machine shared by client, server, workers and Redis, the wall clock
says as much about the neighbours as about the server, while CPU seconds per notification or per
call say what one server process costs, which is what decides how far it scales.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TypeVar

import anyio
import psutil
from mcp import Client

from bench.measure import Row, p50
from bench.stack import bare_celery_worker, bench_stack, sdk_server, sdk_server_pid

SESSIONS = 4

T = TypeVar("T")


def with_cpu(pids: list[int], work: Callable[[], Awaitable[T]]) -> tuple[T, list[float]]:
    """Run `work` and return its value and the CPU seconds (user + system) each of the processes
    `pids` spent meanwhile."""
    processes = [psutil.Process(pid) for pid in pids]
    before = [process.cpu_times() for process in processes]
    value = anyio.run(work)
    after = [process.cpu_times() for process in processes]
    return value, [(a.user - b.user) + (a.system - b.system) for a, b in zip(after, before, strict=True)]


class Counter:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.count += 1


async def notifications_delivered(url: str, tool: str, arguments: dict[str, object], calls: int) -> tuple[int, float]:
    """Run `calls` concurrent calls; return how many progress notifications arrived, and in how
    many seconds. (The bridge may deliver fewer than its jobs report: a call whose events come
    faster than it can send them collapses them into the latest state.)"""
    counter = Counter()
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url, mode="auto")) for _ in range(SESSIONS)]
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(lambda c=clients[i % SESSIONS]: c.call_tool(tool, arguments, progress_callback=counter))
        elapsed = time.perf_counter() - started
    return counter.count, elapsed


async def calls_per_second(url: str, tool: str, count: int) -> float:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url, mode="auto")) for _ in range(SESSIONS)]
        for client in clients:
            await client.call_tool(tool, {})
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(clients[i % SESSIONS].call_tool, tool, {})
        return count / (time.perf_counter() - started)


async def interleaved_latencies(bridge_url: str, sdk_url: str, sdk_wait_url: str, count: int) -> dict[str, list[float]]:
    """One zero-step call at a time, taking turns: the bridge, bare Celery, a plain SDK tool, and a
    plain SDK tool that takes as long as the bridge's call (on a server process of its own, so each
    process's CPU is one kind of call). Taking turns call by call puts them all in the same moments
    of a machine whose speed drifts, so their differences are theirs and not the drift's."""
    from bench.bare_celery import noop

    latencies: dict[str, list[float]] = {"bridge": [], "celery": [], "sdk": [], "sdk_wait": []}
    async with AsyncExitStack() as stack:
        bridge, sdk, sdk_wait = [
            await stack.enter_async_context(Client(url, mode="auto")) for url in (bridge_url, sdk_url, sdk_wait_url)
        ]
        warm_up = []
        for _ in range(10):  # tools/list, connections, first tasks; and how long a bridge call takes
            t0 = time.perf_counter()
            await bridge.call_tool("noop", {})
            warm_up.append(time.perf_counter() - t0)
        as_long = {"seconds": p50(warm_up)}
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "bridge": lambda: bridge.call_tool("noop", {}),
            "celery": lambda: anyio.to_thread.run_sync(lambda: noop.delay().get(timeout=30)),
            "sdk": lambda: sdk.call_tool("sdk_noop", {}),
            "sdk_wait": lambda: sdk_wait.call_tool("sdk_wait", as_long),
        }
        for name, call in calls.items():
            if name != "bridge":
                await call()
        for _ in range(count):
            for name, call in calls.items():
                t0 = time.perf_counter()
                await call()
                latencies[name].append(time.perf_counter() - t0)
    return latencies


def bare_celery_per_second(count: int) -> float:
    from bench.bare_celery import noop

    started = time.perf_counter()
    results = [noop.delay() for _ in range(count)]
    for result in results:
        result.get(timeout=120)
    return count / (time.perf_counter() - started)


def server_throughput(quick: bool) -> list[Row]:
    calls, count = 8, (1000 if quick else 3000)
    with bench_stack(workers=2, concurrency=4, pool="threads", progress_rate="1000000") as stack:
        (bridge, bridge_s), [bridge_cpu] = with_cpu(
            [stack.server.pid], lambda: notifications_delivered(stack.url, "burst", {"steps": count}, calls)
        )
    with sdk_server() as url:
        (sdk, sdk_s), [sdk_cpu] = with_cpu(
            [sdk_server_pid(url)], lambda: notifications_delivered(url, "sdk_push", {"count": count}, calls)
        )
    return [
        Row(
            "3 server throughput",
            "notifications per server CPU-second",
            bridge / bridge_cpu,
            "/s",
            sdk / sdk_cpu,
            "≥ 0.8×",
            f"{calls} calls x {count} steps; what one server process can forward; baseline: SDK report_progress loop",
        ),
        Row(
            "3 server throughput",
            "notifications/s forwarded (wall clock)",
            bridge / bridge_s,
            "/s",
            sdk / sdk_s,
            "",
            f"{bridge:,} of {calls * count:,} reported steps sent, the rest collapsed into later states; "
            "the 2 cores also run the workers and Redis for the bridge, not for the baseline",
        ),
    ]


def overhead_and_job_throughput(quick: bool) -> list[Row]:
    import os

    sequential, burst = (100, 300) if quick else (300, 1000)
    with bench_stack(workers=2, concurrency=2) as stack, sdk_server() as sdk_url, sdk_server() as sdk_wait_url:
        os.environ["MCP_JOBS_REDIS_URL"] = stack.redis.url
        from bench import bare_celery

        bare_celery.app.conf.broker_url = bare_celery.app.conf.result_backend = stack.redis.url
        pids = [stack.server.pid, sdk_server_pid(sdk_url), sdk_server_pid(sdk_wait_url)]
        with bare_celery_worker(stack.redis.url, concurrency=2, processes=2) as bare_workers:
            latencies, cpu = with_cpu(pids, lambda: interleaved_latencies(stack.url, sdk_url, sdk_wait_url, sequential))
            for worker in bare_workers:  # the bridge's workers get the capacity alone, then the bare app
                worker.stop()
            bridge_rate = anyio.run(calls_per_second, stack.url, "noop", burst)
        for worker in stack.workers:
            worker.stop()
        with bare_celery_worker(stack.redis.url, concurrency=2, processes=2):
            celery_rate = bare_celery_per_second(burst)
        sdk_rate = anyio.run(calls_per_second, sdk_url, "sdk_noop", burst)
    bridge_lat, celery_lat, sdk_lat = latencies["bridge"], latencies["celery"], latencies["sdk"]
    # CPU per call of each server process over the same turns (the bridge's warm-up included).
    bridge_call_cpu, sdk_call_cpu, sdk_wait_call_cpu = (
        1000 * seconds / calls
        for seconds, calls in zip(cpu, (sequential + 10, sequential + 1, sequential + 1), strict=True)
    )
    b, c, s = (1000 * p50(x) for x in (bridge_lat, celery_lat, sdk_lat))
    return [
        Row(
            "4 per-job overhead",
            "zero-step job p50",
            b,
            "ms",
            c + s,
            "",
            f"baseline: Celery no-op {c:.2f} + SDK tool {s:.2f}",
        ),
        Row(
            "4 per-job overhead",
            "added by the bridge p50",
            b - c - s,
            "ms",
            target="≤ 0.5 ms",
            note="bridge - Celery - SDK, the three taking turns call by call",
        ),
        Row(
            "4 per-job overhead",
            "server CPU per call",
            bridge_call_cpu,
            "ms",
            sdk_wait_call_cpu,
            note=f"baseline: SDK tool as long as the call ({sdk_call_cpu:.2f} ms for one answered at once)",
        ),
        Row(
            "4 per-job overhead",
            "server CPU added per call",
            bridge_call_cpu - sdk_wait_call_cpu,
            "ms",
            target="≤ 0.25 ms",
            note="the bridge's own share: bridge - SDK tool as long, taking turns call by call",
        ),
        Row("4 per-job overhead", "zero-step job p50 vs Celery", b, "ms", c),
        Row("4 per-job overhead", "zero-step job p50 vs SDK tool", b, "ms", s),
        Row(
            "5 job throughput",
            "no-op jobs/s through the server",
            bridge_rate,
            "/s",
            celery_rate,
            "≥ 0.8×",
            f"{burst} jobs, 1 server process, 2 workers x 2 processes; baseline: bare Celery",
        ),
        Row(
            "5 job throughput",
            "no-op jobs/s vs the SDK's own ceiling",
            bridge_rate,
            "/s",
            sdk_rate,
            "",
            "baseline: a plain SDK tool that returns at once, same client: what any MCP server here reaches",
        ),
    ]
