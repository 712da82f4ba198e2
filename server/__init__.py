"""mcp-jobs, server side: the MCP server that turns tool calls into Celery jobs with live progress.

Operators run it with the `mcp-jobs` command (`mcp_jobs.server.cli`). To embed it in your own
ASGI app or MCP setup, use the names below; the other modules of this package are internal.
"""

from mcp_jobs.server.app import JOB_ID_META_KEY, Runtime, build_http_app, build_mcp_server

__all__ = [
    "JOB_ID_META_KEY",
    "Runtime",
    "build_http_app",
    "build_mcp_server",
]
