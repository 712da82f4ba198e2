"""mcp-jobs, server side: the MCP server that turns tool calls into Celery jobs with live progress.

Operators run it with the `mcp-jobs` command (`mcp_jobs.server.cli`). To embed it in your own
ASGI app or MCP setup, use the names below; the other modules of this package are internal.

The package is laid out by audience, and its imports point down (tests/unit/test_imports.py
checks them):

- the core (the modules here): the MCP server, dispatch, following jobs, tasks, auth. It uses
  the job registry and the shared contract, never the worker runtime (the Celery worker app, the
  job runner, the worker side of fan-out);
- `client/`: `mcp-jobs call` and `mcp-jobs tools`, a client for any MCP server, which uses only
  the shared contract;
- `ops/`: the operator views (`mcp-jobs jobs`, the jobs page), which read Redis and never import
  the core;
- `cli`: the one place that composes them, loading each subcommand only when it runs.

The names below are loaded on first use (PEP 562).
"""

import typing as _typing
from importlib import import_module as _import_module

if _typing.TYPE_CHECKING:
    from mcp_jobs._contract import JOB_ID_META_KEY
    from mcp_jobs.server.app import Runtime, build_http_app, build_mcp_server

_LAZY = {
    "JOB_ID_META_KEY": "mcp_jobs._contract",
    "Runtime": "mcp_jobs.server.app",
    "build_http_app": "mcp_jobs.server.app",
    "build_mcp_server": "mcp_jobs.server.app",
}

__all__ = [
    "JOB_ID_META_KEY",
    "Runtime",
    "build_http_app",
    "build_mcp_server",
]


def __getattr__(name: str) -> _typing.Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mcp_jobs.server' has no attribute {name!r}")
    value = getattr(_import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
