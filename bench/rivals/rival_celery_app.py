"""mcp-celery 0.2.0 rival for bench.rivals: Celery app, tasks and MCP server (mcp<2 virtualenv).

    celery -A rival_celery_app worker -c 2 ...      # a worker process
    python rival_celery_app.py PORT                 # the MCP server (streamable HTTP at /mcp)

BENCH_REDIS_URL is Celery's broker and result backend. Tools use the package's default
`AdaptiveExposureStrategy`: the tool waits for the task (polling the result backend, 0.2 s growing
to 2 s) and, while it waits, forwards the task's `progress` meta as MCP progress notifications.
Progress is reported the way that strategy reads it: `update_state(meta={"progress": ...})`.
Its notifications carry the status ("RUNNING"), not the task's message, so the stamped task
returns each step's wall-clock time and the client joins them with the progress values.
"""

from __future__ import annotations

import os
import sys
import time

from celery import Celery
from mcp.server.fastmcp import FastMCP
from mcp_celery import AsyncToolServer

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("rival_mcp_celery", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop() -> int:
    """Do nothing."""
    return 0


@app.task(name="stamped", bind=True)
def stamped(self, steps: int, interval: float) -> list:
    """`steps` steps `interval` s apart; returns each step's wall-clock report time."""
    stamps = []
    next_at = time.monotonic()
    for step in range(1, steps + 1):
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamps.append(time.time())
        self.update_state(state="PROGRESS", meta={"progress": step / steps, "step": step})
    return stamps


def build_server(port: int) -> AsyncToolServer:
    mcp = FastMCP("mcp-celery-bench", host="127.0.0.1", port=port, log_level="WARNING")
    server = AsyncToolServer.from_fastmcp(mcp, celery_app=app)
    server.register_async_tool(noop)
    server.register_async_tool(stamped)
    return server


if __name__ == "__main__":
    build_server(int(sys.argv[1])).run(transport="streamable-http")
