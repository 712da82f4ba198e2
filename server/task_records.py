"""Tasks as job records: what both task wires read, create, list and cancel.

mcp-jobs speaks two task wires: the Tasks extension of 2026-07-28 (`tasks.py`) and the core tasks
of 2025-11-25 (`core_tasks.py`). Under both, a task is a job: the job id (uuid4) is the task id,
and the job's snapshot hash is the task record, with a few more fields: `task` ("1"), `caller`
(who started it: checked on every task request, so one caller never reaches another's task),
`created_at`, and for a 2025-11-25 task the `ttl` it asked for. So any server replica answers for
any task with one snapshot read, as fresh as the worker's last step, and a task outlives the
server process (and the session) that created it.

Each caller's tasks are also indexed (a sorted set by creation time, `<ns>:caller:<hash>:tasks`,
written before the job is queued) so that `tasks/list` pages through them without scanning the
namespace: an entry whose record has expired is dropped when a listing meets it.

The deadlines a streaming call's follower enforces (queue wait, lost worker) are applied when a
task is read, from the snapshot's own timestamps.

Retention: a record expires `MCP_JOBS_RESULT_TTL` after the job's last update, so the reported
ttl (from creation) grows while the job reports. A shorter ttl that a 2025-11-25 request asks for
is honoured once the job has ended: past it the task reads as expired. A running task is never
dropped for its ttl, since its job would then run on with nobody able to reach it.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic_core import to_jsonable_python

from mcp_jobs._contract import is_job_id
from mcp_jobs._events import JobEvent, JobState
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.registry import JobSpec
from mcp_jobs.server.callers import CALLER_FIELD, caller_of
from mcp_jobs.server.deadlines import judge
from mcp_jobs.server.dispatch import REDIS_UNREADABLE, Dispatcher
from mcp_jobs.server.questions import CAN_ASK_FIELD, abilities
from mcp_jobs.server.snapshots import LOST_SINCE_FIELD
from mcp_jobs.settings import Settings

logger = logging.getLogger(__name__)

TTL_FIELD = "ttl"
"""The snapshot field holding the ttl (ms) a 2025-11-25 task asked for."""

POLL_MIN_MS, POLL_MAX_MS, POLL_QUEUED_MS = 250, 5000, 1000

LIST_PAGE = 50
"""Tasks per `tasks/list` page."""


class RuntimeState(Protocol):
    """What the task wires need of the server process's runtime (`app.Runtime`)."""

    settings: Settings
    jobs: dict[str, JobSpec]

    @property
    def dispatcher(self) -> Dispatcher: ...


@dataclass(frozen=True)
class TaskRecord:
    """One task as read now: its snapshot fields, its job's state and its times."""

    task_id: str
    spec: JobSpec | None
    fields: dict[str, str]
    event: JobEvent
    ttl_ms: int

    @property
    def created(self) -> float:
        return stamp(self.fields, "created_at")

    @property
    def updated(self) -> float:
        return max(self.created, stamp(self.fields, "updated_at"))

    @property
    def poll_interval_ms(self) -> int:
        """How often it is worth asking: about as often as the job has been reporting."""
        if self.event.state is JobState.QUEUED or self.event.seq <= 2:
            return POLL_QUEUED_MS
        every = (self.updated - self.created) / (self.event.seq - 2) * 1000
        return int(min(max(every, POLL_MIN_MS), POLL_MAX_MS))

    @property
    def times(self) -> dict[str, Any]:
        """`createdAt` and `lastUpdatedAt`, the fields every task of either wire carries."""
        return {"createdAt": iso(self.created), "lastUpdatedAt": iso(self.updated)}


