"""The baseline: a plain `mcp` SDK server whose tools do the work in-process (no Celery, no Redis).

python -m bench.sdk_server --port 8123
"""

from __future__ import annotations

import argparse
import time

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("sdk-baseline")


@server.tool()
async def sdk_noop() -> int:
    """Return at once."""
    return 0


@server.tool()
async def sdk_wait(seconds: float) -> int:
    """Return after `seconds` (a call as long as a job's, without the job)."""
    await anyio.sleep(seconds)
    return 0


@server.tool()
async def sdk_stamped(steps: int, interval: float, ctx: Context) -> int:
    """Report `steps` steps `interval` seconds apart, each message carrying its send time."""
    next_at = time.monotonic()
    for step in range(1, steps + 1):
        next_at += interval
        await anyio.sleep(max(0.0, next_at - time.monotonic()))
        await ctx.report_progress(step, steps, repr(time.time()))
    return steps


@server.tool()
async def sdk_hold(seconds: float, ctx: Context) -> int:
    """Stay in flight for `seconds`, reporting once a second with a time stamp."""
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        await anyio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        step += 1
        await ctx.report_progress(step, None, repr(time.time()))
    return step


@server.tool()
async def sdk_push(count: int, ctx: Context) -> int:
    """Report `count` progress notifications as fast as the server can send them."""
    for step in range(1, count + 1):
        await ctx.report_progress(step, count)
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = server.streamable_http_app(host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
