"""mcp-jobs, server side: the MCP server that turns tool calls into Celery jobs with live progress."""

from server.app import JOB_ID_META_KEY, Runtime, build_http_app, build_mcp_server
from server.dispatch import Dispatcher
from server.gate import ProgressGate, ProgressUpdate
from server.listener import JobListener

__all__ = [
    "JOB_ID_META_KEY",
    "Dispatcher",
    "JobListener",
    "ProgressGate",
    "ProgressUpdate",
    "Runtime",
    "build_http_app",
    "build_mcp_server",
]
