"""`notifications/tasks` on 2026-07-28 `subscriptions/listen` streams (placeholder, being written)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_jobs.server.listener import JobListener

Describe = Callable[[ServerRequestContext[Any, Any], str], Awaitable[dict[str, Any]]]


class TaskSubscriptions:
    """A server middleware for listen streams that name `taskIds`."""

    def __init__(self, describe: Describe, listener: Callable[[], JobListener], interval: float) -> None:
        self._describe = describe
        self._listener = listener
        self._interval = interval

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        return await call_next(ctx)
