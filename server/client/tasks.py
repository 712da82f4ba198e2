"""The Tasks extension (`io.modelcontextprotocol/tasks`), client side, for `mcp-jobs call --task`
(the 2025-11-25 wire is `core_tasks.py`'s, with the same `TaskWatcher` reporting):
opting in through the SDK's `ClientExtension`, then polling `tasks/get` until the task settles
(and `tasks/cancel` when the call is cancelled). A task that asks (`input_required`) has its
questions answered through the client's own callbacks, as a plain call's are, by `tasks/update`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
from mcp.client import ClaimContext, ClientExtension, ClientRequestContext, ResultClaim
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from pydantic import ConfigDict, TypeAdapter, ValidationError

TASKS = "io.modelcontextprotocol/tasks"
TASK_POLL_MIN, TASK_POLL_MAX, TASK_POLL_DEFAULT = 0.1, 10.0, 1.0
TASK_CANCEL_TIMEOUT = 10.0
INPUT_REQUEST: TypeAdapter[types.InputRequest] = TypeAdapter(types.InputRequest)


class CallFailed(Exception):
    """The server answered the call with an error (exit 1)."""


class CreatedTask(types.Result):
    """The `tools/call` answer that says a task was created (`resultType: "task"`)."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None


class TaskState(types.Result):
    """A `tasks/get` answer."""

    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None


class Acknowledged(types.Result):
    model_config = ConfigDict(extra="allow")


class TaskParams(types.RequestParams):
    task_id: str


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any]


class UpdateTask(types.Request[UpdateTaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    name_param = "taskId"


class GetTask(types.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"  # mirrored into `Mcp-Name`, as the extension requires over HTTP


class CancelTask(types.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class TaskWatcher(ClientExtension):
    """Opts the client in to the Tasks extension, and finishes a created task: polls `tasks/get`
    (at the server's `pollIntervalMs`) reporting its status, sends `tasks/cancel` when the call
    is cancelled, and returns the task's result as the call's."""

    identifier = TASKS

    def __init__(self, on_status: Callable[[str | None, bool], None], on_created: Callable[[str], None]) -> None:
        self._on_status = on_status
        self._on_created = on_created
        self.task_id: str | None = None
        self.cancel_outcome: str | None = None
        """After a cancellation: what the server said of the task (or why it could not be told)."""

    def created(self, task_id: str) -> None:
        """The call became task `task_id` (on either wire)."""
        self.task_id = task_id
        self._on_created(task_id)

    def report(self, status_message: str | None, done: bool) -> None:
        """The task's status line (`done`: it completed)."""
        self._on_status(status_message, done)

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve)]

    async def _resolve(self, created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
        self.created(created.task_id)
        state = TaskState(
            task_id=created.task_id,
            status=created.status,
            status_message=created.status_message,
            poll_interval_ms=created.poll_interval_ms,
        )
        params = TaskParams(task_id=created.task_id)
        answered: set[str] = set()
        try:
            while state.status in ("working", "input_required"):
                self.report(state.status_message, False)
                if not await self._answer(ctx, state, answered):
                    await anyio.sleep(poll_interval(state.poll_interval_ms))
                state = await ctx.session.send_request(GetTask(params=params), TaskState)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(TASK_CANCEL_TIMEOUT) as scope:
                try:
                    await ctx.session.send_request(CancelTask(params=params), Acknowledged)
                    self.cancel_outcome = "the server still reports it working"
                    while (
                        final := await ctx.session.send_request(GetTask(params=params), TaskState)
                    ).status == "working":
                        await anyio.sleep(TASK_POLL_MIN)
                    self.cancel_outcome = f"the server reports it {final.status}"
                except (MCPError, httpx2.HTTPError, OSError, ValidationError) as exc:
                    self.cancel_outcome = f"tasks/cancel failed: {exc}"
            if scope.cancelled_caught and self.cancel_outcome is None:
                self.cancel_outcome = f"tasks/cancel got no answer in {TASK_CANCEL_TIMEOUT:g} s"
            raise
        if state.status == "completed" and not (state.result or {}).get("isError"):
            self.report(state.status_message, True)
        return _task_outcome(state)

    async def _answer(self, ctx: ClaimContext, state: TaskState, answered: set[str]) -> bool:
        """Answer the task's new questions (keys are unique over its life: one asked already is
        waiting for the worker to take its answer) with `tasks/update`; whether any were."""
        if state.status != "input_required" or not state.input_requests:
            return False
        asked = {key: request for key, request in state.input_requests.items() if key not in answered}
        if not asked:
            return False
        responses: dict[str, Any] = {}
        for key, raw in asked.items():
            request = INPUT_REQUEST.validate_python(raw)
            context = ClientRequestContext(session=ctx.session, request_id=key)
            response = await ctx.session.dispatch_input_request(context, request)
            if isinstance(response, types.ErrorData):
                raise CallFailed(f"task {state.task_id} asked what this client cannot answer: {response.message}")
            responses[key] = response.model_dump(by_alias=True, mode="json", exclude_none=True)
        update = UpdateTaskParams(task_id=state.task_id, input_responses=responses)
        await ctx.session.send_request(UpdateTask(params=update), Acknowledged)
        answered.update(responses)
        return True


def poll_interval(ms: int | None) -> float:
    """Seconds to wait before the next `tasks/get`: the server's suggestion, within bounds."""
    return min(max((ms / 1000) if ms else TASK_POLL_DEFAULT, TASK_POLL_MIN), TASK_POLL_MAX)


def _task_outcome(state: TaskState) -> types.CallToolResult:
    if state.status == "completed" and state.result is not None:
        return types.CallToolResult.model_validate(state.result, by_name=False)
    if state.status == "failed" and state.error:
        code = state.error.get("code")
        raise MCPError(code if isinstance(code, int) else INTERNAL_ERROR, str(state.error.get("message", "failed")))
    raise CallFailed(f"task {state.task_id} ended {state.status}: {state.status_message or 'no message'}")
