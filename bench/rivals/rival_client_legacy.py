"""Benchmark client on the official `mcp` 1.x client (`ClientSession` + `streamablehttp_client`),
for mcp-celery, which needs mcp<2 (its own virtualenv). Same modes and output as rival_client.py.
"""

from __future__ import annotations

import argparse
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from rival_common import burst, run_cli


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in getattr(result, "content", []) or [])


async def _session(stack: AsyncExitStack, url: str) -> ClientSession:
    read, write, _ = await stack.enter_async_context(streamablehttp_client(url))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        sessions = [await _session(stack, args.url) for _ in range(args.sessions)]
        for session in sessions:  # warm up
            await session.call_tool(args.tool, {})

        async def call(session: ClientSession) -> None:
            result = await session.call_tool(args.tool, {})
            if result.isError or '"COMPLETED"' not in _text(result):
                raise RuntimeError(_text(result))

        return await burst(call, sessions, args.calls, args.timeout)


async def progress(args: argparse.Namespace) -> dict[str, Any]:
    events: list[list[Any]] = []

    async def callback(value: float, total: float | None, message: str | None) -> None:
        events.append([time.time(), value, message])

    with anyio.fail_after(args.timeout):
        async with AsyncExitStack() as stack:
            session = await _session(stack, args.url)
            started = time.time()
            result = await session.call_tool(
                args.tool, {"steps": args.steps, "interval": args.interval}, progress_callback=callback
            )
            ended = time.time()
            elapsed = ended - started
            await anyio.sleep(0.2)
    return {
        "events": events,
        "polled": [],
        "polls": 0,
        "result": _text(result),
        "error": result.isError,
        "elapsed": elapsed,
        "ended": ended,
    }


def main() -> None:
    run_cli(throughput, progress)


if __name__ == "__main__":
    main()
