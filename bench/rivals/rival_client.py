"""Benchmark client on the official `mcp` 2.x client, for mcp-jobs and FastMCP (its own virtualenv).

    python rival_client.py throughput URL --tool noop --calls N --sessions S [--tasks]
    python rival_client.py progress URL --tool stamped --steps 20 --interval 0.25 [--tasks]

Prints one JSON object of raw observations; bench/rivals.py turns them into figures.

--tasks registers fastmcp-tasks' `TasksClientExtension` (the client half of the MCP tasks
extension, which a FastMCP `Client` registers by itself): the client advertises task support, the
server answers `tools/call` with a task handle, and the extension polls `tasks/get` to the result.
In `progress` mode with --tasks, the call's `progress_callback` is passed (it gets nothing: FastMCP
sends no progress notifications for a background task) and the task is then driven by the
extension's own poll loop (20 ms doubling up to the server's advertised pollInterval), recording
each new `statusMessage`, which is how FastMCP's docs say a task's progress is observed.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp import Client
from rival_common import burst, run_cli


def _extensions(tasks: bool) -> list[Any] | None:
    if not tasks:
        return None
    from fastmcp_tasks.client import TasksClientExtension

    return [TasksClientExtension()]


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in getattr(result, "content", []) or [])


def _is_error(result: Any) -> bool:
    return bool(result.is_error)


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(Client(args.url, mode="auto", extensions=_extensions(args.tasks)))
            for _ in range(args.sessions)
        ]
        for client in clients:  # warm up: connections, tool listing
            await client.call_tool(args.tool, {})

        async def call(client: Client) -> None:
            result = await client.call_tool(args.tool, {})
            if _is_error(result):
                raise RuntimeError(_text(result))

        return await burst(call, clients, args.calls, args.timeout)


async def progress(args: argparse.Namespace) -> dict[str, Any]:
    events: list[list[Any]] = []  # [client wall-clock, progress, message] per progress callback
    polled: list[list[Any]] = []  # [client wall-clock, statusMessage] per new statusMessage (--tasks)
    polls = 0

    async def callback(value: float, total: float | None, message: str | None) -> None:
        events.append([time.time(), value, message])

    arguments = {"steps": args.steps, "interval": args.interval}
    with anyio.fail_after(args.timeout):
        async with Client(args.url, mode="auto", extensions=_extensions(args.tasks)) as client:
            await client.list_tools()
            started = time.time()
            if not args.tasks:
                result = await client.call_tool(args.tool, arguments, progress_callback=callback)
                text, error = _text(result), _is_error(result)
            else:
                from fastmcp_tasks.client import _TERMINAL_STATES, MIN_POLL_INTERVAL, _next_poll_delay, _send_get

                created = await client.session.call_tool(
                    args.tool, arguments, progress_callback=callback, allow_claimed=True
                )
                task_id = created.task_id  # a CreateTaskResult: the call was tasked
                backoff, last = MIN_POLL_INTERVAL, None
                while True:
                    current = await _send_get(client.session, task_id)
                    polls += 1
                    if current.status_message != last and current.status == "working":
                        polled.append([time.time(), current.status_message])
                        last = current.status_message
                    if current.status in _TERMINAL_STATES:
                        break
                    delay, backoff = _next_poll_delay(current.poll_interval_ms, backoff)
                    await anyio.sleep(delay)
                text, error = json.dumps(current.result), current.status != "completed"
            ended = time.time()
            elapsed = ended - started
            await anyio.sleep(0.2)  # progress callbacks run in tasks of their own: let the last ones land
    return {
        "events": events,
        "polled": polled,
        "polls": polls,
        "result": text,
        "error": error,
        "elapsed": elapsed,
        "ended": ended,
    }


def main() -> None:
    run_cli(throughput, progress, with_tasks=True)


if __name__ == "__main__":
    main()
