"""The MCP Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) on the job queue.

A task is a job. The job id (uuid4) is the task id, and the job's snapshot hash is the task
record, with three more fields: `task` ("1"), `caller` (who started it: checked on every task
request, so one caller never reaches another's task) and `created_at`. So any server replica
answers for any task with one snapshot read, as fresh as the worker's last step, and a task
outlives the server process (and the connection) that created it.

- `tools/call` from a client that opts in (a 2026-07-28 request whose own capabilities carry the
  extension) for a job that allows tasks returns a `CreateTaskResult` once the job's first
  snapshot is written; a job that requires a task, called without the opt-in, gets -32021. On
  2025-11-25 a call is never a task (that wire has no SEP-2663 handles), whatever the session's
  `initialize` capabilities say: it streams like any other call.
- `tasks/get` maps the job's state: queued/running -> `working` (with `statusMessage` from the
  job's last progress, "[3/5] 60% scanning logs"), succeeded or failed with a job error ->
  `completed` (the result inline, `isError` for a job error), cancelled -> `cancelled`, a protocol
  error (the job raised `MCPError`) -> `failed` with the JSON-RPC error. The deadlines a streaming
  call's follower enforces (queue wait, lost worker) are applied here, when the task is read.
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
how often the job has been reporting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import decode_header_value
from mcp.types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
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
from redis.exceptions import RedisError

from mcp_jobs._contract import JOB_ID_META_KEY, is_job_id, status_line
from mcp_jobs._events import JobEvent, JobState
from mcp_jobs.registry import JobSpec
from mcp_jobs.server.callers import CALLER_FIELD, caller_of
from mcp_jobs.server.deadlines import judge
from mcp_jobs.server.dispatch import REDIS_UNREADABLE, Dispatcher, JobHandedOff, Listeners, progress_sender
from mcp_jobs.server.follow import InputRequired, SendProgress
from mcp_jobs.server.questions import (
    CAN_ASK_FIELD,
    abilities,
    deliver_round,
    input_required,
    require_capabilities,
    usable_answers,
)
from mcp_jobs.server.snapshots import LOST_SINCE_FIELD
from mcp_jobs.settings import Settings

logger = logging.getLogger(__name__)

TASKS = "io.modelcontextprotocol/tasks"
MODERN = frozenset({"2026-07-28"})

POLL_MIN_MS, POLL_MAX_MS, POLL_QUEUED_MS = 250, 5000, 1000


class RuntimeState(Protocol):
    """What the extension needs of the server process's runtime (`app.Runtime`)."""

    settings: Settings
    jobs: dict[str, JobSpec]

    @property
    def dispatcher(self) -> Dispatcher: ...


class TaskParams(RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] | None = Field(default=None, alias="inputResponses")


