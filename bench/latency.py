"""Progress latency, worker step to client callback, alone and under load.

Each progress message of the `stamped` jobs (and of the SDK baseline's `sdk_stamped` tool) carries
the wall-clock time it was reported; the client's callback subtracts it from its own clock.

A second, independent measure starts the clock at Redis instead: a MONITOR connection records
Redis's own time for every PUBLISH of a stamp (the worker's script, or the raw publisher), so the
worker's side of the hop is left out of both the bridge and its pub/sub baseline.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio
import redis.asyncio as aioredis
from mcp import Client

from bench.measure import Row, p50, pct
from bench.stack import bench_stack, sdk_server

INTERVAL = 0.01


class Stamps:
    """A progress callback collecting (now - stamp), when each stamp arrived, and the last
    progress value per call."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.arrivals: dict[str, float] = {}
        self.last: float = 0.0
        self.count = 0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        now = time.time()
        self.count += 1
        self.last = progress
        try:
            self.latencies.append(now - float(message or ""))
            self.arrivals[message or ""] = now
        except ValueError:
            pass  # not a stamped message (the total announcement, a queued notice)


T = TypeVar("T")
STAMP = re.compile(r'^PUBLISH \S+:job:\S+ .*"message":"([0-9.]+)"|^PUBLISH bench:raw ([0-9.]+)$')


async def with_publish_times(redis_url: str, work: Callable[[], Awaitable[T]]) -> tuple[T, dict[str, float]]:
    """Run `work` while MONITOR records Redis's own time of each PUBLISH of a stamp."""
    published: dict[str, float] = {}
    client = aioredis.Redis.from_url(redis_url)
    monitoring = anyio.Event()

    async def monitor() -> None:
        async with client.monitor() as commands:
            await client.ping()  # shows up in MONITOR once it is on
            async for command in commands.listen():
                monitoring.set()
                if match := STAMP.match(command["command"]):
                    published.setdefault(match.group(1) or match.group(2), command["time"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor)
        with anyio.fail_after(10):
            await monitoring.wait()
        value = await work()
        tg.cancel_scope.cancel()
    await client.aclose()
    return value, published


def since_redis(arrivals: dict[str, float], published: dict[str, float]) -> list[float]:
    """Arrival time - Redis's PUBLISH time, per stamp seen on both sides."""
    return [arrived - published[stamp] for stamp, arrived in arrivals.items() if stamp in published]


async def stamped_calls(
    url: str, tool: str, arguments: dict[str, Any], calls: int = 1, sessions: int = 1
) -> tuple[list[Stamps], float]:
    """Run `calls` concurrent calls of a stamped tool; return their stamps and the elapsed seconds."""
    stamps = [Stamps() for _ in range(calls)]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url, mode="auto")) for _ in range(sessions)]
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i, stamp in enumerate(stamps):
                tg.start_soon(
                    lambda c=clients[i % sessions], s=stamp: c.call_tool(tool, arguments, progress_callback=s)
                )
        elapsed = time.perf_counter() - started
        await anyio.sleep(0.2)  # progress callbacks run in tasks of their own: let the last ones land
    return stamps, elapsed


async def raw_pubsub_latencies(redis_url: str, count: int) -> Stamps:
    """The raw Redis hop: a publisher process to an asyncio subscriber, same message rate."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("bench:raw")
    publisher = subprocess.Popen(
        [sys.executable, "-m", "bench.raw_publisher", redis_url, "bench:raw", str(count), str(INTERVAL)]
    )
    stamps = Stamps()
    try:
        with anyio.fail_after(60):
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                if message["data"] == b"end":
                    break
                await stamps(0, None, message["data"].decode())
    finally:
        publisher.wait(30)
        await pubsub.aclose()
        await client.aclose()
    return stamps


def progress_latency(quick: bool) -> list[Row]:
    steps = 150 if quick else 500
    arguments = {"steps": steps, "interval": INTERVAL}
    # A rate cap far above 1/INTERVAL: this measures the hop, not the coalescing.
    with bench_stack(workers=1, concurrency=1, progress_rate="1000") as stack:
        ((bridge,), _), bridge_published = anyio.run(
            with_publish_times, stack.redis.url, lambda: stamped_calls(stack.url, "stamped", arguments)
        )
        raw, raw_published = anyio.run(
            with_publish_times, stack.redis.url, lambda: raw_pubsub_latencies(stack.redis.url, steps)
        )
    with sdk_server() as url:
        (sdk,), _ = anyio.run(stamped_calls, url, "sdk_stamped", arguments)
    b, r, s = ([1000 * x for x in stamps.latencies] for stamps in (bridge, raw, sdk))
    b_redis = [1000 * x for x in since_redis(bridge.arrivals, bridge_published)]
    r_redis = [1000 * x for x in since_redis(raw.arrivals, raw_published)]
    return [
        Row(
            "1 progress latency",
            "bridge p50",
            p50(b),
            "ms",
            p50(r) + p50(s),
            "≤ 1.3×",
            f"baseline: pub/sub {p50(r):.2f} + SDK {p50(s):.2f}",
        ),
        Row(
            "1 progress latency",
            "bridge p99",
            pct(b, 0.99),
            "ms",
            pct(r, 0.99) + pct(s, 0.99),
            "≤ 2×",
            f"baseline: pub/sub {pct(r, 0.99):.2f} + SDK {pct(s, 0.99):.2f}",
        ),
        Row(
            "1 progress latency",
            "bridge p50 from Redis's PUBLISH",
            p50(b_redis),
            "ms",
            p50(r_redis) + p50(s),
            "≤ 1.3×",
            f"Redis time (MONITOR) to callback; baseline: pub/sub {p50(r_redis):.2f} + SDK {p50(s):.2f}; "
            f"{len(b_redis)} of {len(b)} steps",
        ),
    ]


def under_load(quick: bool) -> list[Row]:
    calls, seconds = 50, (3 if quick else 4)
    steps = int(seconds / INTERVAL)
    arguments = {"steps": steps, "interval": INTERVAL}
    # Threads: 50 jobs that mostly wait fit two worker processes.
    with bench_stack(workers=2, concurrency=calls // 2 + 1, pool="threads") as stack:
        stamps, elapsed = anyio.run(stamped_calls, stack.url, "stamped", arguments, calls, 5)
        rate = float(stack.env.get("MCP_JOBS_PROGRESS_RATE", "15"))
    latencies = [1000 * x for s in stamps for x in s.latencies]
    delivered = sum(s.count for s in stamps)
    finals = sum(s.last == steps for s in stamps)
    return [
        Row("2 under load", "offered events/s", calls * steps / elapsed, "/s", note=f"{calls} calls x 100 steps/s"),
        Row(
            "2 under load",
            "delivered notifications/s",
            delivered / elapsed,
            "/s",
            calls * rate,
            note=f"baseline: the cap, {calls} x {rate:g}/s",
        ),
        Row("2 under load", "forwarded latency p50", p50(latencies), "ms"),
        Row("2 under load", "forwarded latency p99", pct(latencies, 0.99), "ms", target="≤ 20 ms"),
        Row("2 under load", "calls whose final state arrived", finals, f"of {calls}", target=f"{calls}"),
    ]
