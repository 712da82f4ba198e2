"""OpenTelemetry traces of jobs: one trace from the caller, through the queue, to the worker's steps.

**Turning it on** is the standard way, with no wrapper command: install the extra
(`pip install 'mcp-jobs[otel]'`: the SDK, the OTLP exporters, opentelemetry-distro's configurator
and the Celery instrumentation) and set `OTEL_TRACES_EXPORTER` (`otlp`, `console`) or an OTLP
endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._TRACES_ENDPOINT`; the exporter is then `otlp`). The
server, the workers and `mcp-jobs call` each call `configure` at start, which hands the rest of
the environment (`OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
samplers, headers) to the distro's configurator. Two defaults differ from `opentelemetry-instrument`,
on purpose: nothing is exported unless one of those variables asks (the distro would export to
localhost by default), and the OTLP protocol defaults to `http/protobuf`, the specification's
default (the distro's is gRPC). Without the variables, or without the extra, nothing of the SDK
is imported and every function here returns at its first line; the `mcp` SDK's own spans stay
no-ops of the OpenTelemetry API.

**What one call's trace holds:** the caller's span (`_meta.traceparent`), the SDK's SERVER span
`tools/call <tool>`, `enqueue <tool>` (PRODUCER: the write that queues the job; its context goes
into the Celery message's headers and the job's snapshot, field `traceparent`), then in the
worker `queued <tool>` (from the enqueue to the start), the Celery instrumentation's
`run/mcp_jobs.<tool>`, and `job <tool>` with the job id, tool, attempt and caller as attributes,
a child span per step named by its message, each progress report an event of its step, the
questions and answers of a two-way job as events, fan-out parts as children (the
instrumentation carries the context into their messages), and an error status when it fails.
A request that touches an existing job (`tasks/*`, the handoff tools, a re-issued call that
answers a question) links its own span to the job's.

Prefork workers set the SDK up in each pool process (`worker_process_init`), since an exporter's
thread does not survive a fork; thread and solo pools once, at `worker_init`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

logger = logging.getLogger(__name__)

TRACE_FIELD = "traceparent"
"""The snapshot field (and Celery header) that carries the W3C trace context of a job's enqueue."""

SERVER_SERVICE, WORKER_SERVICE, CLI_SERVICE = "mcp-jobs-server", "mcp-jobs-worker", "mcp-jobs-cli"
"""The `service.name` of each part's spans unless `OTEL_SERVICE_NAME` (or the resource attributes) name one."""

STEP_SPANS = 100
"""Most step spans one run of a job opens; later steps are events of the job span."""

_tracer = trace.get_tracer("mcp_jobs")
_enabled = False


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.strip().lower() not in ("", "none")
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    """Whether this process exports traces (`configure` set the SDK up)."""
    return _enabled


def configure(service: str, *, celery: bool = False) -> bool:
    """Set the OpenTelemetry SDK up from the environment, if it asks for traces; return whether
    tracing is on. `service` is the `service.name` unless `OTEL_SERVICE_NAME` or
    `OTEL_RESOURCE_ATTRIBUTES` names one; with `celery`, Celery is instrumented too (workers).
    Safe to call again: the first call that turned tracing on wins."""
    global _enabled
    if _enabled or not wanted():
        return _enabled
    try:
        from opentelemetry.distro import OpenTelemetryConfigurator
    except ImportError:
        logger.warning(
            "OTEL_* variables ask for traces, but the OpenTelemetry SDK is not installed "
            "(pip install 'mcp-jobs[otel]'): tracing stays off"
        )
        return False
    if not os.environ.get("OTEL_TRACES_EXPORTER"):
        os.environ["OTEL_TRACES_EXPORTER"] = "otlp"
    os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    try:
        OpenTelemetryConfigurator().configure(resource_attributes={} if named else {"service.name": service})
        if celery:
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            CeleryInstrumentor().instrument()
    except Exception:
        # A bad OTEL_* value must not take the service down: say so once, and run untraced.
        logger.exception("could not set up OpenTelemetry from the OTEL_* variables; tracing stays off")
        return False
    _enabled = True
    logger.info("tracing on: %s", service)
    return True


def log_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids (hex) for a log line, or None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a stored `traceparent` (`00-<trace id>-<span id>-<flags>`), if well formed."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    try:
        return parts[1] if int(parts[1], 16) else None
    except ValueError:
        return None


