"""Running one job inside a worker: validate arguments, call the function, record how it ended.

Every way a job can end is written to its snapshot as a terminal state, which is what ends the
caller's `tools/call` on the server:

- returned: `succeeded` with the JSON form of the return value (if within `max_result_bytes`);
- raised `JobError`: `failed` with the job's own message (meant for the model to read);
- raised the SDK's `MCPError`: `failed` with its code and message, answered as a JSON-RPC error
  (a protocol error, not a tool result; a task ends `failed`);
- cancelled by the caller: `cancelled`;
- exceeded its time limit: `failed`, naming the limit;
- raised anything else: `failed`, naming the exception type and the job id only. The traceback
  goes to the worker log, never to the client, since exception text can carry secrets.

While the job runs, the process's heartbeat thread keeps the job's liveness key fresh, so the server can tell
a slow job from one whose worker died. Deaths the job cannot report itself (a killed pool process,
a hard time limit) are recorded by `celery_app` from the worker's main process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from mcp_jobs import tracing
from mcp_jobs._events import FailureKind, JobState, as_text
from mcp_jobs._store import JobStore
from mcp_jobs.artifacts import keep as keep_artifacts
from mcp_jobs.asking import DEFAULT_INPUT_TIMEOUT, NoAnswer
from mcp_jobs.errors import JobCancelled, JobEnded, JobError
from mcp_jobs.fanout import PartsContext
from mcp_jobs.progress import DEFAULT_MAX_ARTIFACT_BYTES, STARTED, Progress
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.registry import JobSpec
from mcp_jobs.tracing import JobTrace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLimits:
    """The limits a worker applies to a job (from the settings and the job's options)."""

    time_limit: float | None
    max_result_bytes: int
    max_message_chars: int
    alive_for: float
    """How long one heartbeat keeps the job alive (the server's `worker_lost_after`)."""
    input_timeout: float = DEFAULT_INPUT_TIMEOUT
    """How long a job waits for an answer to its question."""
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    """Largest file a job may store as an artifact."""


def run_job(
    spec: JobSpec,
    store: JobStore,
    heartbeats: Heartbeats,
    job_id: str,
    arguments: dict[str, Any],
    limits: RunLimits,
    worker: str = "",
    parts: PartsContext | None = None,
) -> None:
    """Run `spec` for `job_id` and write its terminal state; never raises for a job's own failure."""
    where = {"worker": worker, "pid": str(os.getpid()), "started_at": repr(time.time())}
    # One round trip: count the attempt, mark the job alive and running.
    start = store.write(
        job_id, JobState.RUNNING, begin=True, alive_for=limits.alive_for, message=STARTED, step=True, extra=where
    )
    if start.refused:
        logger.info("job %s (%s) already finished; skipping", job_id, spec.name, extra=_context(spec, job_id))
        return
    if start.cancel_requested:
        store.write_final(job_id, JobState.CANCELLED, message="cancelled before it started")
        return
    heartbeats.add(job_id)
    progress = Progress(
        store,
        job_id,
        start.attempt,
        limits.max_message_chars,
        parts,
        limits.input_timeout,
        limits.max_artifact_bytes,
    )
    progress.trace = _start_trace(spec, store, job_id, start.attempt, float(where["started_at"]))
    state, values = JobState.FAILED, dict[str, Any]()
    try:
        state, values = _execute(spec, progress, arguments, limits)
    finally:
        heartbeats.discard(job_id)
        if progress.trace is not None:
            progress.trace.end(state.value, values.get("error_type"), values.get("error"))
    store.write_final(job_id, state, **values)
    if progress.artifacts:  # they live as long as the result that links them
        try:
            keep_artifacts(store.client, store.keys, job_id, progress.artifacts, store.ttl)
        except REDIS_ERRORS as exc:
            logger.warning("job %s: could not extend its artifacts' lifetime (%r)", job_id, exc)


def _start_trace(spec: JobSpec, store: JobStore, job_id: str, attempt: int, started: float) -> JobTrace | None:
    """This run's spans when tracing is on (one more read: when and by whom it was queued, and
    the enqueue's trace context); None when it is off or Redis did not answer."""
    if not tracing.enabled():
        return None
    names = ["created_at", "caller", tracing.TRACE_FIELD]
    try:
        values = store.client.hmget(store.keys.job(job_id), names)
    except REDIS_ERRORS:
        return None
    fields = {name: as_text(value) for name, value in zip(names, values) if value is not None}
    return tracing.start_job(spec.name, job_id, attempt, fields, started, STARTED)


def _execute(
    spec: JobSpec, progress: Progress, arguments: dict[str, Any], limits: RunLimits
) -> tuple[JobState, dict[str, Any]]:
    """Call the job; return the terminal state and the values to record with it."""
    job_id = progress.job_id
    try:
        result = _call(spec, progress, arguments)
    except JobCancelled:
        logger.info("job %s (%s) cancelled", job_id, spec.name, extra=_context(spec, job_id))
        return JobState.CANCELLED, {}
    except JobEnded as exc:
        # Its snapshot is terminal already (or another run owns it): the write below is refused.
        logger.warning("%s", exc, extra=_context(spec, job_id))
        return JobState.CANCELLED, {}
    except MCPError as exc:
        logger.info(
            "job %s (%s) ended with protocol error %s: %s",
            job_id,
            spec.name,
            exc.code,
            exc.message,
            extra=_context(spec, job_id),
        )
        return JobState.FAILED, {
            "error": _capped(exc.message),
            "error_type": FailureKind.PROTOCOL_ERROR,
            "error_code": exc.code,
        }
    except NoAnswer as exc:
        logger.info("job %s (%s): %s", job_id, spec.name, exc, extra=_context(spec, job_id))
        return JobState.FAILED, {"error": str(exc), "error_type": FailureKind.INPUT_TIMEOUT}
    except JobError as exc:
        logger.info("job %s (%s) failed: %s", job_id, spec.name, exc, extra=_context(spec, job_id))
        return JobState.FAILED, {"error": _capped(str(exc) or type(exc).__name__), "error_type": FailureKind.JOB_ERROR}
    except SoftTimeLimitExceeded:
        logger.warning("job %s (%s) exceeded its time limit", job_id, spec.name, extra=_context(spec, job_id))
        return JobState.FAILED, {
            "error": time_limit_error(spec.name, job_id, limits.time_limit),
            "error_type": FailureKind.TIME_LIMIT,
        }
    except ValidationError as exc:
        # The server validated these arguments already: a mismatch means the two sides run different code.
        logger.error(
            "job %s (%s) got arguments its signature rejects: %s", job_id, spec.name, exc, extra=_context(spec, job_id)
        )
        error = f"Job {spec.name} rejected its arguments on the worker (job id {job_id}); is the worker up to date?"
        return JobState.FAILED, {"error": error, "error_type": FailureKind.VALIDATION_ERROR}
    except Exception as exc:
        logger.exception("job %s (%s) raised", job_id, spec.name, extra=_context(spec, job_id))
        name = type(exc).__name__
        error = f"Job {spec.name} failed with an unexpected {name} (job id {job_id}); details are in the worker log."
        return JobState.FAILED, {"error": error, "error_type": name}
    try:
        result, size = _as_json(result)
    except ValueError as exc:
        error = f"Job {spec.name} returned a value that cannot be sent as JSON: {exc} (job id {job_id})."
        logger.error(error)
        return JobState.FAILED, {"error": error, "error_type": FailureKind.UNSERIALISABLE_RESULT}
    if size > limits.max_result_bytes and spec.oversized == "artifacts":
        result, size = _as_json(blocks_by_link(progress, result))
    if size > limits.max_result_bytes:
        error = f"Job {spec.name} returned {size} bytes of JSON, over the {limits.max_result_bytes}-byte result limit (job id {job_id})."
        logger.warning(error)
        return JobState.FAILED, {"error": error, "error_type": FailureKind.RESULT_TOO_LARGE}
    return JobState.SUCCEEDED, {"result": result}


def blocks_by_link(progress: Progress, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A content result with its embedded files, images and audio stored as artifacts and
    replaced by links to them (for a job that is `oversized="artifacts"`)."""
    linked = []
    for index, block in enumerate(blocks):
        found = _payload(block)
        if found is None:
            linked.append(block)
            continue
        stem, data, mime = found
        name = f"{index + 1}-{stem}"
        link = progress.artifact(name, data, mime)
        linked.append(link.model_dump(mode="json", by_alias=True, exclude_none=True))
    return linked


def _payload(block: dict[str, Any]) -> tuple[str, bytes | str, str] | None:
    """(a file name, the data, its MIME type) of a block that carries a file; None for the rest."""
    kind = block.get("type")
    if kind in ("image", "audio"):
        mime = str(block.get("mimeType") or "application/octet-stream")
        return f"{kind}.{mime.rsplit('/', 1)[-1]}", base64.b64decode(block.get("data", "")), mime
    if kind == "resource":
        resource = block.get("resource") or {}
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", str(resource.get("uri", "")).rstrip("/").rsplit("/", 1)[-1])[:100]
        mime = str(resource.get("mimeType") or "application/octet-stream")
        data = base64.b64decode(resource["blob"]) if "blob" in resource else str(resource.get("text", ""))
        return stem.lstrip(".") or "file", data, mime
    return None


def _context(spec: JobSpec, job_id: str) -> dict[str, str]:
    """The `extra` of a log line about a job (JSON logs show them as fields)."""
    return {"job_id": job_id, "tool": spec.name}


def time_limit_error(job_name: str, job_id: str, limit: float | None) -> str:
    return f"Job {job_name} exceeded its time limit of {limit:g} s and was stopped (job id {job_id})."


MAX_ERROR_CHARS = 4000
"""Longest `JobError` message passed on to the caller; longer ones are cut (the log keeps them whole)."""


def _capped(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[:MAX_ERROR_CHARS] + f"... ({len(text) - MAX_ERROR_CHARS} more characters in the worker log)"


def _call(spec: JobSpec, progress: Progress, arguments: dict[str, Any]) -> Any:
    kwargs = spec.validate_arguments(arguments)
    if spec.progress_param:
        kwargs[spec.progress_param] = progress
    value = asyncio.run(spec.fn(**kwargs)) if spec.is_async else spec.fn(**kwargs)
    return spec.encode_result(value)


def _as_json(value: Any) -> tuple[Any, int]:
    """The JSON form of a job's return value and its size in bytes, strictly: NaN and Infinity
    (which JSON does not have) and objects pydantic cannot serialise raise `ValueError`."""
    try:
        jsonable = to_jsonable_python(value, by_alias=True)
        return jsonable, len(json.dumps(jsonable, separators=(",", ":"), allow_nan=False))
    except PydanticSerializationError as exc:
        raise ValueError(str(exc)) from exc
    except ValueError as exc:
        raise ValueError(f"{exc} (NaN and Infinity are not JSON)") from exc


class Heartbeats:
    """One thread per worker process that keeps the liveness keys of its running jobs fresh.

    It beats whatever the jobs themselves are doing (computing, blocked in I/O), so the server can
    tell a slow job from one whose worker died. Started on first use, so it lives in the pool
    process that runs the jobs, not in the parent it was forked from.
    """

    def __init__(self, store: Callable[[], JobStore], interval: float, alive_for: float) -> None:
        self._store = store
        self._interval = interval
        self._alive_for = alive_for
        self._jobs: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, job_id: str) -> None:
        with self._lock:
            self._jobs.add(job_id)
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="mcp-jobs-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.discard(job_id)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            with self._lock:
                jobs = list(self._jobs)
            if not jobs:
                continue
            try:
                self._store().beat(jobs, self._alive_for)
            except REDIS_ERRORS as exc:
                logger.warning("heartbeat of %d jobs failed (%r)", len(jobs), exc)
