"""The MCP Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) on the job queue.

A task is a job, read and written through `task_records.py` (shared with the 2025-11-25 core
tasks of `core_tasks.py`): any replica answers for any task, and a task outlives the process
and the connection that created it.

- `tools/call` from a client that opts in (a 2026-07-28 request whose own capabilities carry the
  extension) for a job that allows tasks returns a `CreateTaskResult` once the job's first
  snapshot is written; a job that requires a task, called without the opt-in, gets -32021. On
  2025-11-25 a call becomes a task only through that revision's own wire (`params.task`,
  `core_tasks.py`), whatever the session's `initialize` capabilities say about the extension.
- `tasks/get` maps the job's state: queued/running -> `working` (with `statusMessage` from the
  job's last progress, "[3/5] 60% scanning logs"), succeeded or failed with a job error ->
  `completed` (the result inline, `isError` for a job error), cancelled -> `cancelled`, a protocol
  error (the job raised `MCPError`) -> `failed` with the JSON-RPC error.
- A job that asks (`progress.ask`...) makes its task `input_required`, with the questions still
  unanswered in `inputRequests`; `tasks/update` delivers answers (all or some), and the job,
  waiting on its worker, goes on once all are in. A job that `asks_first` settles the questions
  it asks before its first progress report on the `tools/call` itself (`InputRequiredResult`,
  then the same call again with the answers), and its task handle comes after them.
- `tasks/cancel` is the streaming call's cancel (flag + revoke).
- Over HTTP, a `tasks/*` request whose `Mcp-Name` header names another task gets -32020. One
  with no header is answered (any replica answers any task, so no routing needs it, and
  FastMCP's client omits it) unless `MCP_JOBS_STRICT_TASK_NAMES` asks for the spec's refusal.

`ttlMs` is the time from creation to the snapshot's expiry (`MCP_JOBS_RESULT_TTL` after its last
update), so it grows while the job reports; Redis removes expired tasks. `pollIntervalMs` follows
how often the job has been reporting. `detailed` is a task as `tasks/get` gives it, for the
`notifications/tasks` of listen streams too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import decode_header_value
from mcp.types import (
    HEADER_MISMATCH,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolRequestParams,
    CallToolResult,
    ClientCapabilities,
    MissingRequiredClientCapabilityErrorData,
    RequestParams,
    TextContent,
)
from pydantic import Field, ValidationError
from pydantic_core import to_jsonable_python

from mcp_jobs._contract import JOB_ID_META_KEY, status_line
from mcp_jobs._events import JobEvent, JobState
from mcp_jobs.registry import JobSpec
from mcp_jobs.server.dispatch import JobHandedOff, Listeners, progress_sender
from mcp_jobs.server.follow import InputRequired, SendProgress
from mcp_jobs.server.questions import (
    abilities,
    deliver_round,
    input_required,
    require_capabilities,
    usable_answers,
)
from mcp_jobs.server.task_records import POLL_QUEUED_MS, RuntimeState, TaskRecord, TaskRecords, iso, retention_ms, stamp

logger = logging.getLogger(__name__)

TASKS = "io.modelcontextprotocol/tasks"
MODERN = frozenset({"2026-07-28"})


class TaskParams(RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] | None = Field(default=None, alias="inputResponses")


class TasksExtension(Extension):
    """Serves `tasks/get`, `tasks/update` and `tasks/cancel`, and turns opted-in tool calls into tasks."""

    identifier = TASKS

    def __init__(self, state: RuntimeState, records: TaskRecords) -> None:
        self._state = state
        self._records = records

    def methods(self) -> Sequence[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self._get, protocol_versions=MODERN),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, protocol_versions=MODERN),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, protocol_versions=MODERN),
        ]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        spec = self._state.jobs.get(params.name)
        if spec is None or spec.task == "forbidden":
            return await call_next(ctx)
        if not opted_in(ctx):
            if spec.task == "required":
                raise missing_extension(
                    f"Tool {spec.name} runs only as a task: call it over MCP 2026-07-28 and declare the {TASKS} "
                    "extension in the request's client capabilities."
                )
            return await call_next(ctx)
        try:
            arguments = spec.validate_arguments(params.arguments or {})
        except ValidationError as exc:
            return _error_result(f"Error executing tool {spec.name}: {exc}")
        require_capabilities(spec, ctx)
        if spec.asks_first:
            return await self._settle_questions_first(spec, ctx, params, arguments)
        send = progress_sender(ctx, self._state.settings.max_progress_token_bytes)
        after = spec.task_after if spec.task_after is not None else self._state.settings.task_after
        if spec.task == "optional" and send is not None and after > 0:
            return await self._stream_then_task(spec, ctx, arguments, send, after)
        try:
            job_id, created = await self._records.start(spec, ctx, arguments)
        except ToolError as exc:
            return _error_result(str(exc))
        queued = JobEvent(seq=1, state=JobState.QUEUED)
        return self._handle(job_id, created, created, queued)

    async def _stream_then_task(
        self,
        spec: JobSpec,
        ctx: ServerRequestContext[Any, Any],
        arguments: dict[str, Any],
        send: SendProgress,
        after: float,
    ) -> HandlerResult:
        """A caller that opted in to tasks but asked for progress: until the handle is returned
        the request is an ordinary call, so its progress streams live; a job still running after
        `after` seconds goes on as a task, and the call is answered with its handle."""
        created = time.time()
        record = self._records.record(ctx, created)
        try:
            job_id, stored = await self._state.dispatcher.run(
                spec, to_jsonable_python(arguments, by_alias=True), Listeners(send), after, record
            )
        except JobHandedOff as exc:
            running = JobEvent(seq=0, state=JobState.RUNNING, message="running")
            return self._handle(exc.job_id, created, time.time(), running)
        except ToolError as exc:
            return _error_result(str(exc))
        result = spec.tool_result(stored)
        result.meta = {**(result.meta or {}), JOB_ID_META_KEY: job_id}
        return result

    def _handle(self, job_id: str, created: float, updated: float, event: JobEvent) -> dict[str, Any]:
        """The `CreateTaskResult` for a task whose job is in `event`'s state."""
        return {
            "resultType": "task",
            "taskId": job_id,
            "status": _status(event),
            "statusMessage": status_line(event),
            "createdAt": iso(created),
            "lastUpdatedAt": iso(updated),
            "ttlMs": retention_ms(self._state.settings, created, updated),
            "pollIntervalMs": POLL_QUEUED_MS,
        }

    async def _settle_questions_first(
        self,
        spec: JobSpec,
        ctx: ServerRequestContext[Any, Any],
        params: CallToolRequestParams,
        arguments: dict[str, Any],
    ) -> HandlerResult:
        """A job that `asks_first`: its early questions end this call as an `InputRequiredResult`
        (the job waits on its worker; the next call brings the answers), and the task handle is
        returned once it reports progress or ends (SEP-2663's composition with SEP-2322)."""
        dispatcher = self._state.dispatcher
        state = params.request_state
        try:
            if isinstance(state, str):
                job_id = await deliver_round(dispatcher, ctx, spec, state, params.input_responses)
            else:
                job_id, _ = await self._records.start(spec, ctx, arguments)
            event = await dispatcher.first_step(job_id, spec)
        except ToolError as exc:
            return _error_result(str(exc))
        except InputRequired as exc:
            return input_required(exc)
        fields, _ = await dispatcher.store.read_record(job_id)
        return self._handle(job_id, stamp(fields, "created_at"), stamp(fields, "updated_at"), event)

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        return {"resultType": "complete", **detailed(await self._task(ctx, params))}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
        """Deliver answers to the task's open questions (some or all of them: it stays
        `input_required` until every one is answered); unknown keys and malformed answers are
        ignored, and still asked for in `tasks/get`."""
        task = await self._task(ctx, params)
        if task.event.state is JobState.INPUT_REQUIRED:
            answers = usable_answers(task.event.inputs or {}, params.input_responses)
            if answers:
                await self._state.dispatcher.answer(params.task_id, task.event.round, answers, abilities(ctx))
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = await self._task(ctx, params)
        if not task.event.state.terminal:
            await self._state.dispatcher.cancel(params.task_id)
        return {"resultType": "complete"}

    async def _task(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> TaskRecord:
        """The task, after the checks every `tasks/*` request goes through."""
        require_client_extension(ctx, TASKS)  # before looking the task up: -32021, not -32602
        _check_name_header(ctx, params.task_id, strict=self._state.settings.strict_task_names)
        return await self._records.read(ctx, params.task_id)

    async def detailed(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> dict[str, Any]:
        """The caller's task as `tasks/get` gives it (without `resultType`), or `-32602`."""
        return detailed(await self._records.read(ctx, task_id))


def detailed(task: TaskRecord) -> dict[str, Any]:
    """A task in the extension's `DetailedTask` shape: its status with what that status carries
    (the open questions, the result inline, the JSON-RPC error)."""
    event = task.event
    base: dict[str, Any] = {
        "taskId": task.task_id,
        **task.times,
        "ttlMs": task.ttl_ms,
        "pollIntervalMs": task.poll_interval_ms,
    }
    if event.state is JobState.INPUT_REQUIRED:
        return base | {
            "status": "input_required",
            "statusMessage": status_line(event),
            "inputRequests": event.inputs or {},
        }
    if not event.state.terminal:
        return base | {"status": "working", "statusMessage": status_line(event)}
    if event.state is JobState.CANCELLED:
        return base | {"status": "cancelled", "statusMessage": "cancelled"}
    if event.error_code is not None:
        error = {"code": event.error_code, "message": event.error or "protocol error"}
        return base | {"status": "failed", "statusMessage": event.error or "failed", "error": error}
    dumped = tool_result(task).model_dump(by_alias=True, mode="json", exclude_none=True)
    message = event.error if event.state is JobState.FAILED else (event.message or "completed")
    return base | {"status": "completed", "statusMessage": message, "result": dumped}


def tool_result(task: TaskRecord) -> CallToolResult:
    """The tool result of a task whose job ended without a protocol error (a job error as `isError`)."""
    event = task.event
    if event.state is JobState.FAILED or task.spec is None:
        return CallToolResult(content=[TextContent(type="text", text=event.error or "failed")], is_error=True)
    return task.spec.tool_result(event.result)


def _status(event: JobEvent) -> str:
    """The task status of a job's state (as `tasks/get` reports it)."""
    if event.state is JobState.INPUT_REQUIRED:
        return "input_required"
    if not event.state.terminal:
        return "working"
    if event.state is JobState.CANCELLED:
        return "cancelled"
    return "failed" if event.error_code is not None else "completed"


def opted_in(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this call may become a task: a 2026-07-28 request whose own (`_meta`) client
    capabilities declare the extension. A 2025-11-25 session's `initialize` capabilities may name
    it too (the MCP Inspector's do), but that wire cannot carry a `CreateTaskResult`."""
    if ctx.protocol_version not in MODERN:
        return False
    capabilities = ctx.session.client_capabilities  # on 2026-07-28: this request's envelope
    return bool(capabilities and capabilities.extensions and TASKS in capabilities.extensions)


def missing_extension(message: str) -> MCPError:
    data = MissingRequiredClientCapabilityErrorData(
        required_capabilities=ClientCapabilities(extensions={TASKS: {}})
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    return MCPError(MISSING_REQUIRED_CLIENT_CAPABILITY, message, data)


def _check_name_header(ctx: ServerRequestContext[Any, Any], task_id: str, *, strict: bool) -> None:
    """Over HTTP a `tasks/*` request names its task in `Mcp-Name` too, for routing: a header that
    names another task is always refused. A missing one only when `strict`: any replica answers
    any task, so nothing here routes on it, and clients that omit it (FastMCP's) still work."""
    request = ctx.request
    headers = getattr(request, "headers", None)
    if headers is None:
        return  # stdio: no headers
    named = decode_header_value(headers.get("mcp-name"))
    if named is None and not strict:
        return
    if named is None or named.strip() != task_id:
        raise MCPError(HEADER_MISMATCH, f"The Mcp-Name header must name the task ({task_id})")


def _error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
