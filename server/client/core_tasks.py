"""The 2025-11-25 tasks wire, client side, for `mcp-jobs call --task` on a server that offers it
(`capabilities.tasks.requests.tools.call`, and the tool's `execution.taskSupport`): `tools/call`
with `params.task`, then `tasks/result`, which waits for the end (a job's questions come on its
stream and are answered by the client's own callbacks, as a plain call's are), while `tasks/get`
is polled for the status line. Cancelling sends `tasks/cancel`.

The Python SDK serves no client runtime for this wire, and it checks a `tools/call` result
against that revision's `CallToolResult`, which has no room for a `CreateTaskResult`: the one
request that creates the task goes out through the session's dispatcher unchecked, and is
checked here instead.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from mcp_jobs.server.client.tasks import TASK_CANCEL_TIMEOUT, CallFailed, TaskWatcher, poll_interval

CORE = "2025-11-25"
MCP_PROTOCOL_VERSION = "mcp-protocol-version"


def offers_core_tasks(client: Client, tool: types.Tool | None) -> bool:
    """Whether `tool` can be called as a 2025-11-25 task on this connection."""
    if client.protocol_version != CORE:
        return False
    tasks = client.server_capabilities.tasks
    if tasks is None or tasks.requests is None or tasks.requests.tools is None or tasks.requests.tools.call is None:
        return False
    support = tool.execution.task_support if tool is not None and tool.execution is not None else None
    return support in ("optional", "required")


async def call_as_core_task(
    client: Client,
    tool: str,
    arguments: dict[str, Any],
    watcher: TaskWatcher,
) -> types.CallToolResult:
    """Run `tool` as a 2025-11-25 task to its end (see the module doc)."""
    session = client.session
    params = {"name": tool, "arguments": arguments, "task": {}}
    headers = {MCP_PROTOCOL_VERSION: CORE}
    raw = await session._dispatcher.send_raw_request(
        "tools/call", params, {"headers": headers}
    )  # unchecked: see the module doc
    try:
        created = types.CreateTaskResult.model_validate(raw, by_name=False)
    except ValidationError as exc:
        raise CallFailed(f"the server answered a task-augmented call without a task: {exc}") from exc
    task = created.task
    watcher.created(task.task_id)
    watcher.report(task.status_message, False)
    get = types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task.task_id))
    try:
        async with anyio.create_task_group() as group:

            async def poll() -> None:
                state: types.Task = task
                while True:
                    await anyio.sleep(poll_interval(state.poll_interval))
                    state = await session.send_request(get, types.GetTaskResult)
                    watcher.report(state.status_message, False)

            group.start_soon(poll)
            wait = types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task.task_id))
            result = await session.send_request(wait, types.CallToolResult)
            group.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        await _cancel(client, task.task_id, watcher)
        raise
    if not result.is_error:
        final = await session.send_request(get, types.GetTaskResult)
        watcher.report(final.status_message, True)
    return result


async def _cancel(client: Client, task_id: str, watcher: TaskWatcher) -> None:
    """Tell the server, which moves the task to `cancelled` before it answers."""
    cancel = types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task_id))
    with anyio.CancelScope(shield=True), anyio.move_on_after(TASK_CANCEL_TIMEOUT) as scope:
        try:
            answer = await client.session.send_request(cancel, types.CancelTaskResult)
            watcher.cancel_outcome = f"the server reports it {answer.status}"
        except (MCPError, httpx2.HTTPError, OSError, ValidationError) as exc:
            watcher.cancel_outcome = f"tasks/cancel failed: {exc}"
    if scope.cancelled_caught and watcher.cancel_outcome is None:
        watcher.cancel_outcome = f"tasks/cancel got no answer in {TASK_CANCEL_TIMEOUT:g} s"
