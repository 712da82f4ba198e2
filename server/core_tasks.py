"""The 2025-11-25 tasks wire (core tasks, `params.task` on `tools/call`), as VS Code's Copilot
Chat and the TypeScript SDK 1.x (`client.experimental.tasks`) speak it.

A task is a job here too (`task_records.py`): any replica answers for any task, with the caller
checked on every request, and a task outlives the session that created it.

- `initialize` advertises `tasks.{list, cancel, requests.tools.call}` to a 2025-11-25 session when
  any job may run as a task, and `tools/list` gives each such tool its `execution.taskSupport`
  (the job's `task` option; absent means forbidden).
- `tools/call` with `params.task` returns a `CreateTaskResult` (`{task: {...}}`) once the job is
  queued and its record readable. A tool that is `forbidden` as a task, or `required` as one but
  called without `params.task`, gets -32601, as that revision says.
- The call's `progressToken` stays valid for the task's life: while the job runs, its progress
  (through the same gate as a streaming call's) and `notifications/tasks/status` (when it needs
  input, and when it ends) go out on the session's standalone stream, from this replica, which
  follows the job through Redis (a step on a worker, a cancel through another replica).
- `tasks/get` reads the task; `tasks/result` waits for its end and returns what the call would
  have returned (the tool result, a job error as `isError`, a protocol error as the JSON-RPC
  error), asking on its own stream the questions a two-way job puts meanwhile; `tasks/list` pages
  through the caller's tasks; `tasks/cancel` moves the task to `cancelled` before it answers, then
  stops the job (a task that ended is refused with -32602).

On 2026-07-28 none of this exists: `tasks/list` and `tasks/result` stay unknown (-32601), and
`tasks/get` and `tasks/cancel` are the extension's (`tasks.py`).

Why a server middleware: the SDK shapes a 2025-11-25 `tools/call` result as that revision's
`CallToolResult`, which has no room for a `CreateTaskResult`, and it serves no tasks methods for
that revision; a middleware that answers these requests itself owns its result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio.abc
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    CallToolRequestParams,
    CallToolResult,
    GetTaskPayloadRequestParams,
    GetTaskRequestParams,
    PaginatedRequestParams,
    ProgressNotification,
    ProgressNotificationParams,
    TaskStatusNotification,
    TaskStatusNotificationParams,
    TextContent,
)
from pydantic import BaseModel, ValidationError

from mcp_jobs._contract import JOB_ID_META_KEY, status_line
from mcp_jobs._events import JobEvent, JobState
from mcp_jobs.registry import JobSpec
from mcp_jobs.server.dispatch import Listeners, outcome, progress_token
from mcp_jobs.server.follow import SendProgress
from mcp_jobs.server.gate import ProgressUpdate
from mcp_jobs.server.questions import ANSWER_GRACE, SessionAsker, require_capabilities
from mcp_jobs.server.task_records import POLL_QUEUED_MS, RuntimeState, TaskRecord, TaskRecords, iso, retention_ms

logger = logging.getLogger(__name__)

CORE = "2025-11-25"
"""The one revision with this wire."""

RELATED_TASK = "io.modelcontextprotocol/related-task"
IMMEDIATE_RESPONSE = "io.modelcontextprotocol/model-immediate-response"

CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}

Background = Callable[[], anyio.abc.TaskGroup]
_P = TypeVar("_P", bound=BaseModel)


class CoreTasks:
    """Serves the 2025-11-25 tasks wire (see the module doc), as a server middleware."""

    def __init__(self, state: RuntimeState, records: TaskRecords, background: Background) -> None:
        self._state = state
        self._records = records
        self._background = background
        self._methods: dict[str, Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]]] = {
            "tools/call": self._call,
            "tasks/get": self._get,
            "tasks/result": self._result,
            "tasks/list": self._list,
            "tasks/cancel": self._cancel,
        }
        self._offered = any(spec.task != "forbidden" for spec in state.jobs.values())

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            return self._advertise(await call_next(ctx))
        if ctx.protocol_version != CORE or not self._offered:
            return await call_next(ctx)
        if ctx.method == "tools/list":
            return self._mark_tools(await call_next(ctx))
        if ctx.method == "tools/call" and not _wants_task(ctx):
            self._refuse_untasked(ctx)
            return await call_next(ctx)
        handler = self._methods.get(ctx.method)
        return await handler(ctx) if handler is not None else await call_next(ctx)

    # The capability, and each tool's task support.

    def _advertise(self, result: HandlerResult) -> HandlerResult:
        wire = _wire(result)
        if self._offered and wire.get("protocolVersion") == CORE:
            wire.setdefault("capabilities", {})["tasks"] = CAPABILITY
        return wire

    def _mark_tools(self, result: HandlerResult) -> HandlerResult:
        wire = _wire(result)
        for tool in wire.get("tools") or []:
            spec = self._state.jobs.get(tool.get("name", ""))
            if spec is not None and spec.task != "forbidden":
                tool["execution"] = {"taskSupport": spec.task}
        return wire

    # Creating a task.

    def _refuse_untasked(self, ctx: ServerRequestContext[Any, Any]) -> None:
        spec = self._state.jobs.get(str((ctx.params or {}).get("name", "")))
        if spec is not None and spec.task == "required":
            raise MCPError(METHOD_NOT_FOUND, f"Tool {spec.name} runs only as a task: call it with params.task.")

    async def _call(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        params = _params(CallToolRequestParams, ctx)
        spec = self._state.jobs.get(params.name)
        if spec is None or spec.task == "forbidden":
            raise MCPError(METHOD_NOT_FOUND, f"Tool {params.name} cannot run as a task.")
        try:
            arguments = spec.validate_arguments(params.arguments or {})
        except ValidationError as exc:
            raise MCPError(INVALID_PARAMS, f"Invalid arguments for tool {spec.name}: {exc}") from exc
        require_capabilities(spec, ctx)
        send = self._standalone_progress(ctx)
        ttl = params.task.ttl if params.task is not None else None
        try:
            task_id, created = await self._records.start(spec, ctx, arguments, ttl if ttl and ttl > 0 else None)
        except ToolError as exc:
            raise MCPError(INTERNAL_ERROR, str(exc)) from exc
        self._background().start_soon(self._push, ctx, task_id, spec, send)
        queued = JobEvent(seq=1, state=JobState.QUEUED, message="queued")
        task = {
            "taskId": task_id,
            "status": "working",
            "statusMessage": status_line(queued),
            "createdAt": iso(created),
            "lastUpdatedAt": iso(created),
            "ttl": retention_ms(self._state.settings, created, created),
            "pollInterval": POLL_QUEUED_MS,
        }
        immediate = f"Started {spec.name} as task {task_id}; its result will follow."
        return {"task": task, "_meta": {IMMEDIATE_RESPONSE: immediate, JOB_ID_META_KEY: task_id}}

    def _standalone_progress(self, ctx: ServerRequestContext[Any, Any]) -> SendProgress | None:
        """Progress for the call's token on the session's standalone stream (the call's own ends
        with the `CreateTaskResult`), or None when it asked for none."""
        token = progress_token(ctx, self._state.settings.max_progress_token_bytes)
        if token is None:
            return None
        session = ctx.session

        async def send(update: ProgressUpdate) -> None:
            params = ProgressNotificationParams(
                progress_token=token, progress=update.progress, total=update.total, message=update.message
            )
            await session.send_notification(ProgressNotification(params=params))

        return send

    async def _push(
        self, ctx: ServerRequestContext[Any, Any], task_id: str, spec: JobSpec, send: SendProgress | None
    ) -> None:
        """Follow the task's job for the session that created it: its progress, and its status
        when it needs input and when it ends, on the standalone stream (dropped by the SDK once
        the session is gone). The job is not this follower's: it runs on without it."""

        async def needs_input(job_id: str, question: JobEvent) -> None:
            await self._notify_status(ctx, task_id)

        try:
            await self._state.dispatcher.follow(task_id, Listeners(send, ask=needs_input), spec, owned=False)
        except (ToolError, MCPError):
            pass  # the job ended without a result: its status says how
        except Exception as exc:  # Redis went away, the session did: the client still polls
            logger.info("task %s: no more pushed updates (%r)", task_id, exc)
            return
        await self._notify_status(ctx, task_id)

    async def _notify_status(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> None:
        task = core_task(await self._records.read(ctx, task_id))
        notification = TaskStatusNotification(params=TaskStatusNotificationParams(**task))
        # The SDK's union of server notifications leaves this one out (it serves no 2025-11-25
        # tasks); it sends any notification as its dump all the same.
        await ctx.session.send_notification(notification)  # type: ignore[arg-type]

    # Reading, waiting for, listing and cancelling tasks.

    async def _get(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        params = _params(GetTaskRequestParams, ctx)
        return core_task(await self._records.read(ctx, params.task_id))

    async def _result(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        """Wait for the task's end and return what its call would have returned; a question its
        job asks meanwhile is put to the client on this request's stream."""
        params = _params(GetTaskPayloadRequestParams, ctx)
        task = await self._records.read(ctx, params.task_id)
        related = {RELATED_TASK: {"taskId": task.task_id}}
        dispatcher = self._state.dispatcher
        wait = self._state.settings.input_timeout + ANSWER_GRACE
        ask = SessionAsker(ctx, dispatcher.answer, wait, meta=related)
        name = task.spec.name if task.spec else task.fields.get("job", "job")
        try:
            if task.event.state.terminal:
                stored = outcome(name, task.task_id, task.event)
            else:
                stored = await dispatcher.follow(task.task_id, Listeners(ask=ask), task.spec, owned=False)
            result = task.spec.tool_result(stored) if task.spec else _text(json.dumps(stored), error=False)
        except ToolError as exc:
            result = _text(str(exc), error=True)
        result.meta = {**(result.meta or {}), **related, JOB_ID_META_KEY: task.task_id}
        wire = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        wire.pop("resultType", None)  # a 2026-07-28 field: this result is 2025-11-25's
        return wire

    async def _list(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        params = _params(PaginatedRequestParams, ctx)
        tasks, cursor = await self._records.page(ctx, params.cursor)
        listing: dict[str, Any] = {"tasks": [core_task(task) for task in tasks]}
        if cursor is not None:
            listing["nextCursor"] = cursor
        return listing

    async def _cancel(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        params = _params(GetTaskRequestParams, ctx)
        task = await self._records.read(ctx, params.task_id)
        if task.event.state.terminal:
            status = core_task(task)["status"]
            raise MCPError(INVALID_PARAMS, f"Cannot cancel task {task.task_id}: it has already ended ({status}).")
        return core_task(await self._records.cancel(ctx, task))


def core_task(task: TaskRecord) -> dict[str, Any]:
    """A task in 2025-11-25's `Task` shape. A job error is `failed` there (that revision counts a
    tool result with `isError` as a failure), and the result itself is `tasks/result`'s."""
    event = task.event
    if event.state is JobState.INPUT_REQUIRED:
        status, message = "input_required", status_line(event)
    elif not event.state.terminal:
        status, message = "working", status_line(event)
    elif event.state is JobState.SUCCEEDED:
        status, message = "completed", event.message or "completed"
    elif event.state is JobState.CANCELLED:
        status, message = "cancelled", "The task was cancelled."
    else:
        status, message = "failed", event.error or "failed"
    return {
        "taskId": task.task_id,
        "status": status,
        "statusMessage": message,
        **task.times,
        "ttl": task.ttl_ms,
        "pollInterval": task.poll_interval_ms,
    }


def _wants_task(ctx: ServerRequestContext[Any, Any]) -> bool:
    params = ctx.params or {}
    return isinstance(params, Mapping) and params.get("task") is not None


def _params(model: type[_P], ctx: ServerRequestContext[Any, Any]) -> _P:
    try:
        return model.model_validate(ctx.params or {}, by_name=False)
    except ValidationError as exc:
        raise MCPError(INVALID_PARAMS, f"Invalid params for {ctx.method}: {exc}") from exc


def _wire(result: HandlerResult) -> dict[str, Any]:
    """A result as its wire dict (the SDK hands middlewares either)."""
    if isinstance(result, BaseModel):
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dict(result) if isinstance(result, Mapping) else {}


def _text(text: str, *, error: bool) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=error)