@contextmanager
def span(name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
    """A span around a whole piece of work (the CLI's call), current inside; nothing when tracing is off."""
    if not _enabled:
        yield
        return
    with _tracer.start_as_current_span(name, attributes=dict(attributes)):
        yield


# The server's side.


@contextmanager
def enqueue_span(tool: str, job_id: str) -> Iterator[dict[str, str]]:
    """Around the write that queues a job: a PRODUCER span `enqueue <tool>` under the request's
    span, yielding the trace context to carry (Celery headers and the snapshot's `traceparent`);
    an empty dict when tracing is off."""
    if not _enabled:
        yield {}
        return
    trace.get_current_span().set_attribute("mcp_jobs.job.id", job_id)
    with _tracer.start_as_current_span(
        f"enqueue {tool}", kind=SpanKind.PRODUCER, attributes={"mcp_jobs.job.id": job_id, "mcp_jobs.tool": tool}
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier


def link_job(job_id: str, traceparent: str | None) -> None:
    """Link the current request's span (a `tasks/*` read, a handoff tool, a re-issued call) to
    the trace of job `job_id`, whose enqueue context the snapshot keeps (`traceparent`); within
    the job's own trace (the call that queued it) only its id is noted."""
    if not _enabled:
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("mcp_jobs.job.id", job_id)
    if traceparent:
        linked = trace.get_current_span(propagate.extract({TRACE_FIELD: traceparent})).get_span_context()
        if linked.is_valid and linked.trace_id != span.get_span_context().trace_id:  # not the job's own trace
            span.add_link(linked, {"mcp_jobs.job.id": job_id})


# The worker's side.


class JobTrace:
    """The spans of one run of a job in a worker: `job <tool>` (current while the job runs, so
    the parts it fans out are its children) and one child per step."""

    def __init__(self, span: trace.Span, token: object) -> None:
        self._span = span
        self._token = token
        self._step: trace.Span | None = None
        self._steps = 0

    def report(self, progress: float, total: float | None, message: str | None, begins_step: bool) -> None:
        """A progress report: it begins a step span (named by its message) or is an event of the current one."""
        attributes: dict[str, Any] = {"mcp_jobs.progress": progress}
        if total is not None:
            attributes["mcp_jobs.total"] = total
        if begins_step and message is not None:
            self._end_step()
            self._steps += 1
            if self._steps <= STEP_SPANS:
                parent = trace.set_span_in_context(self._span)
                self._step = _tracer.start_span(message[:200], context=parent, attributes=attributes)
                return
        if message is not None:
            attributes["mcp_jobs.message"] = message
        (self._step or self._span).add_event("progress", attributes)

    def event(self, name: str, **attributes: Any) -> None:
        """Something the job did that is not progress: a question asked, its answers."""
        self._span.add_event(name, attributes)

    def end(self, state: str, error_type: str | None = None, error: str | None = None) -> None:
        """The run ended in `state`: an error status when it failed (with `error.type`)."""
        self._end_step()
        self._span.set_attribute("mcp_jobs.outcome", state)
        self._span.set_attribute("mcp_jobs.steps", self._steps)
        if state == "failed":
            self._span.set_attribute("error.type", error_type or "failed")
            self._span.set_status(Status(StatusCode.ERROR, (error or error_type or "failed")[:500]))
        self._span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]

    def _end_step(self) -> None:
        if self._step is not None:
            self._step.end()
            self._step = None


def start_job(
    tool: str, job_id: str, attempt: int, fields: Mapping[str, str], started: float, first_step: str
) -> JobTrace | None:
    """Open a run's spans, or None when tracing is off. `fields`: the snapshot's `created_at`,
    `caller` and `traceparent`. The parent is the span current here (the Celery
    instrumentation's `run/...`), else the job's enqueue context from the snapshot. The first
    run also gets `queued <tool>`, from `created_at` to `started`."""
    if not _enabled:
        return None
    enqueued = propagate.extract({TRACE_FIELD: fields[TRACE_FIELD]}) if fields.get(TRACE_FIELD) else None
    here = trace.get_current_span().get_span_context().is_valid
    parent = None if here else enqueued
    created = _stamp(fields.get("created_at"))
    if attempt == 1 and created is not None and created <= started:
        waited = _tracer.start_span(
            f"queued {tool}",
            context=enqueued,
            kind=SpanKind.CONSUMER,
            start_time=int(created * 1e9),
            attributes={"mcp_jobs.job.id": job_id, "mcp_jobs.tool": tool},
        )
        waited.end(end_time=int(started * 1e9))
    attributes: dict[str, str | int] = {"mcp_jobs.job.id": job_id, "mcp_jobs.tool": tool, "mcp_jobs.attempt": attempt}
    if fields.get("caller"):
        attributes["mcp_jobs.caller"] = fields["caller"]
    span = _tracer.start_span(f"job {tool}", context=parent, start_time=int(started * 1e9), attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span))
    job = JobTrace(span, token)
    job.report(0.0, None, first_step, True)
    return job


def _stamp(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
