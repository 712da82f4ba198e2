"""FastMCP 4 + fastmcp-tasks (Docket) server for bench.rivals; runs in the fastmcp virtualenv.

    python rival_fastmcp_server.py PORT              # the HTTP server
    python -m fastmcp_tasks.worker_cli worker rival_fastmcp_server.py   # a worker process

Configuration from the environment: BENCH_REDIS_URL, BENCH_DOCKET_NAME, BENCH_DOCKET_CONCURRENCY
(the server process is started with 0 so that only the worker processes run jobs).

Progress uses the documented background-task API: the `Progress` dependency (Docket's execution
progress in Redis: set_total / increment / set_message). The client sees it only as the task's
`statusMessage` in `tasks/get` responses; every step's message is the wall-clock time it was reported.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta

from fastmcp import FastMCP
from fastmcp.dependencies import Progress
from fastmcp.utilities.tasks import TaskConfig
from fastmcp_tasks import TasksExtension

mcp = FastMCP("fastmcp-bench")
mcp.add_extension(
    TasksExtension(
        url=os.environ.get("BENCH_REDIS_URL", "memory://"),
        name=os.environ.get("BENCH_DOCKET_NAME", "bench"),
        concurrency=int(os.environ.get("BENCH_DOCKET_CONCURRENCY", "10")),
    )
)

REQUIRED = TaskConfig(mode="required")  # always a background task, never inline in the server
FAST_POLL = TaskConfig(mode="required", poll_interval=timedelta(milliseconds=100))


@mcp.tool(task=REQUIRED)
async def noop() -> int:
    """Do nothing."""
    return 0


async def _stamped(progress: Progress, steps: int, interval: float) -> list[float]:
    stamps = []
    await progress.set_total(steps)
    next_at = time.monotonic()
    for _ in range(steps):
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        stamps.append(time.time())
        await progress.increment()
        await progress.set_message(repr(stamps[-1]))
    return stamps


@mcp.tool(task=REQUIRED)
async def stamped(steps: int, interval: float, progress: Progress = Progress()) -> list[float]:  # noqa: B008 (the documented pattern)
    """`steps` steps `interval` s apart; each step's message is its wall-clock time, returned as a list too (default pollInterval 5 s)."""
    return await _stamped(progress, steps, interval)


@mcp.tool(task=FAST_POLL)
async def stamped_fastpoll(steps: int, interval: float, progress: Progress = Progress()) -> list[float]:  # noqa: B008 (the documented pattern)
    """The same job with the task's advertised pollInterval tuned down to 0.1 s."""
    return await _stamped(progress, steps, interval)


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", show_banner=False)