class TaskRecords:
    """Creates, reads, lists and cancels the caller's tasks (see the module doc)."""

    def __init__(self, state: RuntimeState) -> None:
        self._state = state

    @property
    def _dispatcher(self) -> Dispatcher:
        return self._state.dispatcher

    def record(self, ctx: ServerRequestContext[Any, Any], created: float, ttl: int | None = None) -> dict[str, str]:
        """The fields a new task's snapshot starts with."""
        fields = {"task": "1", CALLER_FIELD: caller_of(ctx), CAN_ASK_FIELD: abilities(ctx), "created_at": repr(created)}
        if ttl is not None:
            fields[TTL_FIELD] = str(ttl)
        return fields

    async def start(
        self, spec: JobSpec, ctx: ServerRequestContext[Any, Any], arguments: dict[str, Any], ttl: int | None = None
    ) -> tuple[str, float]:
        """Queue `spec` as a task of the caller's; return its id and creation time once any
        replica can read it (and list it: `Dispatcher` indexes a task before queueing it)."""
        created = time.time()
        record = self.record(ctx, created, ttl)
        return await self._dispatcher.start(spec, to_jsonable_python(arguments, by_alias=True), record), created

    async def read(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> TaskRecord:
        """The caller's task `task_id` as it is now, or `-32602` (unknown, expired, someone
        else's: the same answer), or `-32603` while Redis cannot be read."""
        if not is_job_id(task_id):  # before any Redis key is built from it
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: no task {task_id!r} (not a task id)")
        try:
            fields, alive = await self._dispatcher.store.read_record(task_id)
            if fields.get("task") != "1" or fields.get(CALLER_FIELD, "") != caller_of(ctx):
                raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: Task not found ({task_id})")
            return await self._record(task_id, fields, alive)
        except REDIS_ERRORS as exc:
            raise MCPError(INTERNAL_ERROR, REDIS_UNREADABLE) from exc

    async def _record(self, task_id: str, fields: dict[str, str], alive: bool) -> TaskRecord:
        try:
            event = JobEvent.from_snapshot(fields)
        except ValueError as exc:
            logger.warning("task %s: malformed snapshot (%s)", task_id, exc)
            event = None
        if event is None:
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: task {task_id} is unreadable")
        spec = self._state.jobs.get(fields.get("job", ""))
        event = await self._enforce_deadlines(task_id, spec, fields, event, alive)
        record = TaskRecord(task_id, spec, fields, event, 0)
        ttl = self._ttl_ms(record)
        if ttl is None:
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: Task has expired ({task_id})")
        return TaskRecord(task_id, spec, fields, event, ttl)

    def _ttl_ms(self, record: TaskRecord) -> int | None:
        """From creation to the record's expiry (`retention_ms`), or the shorter ttl the task
        asked for once its job has ended; None: that ttl has passed."""
        natural = retention_ms(self._state.settings, record.created, record.updated)
        asked = record.fields.get(TTL_FIELD)
        if not asked or not asked.isdigit() or not record.event.state.terminal or int(asked) >= natural:
            return natural
        if (time.time() - record.created) * 1000 > int(asked):
            return None
        return int(asked)

    async def _enforce_deadlines(
        self, task_id: str, spec: JobSpec | None, fields: dict[str, str], event: JobEvent, alive: bool
    ) -> JobEvent:
        """End a task whose job waited too long for a worker, or lost its worker: the follower's
        rules (`deadlines.py`), applied at each read from the snapshot's own timestamps, with the
        moment its worker was first missed kept in the snapshot for any replica's next read."""
        dispatcher = self._dispatcher
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
            queued_since=stamp(fields, "created_at"),
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

    async def cancel(self, ctx: ServerRequestContext[Any, Any], record: TaskRecord) -> TaskRecord:
        """Move a task that has not ended to `cancelled` now (a worker's later write is refused: a
        job that ended is never touched again), then stop its job (flag and revoke). A task that
        ended meanwhile is returned as it ended."""
        store = self._dispatcher.store
        event = record.event
        while not event.state.terminal:
            try:
                outcome = await store.write(record.task_id, JobState.CANCELLED, expect=event.state)
            except REDIS_ERRORS as exc:
                raise MCPError(INTERNAL_ERROR, REDIS_UNREADABLE) from exc
            if outcome.written:
                await self._dispatcher.cancel(record.task_id)
                break
            event = (await self.read(ctx, record.task_id)).event  # it moved on: try again from there
        return await self.read(ctx, record.task_id)

    async def page(
        self, ctx: ServerRequestContext[Any, Any], cursor: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """One page of the caller's tasks, oldest first, and the cursor of the next (None: no more)."""
        after = _parse_cursor(cursor)
        store = self._dispatcher.store
        caller = caller_of(ctx)
        found: list[TaskRecord] = []
        try:
            while len(found) <= LIST_PAGE:
                batch = await store.listed_tasks(caller, after, LIST_PAGE + 1 - len(found))
                if not batch:
                    break
                for task_id, created in batch:
                    after = (created, task_id)
                    try:
                        found.append(await self.read(ctx, task_id))
                    except MCPError as exc:
                        if exc.error.code != INVALID_PARAMS:
                            raise
                        await store.unlist_task(caller, task_id)  # expired (or never created)
        except REDIS_ERRORS as exc:
            raise MCPError(INTERNAL_ERROR, REDIS_UNREADABLE) from exc
        if len(found) <= LIST_PAGE:
            return found, None
        shown = found[:LIST_PAGE]
        return shown, _cursor(shown[-1].created, shown[-1].task_id)


def retention_ms(settings: Settings, created: float, updated: float) -> int:
    """From a task's creation to its record's expiry: `result_ttl` after the job's last update."""
    return round((max(created, updated) + settings.result_ttl - created) * 1000)


def stamp(fields: dict[str, str], name: str) -> float:
    try:
        return float(fields.get(name) or 0)
    except ValueError:
        return 0.0


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cursor(score: float, task_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}:{task_id}".encode()).decode()


def _parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    """A cursor's position (the last task listed), or `-32602` for one we did not give out."""
    if not cursor:
        return None
    try:
        score, task_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        if not is_job_id(task_id):
            raise ValueError(task_id)
        return float(score), task_id
    except ValueError as exc:
        raise MCPError(INVALID_PARAMS, f"Invalid cursor: {cursor!r}") from exc
