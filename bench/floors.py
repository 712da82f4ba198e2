"""What the parts the bridge is built from cost on this machine, measured in the same run.

Two of the targets (forwarding per server CPU-second, and the bridge's own CPU per call) are
budgets of CPU time. Whether they can be met depends on what the bridge cannot do without: one
Redis command to queue a job, and one pub/sub message per event. These figures price them with
redis-py alone (the same client settings as the server: asyncio, RESP2, hiredis), no mcp-jobs code.

- a command's round trip (PING, reply awaited; the enqueue is one such round trip);
- a pub/sub message arriving alone, 2 ms after the one before: the reader sleeps and wakes for it,
  as it does for a job's events, which come when the job gets to them; beside it, the same
  messages read from a bare asyncio stream, which tells the event loop's wake-up from redis-py's
  share (a reader of our own could save only the latter);
- a pub/sub message arriving in a burst, many already waiting in the socket buffer;
- one progress notification sent by a plain SDK tool (`report_progress` in a loop).

From them, the ceilings: the forwarding ratio a bridge could reach if receiving an event cost no
more than receiving its message (SDK send / (SDK send + receive)), and the least CPU a zero-step
call adds over an SDK tool that takes as long (which itself wakes once, when its wait ends).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import anyio
import redis
import redis.asyncio as aioredis

from bench.measure import Row
from bench.stack import sdk_server, sdk_server_pid
from bench.throughput import notifications_delivered, with_cpu
from mcp_jobs.server.dev_redis import RedisProcess

MESSAGE = b"$7\r\nmessage\r\n"

ALONE_INTERVAL = 0.002
"""Seconds between messages that arrive alone: far above a wake-up, far below a job's step."""


def publish_alone(url: str, channel: str, count: int) -> subprocess.Popen[bytes]:
    """A publisher process sending `count` messages on `channel`, `ALONE_INTERVAL` apart."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.raw_publisher", url, channel, str(count), str(ALONE_INTERVAL)]
    )


async def round_trip_cpu(url: str, count: int) -> float:
    """CPU seconds per command round trip (PING, awaited one at a time)."""
    client = aioredis.Redis.from_url(url, protocol=2)
    try:
        for _ in range(50):
            await client.ping()
        started = time.process_time()
        for _ in range(count):
            await client.ping()
        return (time.process_time() - started) / count
    finally:
        await client.aclose()


async def received_cpu(url: str, count: int, alone: bool) -> float:
    """CPU seconds per pub/sub message received, read the way the server's listener reads them.

    Alone: a publisher process sends them `ALONE_INTERVAL` apart. In a burst: all are published
    before the first is read, so they wait in the socket buffer and Redis's output buffer."""
    channel = f"floors-{uuid.uuid4().hex}"
    pubsub = aioredis.Redis.from_url(url, protocol=2).pubsub()
    publisher: subprocess.Popen[bytes] | None = None
    try:
        await pubsub.subscribe(channel)
        await pubsub.parse_response(block=True)  # the confirmation
        if alone:
            publisher = publish_alone(url, channel, count)
        else:
            with redis.Redis.from_url(url) as sync, sync.pipeline(transaction=False) as pipe:
                for i in range(count):
                    pipe.publish(channel, f'{{"seq":{i},"state":"running","progress":{i}}}')
                pipe.execute()
        await pubsub.parse_response(block=True)  # the first, before the clock starts
        started = time.process_time()
        for _ in range(count - 1):
            await pubsub.parse_response(block=True)
        return (time.process_time() - started) / (count - 1)
    finally:
        if publisher is not None:
            publisher.wait(timeout=30)
        await pubsub.aclose()


async def received_raw_cpu(url: str, count: int) -> float:
    """CPU seconds per pub/sub message arriving alone on a bare asyncio stream (no redis-py, no
    parsing: the messages are only counted), to tell the event loop's wake-up from the client's
    share."""
    channel = f"floors-{uuid.uuid4().hex}"
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    publisher: subprocess.Popen[bytes] | None = None
    try:
        writer.write(f"*2\r\n$9\r\nSUBSCRIBE\r\n${len(channel)}\r\n{channel}\r\n".encode())
        await reader.readuntil(b":1\r\n")  # the confirmation
        publisher = publish_alone(url, channel, count)
        seen = (await reader.readuntil(b"\r\n*")).count(MESSAGE)  # the first, before the clock starts
        started = time.process_time()
        while seen < count:
            seen += (await reader.read(65536)).count(MESSAGE)
        return (time.process_time() - started) / (count - 1)
    finally:
        if publisher is not None:
            publisher.wait(timeout=30)
        writer.close()


def parts_cost(quick: bool) -> list[Row]:
    commands, alone, burst = (500, 300, 5000) if quick else (2000, 1000, 20000)
    calls, pushes = 8, (500 if quick else 2000)
    server = RedisProcess(prefer_path=True).start()
    try:
        trip = anyio.run(round_trip_cpu, server.url, commands)
        one = anyio.run(received_cpu, server.url, alone, True)
        bare = anyio.run(received_raw_cpu, server.url, alone)
        many = anyio.run(received_cpu, server.url, burst, False)
    finally:
        server.close()
    with sdk_server() as url:
        (sent, _), [cpu] = with_cpu(
            [sdk_server_pid(url)], lambda: notifications_delivered(url, "sdk_push", {"count": pushes}, calls)
        )
    push = cpu / sent
    us = 1e6
    return [
        Row("0 parts", "redis-py: one command's round trip", trip * us, "µs CPU", note="a call queues its job in one"),
        Row(
            "0 parts",
            "redis-py: a pub/sub message arriving alone",
            one * us,
            "µs CPU",
            bare * us,
            note=f"{ALONE_INTERVAL * 1000:g} ms apart, one wake-up each; baseline: a bare asyncio stream reading them",
        ),
        Row("0 parts", "redis-py: a pub/sub message arriving in a burst", many * us, "µs CPU", one * us),
        Row("0 parts", "SDK: one progress notification sent", push * us, "µs CPU", note="report_progress in a loop"),
        Row(
            "0 parts",
            "forwarding ceiling, events arriving alone",
            push / (push + one),
            "×",
            target="≥ 0.8× (scenario 3)",
            note="SDK send / (SDK send + receive), with nothing else done per event",
        ),
        Row(
            "0 parts",
            "forwarding ceiling, events arriving in bursts",
            push / (push + many),
            "×",
            target="≥ 0.8× (scenario 3)",
        ),
        Row(
            "0 parts",
            "least CPU a zero-step call adds",
            (trip + one) * us,
            "µs CPU",
            target="≤ 250 µs (scenario 4)",
            note="the enqueue's round trip, and a second event (running, then succeeded): "
            "an SDK tool of the same length wakes once too, at its timer",
        ),
    ]