class TasksExtension(Extension):
    """Serves `tasks/get`, `tasks/update` and `tasks/cancel`, and turns opted-in tool calls into tasks."""

    identifier = TASKS

    def __init__(self, state: RuntimeState) -> None:
        self._state = state

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
        if not _opted_in(ctx):
            if spec.task == "required":
                raise _missing_extension(
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
        created = time.time()
        try:
            job_id = await self._start(spec, ctx, arguments, created)
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
        record = {"task": "1", CALLER_FIELD: caller_of(ctx), CAN_ASK_FIELD: abilities(ctx), "created_at": repr(created)}
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

    async def _start(
        self, spec: JobSpec, ctx: ServerRequestContext[Any, Any], arguments: dict[str, Any], created: float
    ) -> str:
        record = {"task": "1", CALLER_FIELD: caller_of(ctx), CAN_ASK_FIELD: abilities(ctx), "created_at": repr(created)}
        return await self._state.dispatcher.start(spec, to_jsonable_python(arguments, by_alias=True), record)

    def _handle(self, job_id: str, created: float, updated: float, event: JobEvent) -> dict[str, Any]:
        """The `CreateTaskResult` for a task whose job is in `event`'s state."""
        return {
            "resultType": "task",
            "taskId": job_id,
            "status": _status(event),
            "statusMessage": status_line(event),
            "createdAt": _iso(created),
            "lastUpdatedAt": _iso(updated),
            "ttlMs": self._ttl_ms(created, updated),
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
                job_id = await self._start(spec, ctx, arguments, time.time())
            event = await dispatcher.first_step(job_id, spec)
        except ToolError as exc:
            return _error_result(str(exc))
        except InputRequired as exc:
            return input_required(exc)
        fields, _ = await dispatcher.store.read_record(job_id)
        return self._handle(job_id, _stamp(fields, "created_at"), _stamp(fields, "updated_at"), event)

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = await self._task(ctx, params)
        task.pop("_round", None)
        return {"resultType": "complete", **task}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
        """Deliver answers to the task's open questions (some or all of them: it stays
        `input_required` until every one is answered); unknown keys and malformed answers are
        ignored, and still asked for in `tasks/get`."""
        task = await self._task(ctx, params)
        inputs = task.get("inputRequests") or {}
        answers = usable_answers(inputs, params.input_responses)
        if answers:
            await self._state.dispatcher.answer(params.task_id, task["_round"], answers, abilities(ctx))
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = await self._task(ctx, params)
        if task["status"] in ("working", "input_required"):
            await self._state.dispatcher.cancel(params.task_id)
        return {"resultType": "complete"}

    async def _task(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        """The task's current state, after the checks every `tasks/*` request goes through."""
        require_client_extension(ctx, TASKS)  # before looking the task up: -32021, not -32602
        _check_name_header(ctx, params.task_id, strict=self._state.settings.strict_task_names)
        if not is_job_id(params.task_id):  # before any Redis key is built from it
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: no task {params.task_id!r} (not a task id)")
        try:
            return await self._current(ctx, params.task_id)
        except RedisError as exc:
            raise MCPError(INTERNAL_ERROR, REDIS_UNREADABLE) from exc

    async def _current(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> dict[str, Any]:
        """The caller's own task, read from its snapshot, with the deadlines applied."""
        fields, alive = await self._state.dispatcher.store.read_record(task_id)
        if fields.get("task") != "1" or fields.get(CALLER_FIELD, "") != caller_of(ctx):
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: no task {task_id} (unknown or expired)")
        try:
            event = JobEvent.from_snapshot(fields)
        except ValueError as exc:
            logger.warning("task %s: malformed snapshot (%s)", task_id, exc)
            event = None
        if event is None:
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: task {task_id} is unreadable")
        spec = self._state.jobs.get(fields.get("job", ""))
        event = await self._enforce_deadlines(task_id, spec, fields, event, alive)
        return self._describe(task_id, spec, fields, event)

    async def _enforce_deadlines(
        self, task_id: str, spec: JobSpec | None, fields: dict[str, str], event: JobEvent, alive: bool
    ) -> JobEvent:
        """End a task whose job waited too long for a worker, or lost its worker: the follower's
        rules (`deadlines.py`), applied at each read from the snapshot's own timestamps, with the
        moment its worker was first missed kept in the snapshot for any replica's next read."""
        dispatcher = self._state.dispatcher
        store = dispatcher.store
        job = dispatcher.followed_job(fields.get("job", "job"), spec, task_id)
        now = time.time()
        lost_since = None
        if event.state.on_worker and not alive:
            lost_since = await store.worker_missing_since(task_id, event.attempt, now)
        elif alive and LOST_SINCE_FIELD in fields:
            await store.worker_seen(task_id)
        verdict = judge(
            job,
            dispatcher.policy.deadlines,
            now,
            state=event.state,
            queued_since=_stamp(fields, "created_at"),
            alive=alive,
            lost_since=lost_since,
        )
        if not verdict.ends or verdict.kind is None or verdict.error is None:
            return event
        error, kind = verdict.error, verdict.kind
        outcome = await store.write(task_id, JobState.FAILED, expect=event.state, error=error, error_type=kind)
        if outcome.written:
            logger.warning(error)
            return JobEvent(seq=outcome.seq, state=JobState.FAILED, error=error, error_type=kind)
        return event

    def _ttl_ms(self, created: float, updated: float) -> int:
        """From creation to the record's expiry: `result_ttl` after the job's last update."""
        return round((max(created, updated) + self._state.settings.result_ttl - created) * 1000)

    def _describe(self, task_id: str, spec: JobSpec | None, fields: dict[str, str], event: JobEvent) -> dict[str, Any]:
        created, updated = _stamp(fields, "created_at"), _stamp(fields, "updated_at")
        task: dict[str, Any] = {
            "taskId": task_id,
            "createdAt": _iso(created),
            "lastUpdatedAt": _iso(max(created, updated)),
            "ttlMs": self._ttl_ms(created, updated),
            "pollIntervalMs": _poll_interval_ms(event, created, updated),
        }
        if event.state is JobState.INPUT_REQUIRED:
            # `_round` is for `tasks/update` only (taken off before `tasks/get` answers).
            extra = {"inputRequests": event.inputs or {}, "_round": event.round}
            return task | {"status": "input_required", "statusMessage": status_line(event), **extra}
        if not event.state.terminal:
            return task | {"status": "working", "statusMessage": status_line(event)}
        if event.state is JobState.CANCELLED:
            return task | {"status": "cancelled", "statusMessage": "cancelled"}
        if event.error_code is not None:
            error = {"code": event.error_code, "message": event.error or "protocol error"}
            return task | {"status": "failed", "statusMessage": event.error or "failed", "error": error}
        if event.state is JobState.FAILED or spec is None:
            result = CallToolResult(content=[TextContent(type="text", text=event.error or "failed")], is_error=True)
        else:
            result = spec.tool_result(event.result)
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        message = event.error if event.state is JobState.FAILED else (event.message or "completed")
        return task | {"status": "completed", "statusMessage": message, "result": dumped}


def _status(event: JobEvent) -> str:
    """The task status of a job's state (as `tasks/get` reports it)."""
    if event.state is JobState.INPUT_REQUIRED:
        return "input_required"
    if not event.state.terminal:
        return "working"
    if event.state is JobState.CANCELLED:
        return "cancelled"
    return "failed" if event.error_code is not None else "completed"


def _opted_in(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this call may become a task: a 2026-07-28 request whose own (`_meta`) client
    capabilities declare the extension. A 2025-11-25 session's `initialize` capabilities may name
    it too (the MCP Inspector's do), but that wire cannot carry a `CreateTaskResult`."""
    if ctx.protocol_version not in MODERN:
        return False
    capabilities = ctx.session.client_capabilities  # on 2026-07-28: this request's envelope
    return bool(capabilities and capabilities.extensions and TASKS in capabilities.extensions)


def _missing_extension(message: str) -> MCPError:
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


def _stamp(fields: dict[str, str], name: str) -> float:
    try:
        return float(fields.get(name) or 0)
    except ValueError:
        return 0.0


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _poll_interval_ms(event: JobEvent, created: float, updated: float) -> int:
    """How often it is worth asking: about as often as the job has been reporting."""
    if event.state is JobState.QUEUED or event.seq <= 2:
        return POLL_QUEUED_MS
    every = (updated - created) / (event.seq - 2) * 1000
    return int(min(max(every, POLL_MIN_MS), POLL_MAX_MS))
