"""`notifications/tasks` on 2026-07-28 `subscriptions/listen` streams (the Tasks extension's push).

A client names the tasks it wants pushed in the listen request's `notifications.taskIds`. The
acknowledgement (the stream's first frame) lists those that are the caller's own, existing tasks
(an unknown or foreign id is left out, as a read would not reveal it either); a client that did
not declare the extension on the request gets -32021. Then each task's `DetailedTask`, what
`tasks/get` would give at that moment, goes on the stream as a `notifications/tasks` with the
subscription id: first its current state, then each change of status or status line (at most one
per `interval`, so a chatty job does not flood the stream, the newest state always sent), until it
ends. Progress and log notifications never go there (the extension's rule).

The task may have been created through another replica, or be driven from one: this replica
follows its job through Redis (the listener's job channel), so any replica can hold the stream.

Why a middleware around the SDK's `ListenHandler`: the handler serves the stream (the other
notification kinds, its buffer, its graceful close) but builds its acknowledgement from the
filter fields it knows, dropping `taskIds`. The request is passed on with its session wrapped, so
that the acknowledgement gains the honoured `taskIds` and the followers learn it went out (only
then may a task notification follow it); the followers write to the same request stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any, Literal

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp.shared.exceptions import MCPError
from mcp.types import SubscriptionFilter, SubscriptionsAcknowledgedNotification
from pydantic import BaseModel

from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.server.beside import beside
from mcp_jobs.server.listener import Listener
from mcp_jobs.server.tasks import TASKS, missing_extension, opted_in

logger = logging.getLogger(__name__)

Describe = Callable[[ServerRequestContext[Any, Any], str], Awaitable[dict[str, Any]]]

TERMINAL = frozenset({"completed", "failed", "cancelled"})

RECHECK = 5.0
"""Seconds a follower waits for an event before reading the task again (a deadline may end it)."""


class TasksNotification(BaseModel):
    """`notifications/tasks` (the SDK's notification types do not include the extension's)."""

    method: Literal["notifications/tasks"] = "notifications/tasks"
    params: dict[str, Any]


class TaskSubscriptions:
    """A server middleware for listen streams that name `taskIds` (see the module doc)."""

    def __init__(self, describe: Describe, listener: Callable[[], Listener], interval: float) -> None:
        self._describe = describe
        self._listener = listener
        self._interval = interval

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        notifications = (ctx.params or {}).get("notifications") if ctx.method == "subscriptions/listen" else None
        wanted = notifications.get("taskIds") if isinstance(notifications, dict) else None
        if not isinstance(wanted, list):
            return await call_next(ctx)
        if not opted_in(ctx):
            raise missing_extension(f"Task notifications need the {TASKS} extension in the request's capabilities.")
        honoured = [task_id for task_id in dict.fromkeys(map(str, wanted)) if await self._known(ctx, task_id)]
        acked = anyio.Event()
        session = _AcknowledgingSession(ctx.session, honoured, acked)
        followers = [partial(self._follow, ctx, task_id, acked) for task_id in honoured]
        return await beside(followers, partial(call_next, replace(ctx, session=session)))  # type: ignore[arg-type]

    async def _known(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> bool:
        try:
            await self._describe(ctx, task_id)
        except MCPError:
            return False
        return True

    async def _follow(self, ctx: ServerRequestContext[Any, Any], task_id: str, acked: anyio.Event) -> None:
        """Push the task's state after the acknowledgement, then each change, until it ends."""
        await acked.wait()
        meta = {SUBSCRIPTION_ID_META_KEY: ctx.request_id}
        sent: tuple[Any, Any] | None = None
        last_sent = -float("inf")
        try:
            async with self._listener().watch(task_id) as watch:
                while True:
                    task = await self._describe(ctx, task_id)
                    if (task["status"], task.get("statusMessage")) != sent:
                        notification = TasksNotification(params=task | {"_meta": meta})
                        await ctx.session.send_notification(notification, related_request_id=ctx.request_id)  # type: ignore[arg-type]
                        sent, last_sent = (task["status"], task.get("statusMessage")), anyio.current_time()
                    if task["status"] in TERMINAL:
                        return
                    await watch.next(RECHECK)
                    # Changes within `interval` of the last one sent are read together, newest.
                    await anyio.sleep(max(0.0, last_sent + self._interval - anyio.current_time()))
        except (MCPError, *REDIS_ERRORS, OSError) as exc:  # expired meanwhile, or Redis went away
            logger.info("notifications/tasks for %s ended: %r", task_id, exc)


class _AcknowledgingSession:
    """The request's session, but for the acknowledgement: it gains the honoured `taskIds`, and
    `acked` is set once it has gone out."""

    def __init__(self, session: Any, task_ids: list[str], acked: anyio.Event) -> None:
        self._session = session
        self._task_ids = task_ids
        self._acked = acked

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def send_notification(self, notification: Any, related_request_id: Any = None) -> None:
        if isinstance(notification, SubscriptionsAcknowledgedNotification) and not self._acked.is_set():
            honoured = notification.params.notifications.model_dump(by_alias=True, exclude_none=True)
            filtered = SubscriptionFilter.model_validate(honoured | {"taskIds": self._task_ids})
            params = notification.params.model_copy(update={"notifications": filtered})
            notification = notification.model_copy(update={"params": params})
            await self._session.send_notification(notification, related_request_id=related_request_id)
            self._acked.set()
            return
        await self._session.send_notification(notification, related_request_id=related_request_id)
