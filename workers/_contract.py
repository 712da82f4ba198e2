"""Names and formats that the server, the workers and the clients agree on.

This module imports nothing but `_events` (itself standard library only), so that a client for
any MCP server (`mcp_jobs.server.client`) and the operator views (`mcp_jobs.server.ops`) can use
the contract without loading Celery, the worker runtime or the server core.

- `JOB_ID_META_KEY`: the `_meta` key of a tool result that names its job.
- `JOB_ID_PATTERN`, `is_job_id`: a job id (also a task id) is a lowercase uuid4, checked before
  any Redis read, so that no id a caller makes up names another key (`<job id>:alive`).
- `TASK_PREFIX`, `task_name`, `PART_TASK`: the Celery task names of jobs and of fan-out parts.
- The *status line*, "[3/5] 60% scanning logs": how a job's last progress reads as one line (a
  task's `statusMessage`, the handoff's status, the jobs view), with `format_status_line` and its
  inverse `parse_status_line` (which `mcp-jobs call --task` uses to draw a bar from a task).
"""

from __future__ import annotations

import math
import re

from mcp_jobs._events import JobEvent, JobState

JOB_ID_META_KEY = "io.github.mcp-jobs/job-id"
"""The `_meta` key under which a tool result names the job that produced it."""

JOB_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
"""A job id as the server mints it: `str(uuid.uuid4())`."""

TASK_PREFIX = "mcp_jobs."
"""Every job's Celery task is named `mcp_jobs.<job name>`."""

PART_TASK = "mcp_jobs.part"
"""The one Celery task that runs a part of a fanned-out job (see `fanout.py`)."""

QUEUED_STATUS = "queued, waiting for a worker"
"""The status line of a job that no worker has started yet."""

_JOB_ID = re.compile(JOB_ID_PATTERN)
_STATUS_LINE = re.compile(
    r"^\[(?P<value>[-+.\deE]+)(?:/(?P<total>[-+.\deE]+))?\](?:\s+-?\d+%)?\s*(?P<message>.*)$", re.S
)


def is_job_id(text: str) -> bool:
    """Whether `text` is a job id as the server mints them (and so safe to build a key from)."""
    return _JOB_ID.match(text) is not None


def task_name(job_name: str) -> str:
    """The Celery task name of the job called `job_name`."""
    return TASK_PREFIX + job_name


def format_status_line(progress: float | None, total: float | None, message: str | None) -> str:
    """One line for a running job's last progress: "[3/5] 60% scanning logs", "[7] scanning" or
    the message alone; "running" when the job reported nothing yet."""
    parts = []
    if progress is not None:
        if total:
            parts.append(f"[{_number(progress)}/{_number(total)}]")
            share = progress / total
            if math.isfinite(share * 100):  # the percentage itself may overflow (1e306 -> inf%)
                parts.append(f"{share:.0%}")
        else:
            parts.append(f"[{_number(progress)}]")
    if message:
        parts.append(message)
    return " ".join(parts) or "running"


def _number(value: float) -> str:
    """A value as it reads best and parses back exactly: "3" for 3.0, "0.25", "1e+20"."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def status_line(event: JobEvent) -> str:
    """The status line of a job that has not ended, from its last event or snapshot."""
    if event.state is JobState.QUEUED:
        return QUEUED_STATUS
    return format_status_line(event.progress, event.total, event.message)


def parse_status_line(text: str | None) -> tuple[float | None, float | None, str | None]:
    """`(progress, total, message)` back from a status line; a text of another form is all message."""
    if not text:
        return None, None, None
    match = _STATUS_LINE.match(text)
    if match is None:
        return None, None, text
    try:
        value = float(match["value"])
        total = float(match["total"]) if match["total"] else None
    except ValueError:
        return None, None, text
    return value, total, match["message"] or None
