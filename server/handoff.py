"""A handoff for clients that can neither wait for a long call nor speak tasks.

Some clients stop waiting after a minute or four whatever the server sends. For jobs that may
run longer, a handoff (`@job(handoff_after=...)`, or `MCP_JOBS_HANDOFF_AFTER` for every job) ends
the call after that many seconds with a result that says the job goes on, names it, and tells the
model how to follow it with three small tools, served whenever a handoff is configured:

- `job_status(job_id)`: state, progress and the last step's message;
- `job_result(job_id, wait)`: the job's own result once it is done (waiting up to `wait` seconds);
- `job_cancel(job_id)`: stop it.

The handoff result is marked `isError` (with a message that says it is not a failure) so that
clients which validate a tool's output schema accept it and models do not take it for the answer.
The trade-off: the model polls, and each poll costs a turn and tokens; prefer tasks where the
client supports them. Every job records its caller; the tools only reach the caller's own jobs.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from mcp_jobs._contract import JOB_ID_PATTERN, status_line
from mcp_jobs._events import JobEvent
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.registry import JobSpec
from mcp_jobs.server.callers import CALLER_FIELD, caller_of
from mcp_jobs.server.dispatch import REDIS_UNREADABLE, Dispatcher, JobHandedOff, Listeners, outcome

MAX_WAIT = 60.0
"""Longest `job_result` waits for a job still running (clients may give up on longer calls)."""

JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, description="The job id the handoff named (a uuid4)")]
"""Checked by the SDK before the tool runs: an id that is no job id never reaches Redis."""


class RuntimeJobs(Protocol):
    jobs: dict[str, JobSpec]

    @property
    def dispatcher(self) -> Dispatcher: ...


class JobStatus(BaseModel):
    job_id: str
    job: str
    state: str = Field(description="queued, running, succeeded, failed or cancelled")
    status: str = Field(description="The job's last step, as '[3/5] 60% message'")
    progress: float | None = None
    total: float | None = None
    error: str | None = None


def error_result(text: str, meta: dict[str, Any]) -> CallToolResult:
    """A tool error with `meta`: the result of a call whose job goes on (`JobHandedOff`), or
    ended failed or cancelled (`JobFailed`), naming the job."""
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True, _meta=meta)


def handoff_tools(runtime: RuntimeJobs) -> list[Tool]:
    """`job_status`, `job_result` and `job_cancel` for the jobs of `runtime`."""

    async def owned(job_id: str, ctx: Context) -> tuple[dict[str, str], JobEvent]:
        try:
            fields, _ = await runtime.dispatcher.store.read_record(job_id)
        except REDIS_ERRORS as exc:
            raise ToolError(REDIS_UNREADABLE) from exc
        event = JobEvent.from_snapshot(fields) if fields.get(CALLER_FIELD, "") == caller_of(ctx) else None
        if event is None:
            raise ToolError(f"No job with id {job_id} (unknown, expired, or started by another caller).")
        return fields, event

    async def job_status(job_id: JobId, ctx: Context) -> JobStatus:
        """The state, progress and last message of a job that a call handed off (or any job of yours)."""
        fields, event = await owned(job_id, ctx)
        return JobStatus(
            job_id=job_id,
            job=fields.get("job", ""),
            state=event.state.value,
            status=event.error or status_line(event),
            progress=event.progress,
            total=event.total,
            error=event.error,
        )

    async def job_result(
        job_id: JobId,
        ctx: Context,
        wait: Annotated[float, Field(ge=0, le=MAX_WAIT, description="Seconds to wait if it is still running")] = 0,
    ) -> CallToolResult:
        """The result of a handed-off job once it is done; waits up to `wait` seconds for it."""
        fields, event = await owned(job_id, ctx)
        spec = runtime.jobs.get(fields.get("job", ""))
        name = spec.name if spec else "job"
        try:
            if event.state.terminal:
                stored = outcome(name, job_id, event)
            else:
                stored = await runtime.dispatcher.follow(job_id, Listeners(), spec, wait=wait, owned=False)
        except JobHandedOff as exc:
            return error_result(str(exc), {})
        if spec is None:
            raise ToolError(f"Job {job_id} finished, but this server does not serve its tool.")
        return spec.tool_result(stored)

    async def job_cancel(job_id: JobId, ctx: Context) -> str:
        """Stop a handed-off job (or any job of yours)."""
        _, event = await owned(job_id, ctx)
        if event.state.terminal:
            return f"Job {job_id} had already ended ({event.state.value})."
        await runtime.dispatcher.cancel(job_id)
        return f"Job {job_id} is being cancelled."

    return [Tool.from_function(fn) for fn in (job_status, job_result, job_cancel)]
