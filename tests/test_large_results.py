"""Large results never travel over the shared pub/sub connection: the terminal event only says
the job is done, and the server reads the result from the snapshot. Several multi-megabyte
results in parallel with a stream of small calls all arrive, and the connection stays up."""

from __future__ import annotations

import threading

import anyio
import pytest
from mcp import Client

from tests.conftest import Stack

pytestmark = pytest.mark.anyio

BIG = 3_000_000


async def test_multi_megabyte_results_beside_small_calls(stack: Stack) -> None:
    redis = stack.redis()
    pubsub = redis.pubsub()
    pubsub.psubscribe(stack.keys.job("*"))
    sizes: list[int] = []
    stop = threading.Event()

    def measure() -> None:  # what goes over pub/sub, seen from another subscriber
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                sizes.append(len(message["data"]))

    reader = threading.Thread(target=measure, daemon=True)
    reader.start()
    lost_before = sum("pub/sub connection lost" in line for line in stack.server.lines)
    big: list[int] = []
    small: list[int] = []
    try:
        async with Client(stack.http_url) as client, anyio.create_task_group() as tg:

            async def large() -> None:
                result = await client.call_tool("big_result", {"size": BIG})
                assert not result.is_error, result.content
                big.append(len(result.structured_content["result"]))  # type: ignore[index]

            async def smalls() -> None:
                for n in range(20):
                    result = await client.call_tool("echo", {"text": f"s{n}", "number": n, "item": {"name": "x"}})
                    assert not result.is_error and result.structured_content["number"] == n  # type: ignore[index]
                    small.append(n)

            for _ in range(4):
                tg.start_soon(large)
            tg.start_soon(smalls)
    finally:
        stop.set()
        reader.join(5)
        pubsub.close()
    assert big == [BIG] * 4 and small == list(range(20))
    assert sizes and max(sizes) < 4096, f"largest event {max(sizes)} bytes: results stay out of pub/sub"
    assert sum("pub/sub connection lost" in line for line in stack.server.lines) == lost_before
