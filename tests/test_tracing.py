"""One OpenTelemetry trace from the caller to the worker's steps, end to end.

A real Redis, a prefork Celery worker and the HTTP server, each configured only by the standard
`OTEL_*` variables, export to an OTLP/HTTP receiver of the test's own (`tests/support/otlp.py`),
which decodes the protobuf it gets. A Python SDK client sends `_meta.traceparent` naming a span of
its own; the spans that come back must form one tree under it, from two services. Without the
variables, nothing of the OpenTelemetry SDK's tracing is even imported, in the worker or the server.
"""

from __future__ import annotations

import itertools
import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from tests.conftest import Stack
from tests.support.helpers import job_id_of
from tests.support.otlp import STATUS_ERROR, ReceivedSpan, Receiver, otlp_receiver
from tests.support.processes import REPO, ManagedProcess, free_port, start_http_server, start_worker

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

SERVER_KIND, CONSUMER_KIND = 2, 5
"""OTLP's `Span.kind` values (SPAN_KIND_SERVER, SPAN_KIND_CONSUMER)."""

TRACING_MODULES = [
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk._configuration",
    "opentelemetry.instrumentation",
    "opentelemetry.exporter",
    "opentelemetry.distro",
]
"""What tracing would load. (redis-py 8 itself imports `opentelemetry.sdk.metrics` whenever the SDK
is installed, for its own optional metrics: that is not ours to leave out.)"""


@dataclass
class Traced:
    url: str
    receiver: Receiver
    worker: ManagedProcess


@pytest.fixture(scope="module")
def traced(stack_env: dict[str, str]) -> Iterator[Traced]:
    """A worker (prefork: the SDK is set up in each pool process) and a server on a Redis
    database of their own, exporting to the test's receiver; JSON logs."""
    with otlp_receiver() as receiver:
        env = stack_env | {
            "MCP_JOBS_REDIS_URL": stack_env["MCP_JOBS_REDIS_URL"].rsplit("/", 1)[0] + "/10",
            "MCP_JOBS_NAMESPACE": f"traced-{uuid.uuid4().hex[:8]}",
            "MCP_JOBS_LOG_FORMAT": "json",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a fraction of a second
        }
        worker = start_worker(env, f"traced-{uuid.uuid4().hex[:6]}", concurrency=2, pool="prefork")
        port = free_port()
        server = start_http_server(env, port)
        try:
            yield Traced(f"http://127.0.0.1:{port}/mcp", receiver, worker)
        finally:
            server.stop()
            worker.stop()


def caller_context() -> tuple[str, str, dict[str, str]]:
    """A trace id and span id of the caller's own, and the `_meta` that names them."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, {"traceparent": f"00-{trace_id}-{span_id}-01"}


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, [span.name for span in spans])
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return sorted((span for span in spans if span.parent_id == parent.span_id), key=lambda span: span.start_ns)


def wait_for_trace(receiver: Receiver, trace_id: str, names: set[str]) -> list[ReceivedSpan]:
    receiver.wait_for(
        lambda spans: names <= {span.name for span in spans if span.trace_id == trace_id},
        timeout=30,
        what=f"spans {sorted(names)} of trace {trace_id}",
    )
    return receiver.of_trace(trace_id)


STAGES = [
    {"message": "fetching", "seconds": 0.2},
    {"message": "parsing", "seconds": 0.4, "reports": 3},
    {"message": "writing", "seconds": 0.1},
]


async def test_a_call_is_one_trace_from_the_callers_span_to_the_jobs_steps(traced: Traced) -> None:
    trace_id, caller_span, meta = caller_context()
    async with Client(traced.url) as client:
        result = await client.call_tool("staged", {"stages": STAGES}, meta=meta)
    assert not result.is_error, result.content
    job_id = job_id_of(result)
    expected = {"tools/call staged", "enqueue staged", "queued staged", "run/mcp_jobs.staged", "job staged"}
    spans = wait_for_trace(traced.receiver, trace_id, expected | {"started", "fetching", "parsing", "writing"})

    assert {"mcp-jobs-server", "mcp-jobs-worker"} <= {span.service for span in spans}
    # One tree: every span's parent is in it, except the root's, which is the caller's span.
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_id not in ids]
    assert [(root.name, root.parent_id, root.kind) for root in roots] == [
        ("tools/call staged", caller_span, SERVER_KIND)
    ]
    call, enqueue = named(spans, "tools/call staged"), named(spans, "enqueue staged")
    queued, run, job = named(spans, "queued staged"), named(spans, "run/mcp_jobs.staged"), named(spans, "job staged")
    assert (call.service, enqueue.service, job.service) == ("mcp-jobs-server", "mcp-jobs-server", "mcp-jobs-worker")
    assert enqueue.parent_id == call.span_id and enqueue.attributes["mcp_jobs.job.id"] == job_id
    assert queued.parent_id == enqueue.span_id and queued.start_ns <= queued.end_ns <= job.start_ns
    assert run.parent_id == enqueue.span_id and run.kind == CONSUMER_KIND
    assert job.parent_id == run.span_id
    assert job.attributes["mcp_jobs.job.id"] == job_id and job.attributes["mcp_jobs.tool"] == "staged"
    assert job.attributes["mcp_jobs.attempt"] == 1 and job.attributes["mcp_jobs.outcome"] == "succeeded"
    assert job.status_code != STATUS_ERROR and call.attributes["mcp_jobs.job.id"] == job_id
    # The job's steps, in order, each a child span named by its message; reports within a step are its events.
    steps = children(spans, job)
    assert [step.name for step in steps] == ["started", "fetching", "parsing", "writing"]
    parsing = steps[2]
    assert [name for name, _ in parsing.events] == ["progress", "progress"]
    assert parsing.events[-1][1]["mcp_jobs.progress"] == pytest.approx(1 + 2 / 3)
    assert all(step.start_ns < later.start_ns for step, later in itertools.pairwise(steps))
    assert parsing.end_ns - parsing.start_ns >= 0.3e9  # it slept 0.4 s


async def test_a_failing_jobs_span_has_an_error_status_and_its_log_lines_name_the_trace(traced: Traced) -> None:
    trace_id, _, meta = caller_context()
    async with Client(traced.url) as client:
        result = await client.call_tool(
            "staged", {"stages": [{"message": "trying", "seconds": 0}], "fail": "the disk is full"}, meta=meta
        )
    assert result.is_error
    spans = wait_for_trace(traced.receiver, trace_id, {"tools/call staged", "job staged", "trying"})
    job, call = named(spans, "job staged"), named(spans, "tools/call staged")
    assert job.status_code == STATUS_ERROR and job.status_message == "the disk is full"
    assert job.attributes["error.type"] == "JobError" and job.attributes["mcp_jobs.outcome"] == "failed"
    assert call.status_code == STATUS_ERROR  # the SDK's own span: the call's result is an error
    # The worker's JSON log line about the failure carries the job span's ids.
    job_id = job.attributes["mcp_jobs.job.id"]
    line = traced.worker.wait_for_line(rf'"job_id": "{job_id}".*"trace_id"', timeout=10)
    logged = json.loads(line[line.index("{") :])
    assert (logged["trace_id"], logged["span_id"]) == (trace_id, job.span_id)


async def test_fan_out_parts_are_children_of_their_job(traced: Traced) -> None:
    trace_id, _, meta = caller_context()
    async with Client(traced.url) as client:
        result = await client.call_tool("fan_twice", {"n": 3}, meta=meta)
    assert not result.is_error, result.content
    spans = receiver_wait_parts(traced.receiver, trace_id, parts=6)
    job = named(spans, "job fan_twice")
    by_id = {span.span_id: span for span in spans}
    for part in (span for span in spans if span.name == "run/mcp_jobs.part"):
        ancestors = []
        span = part
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            ancestors.append(span.span_id)
        assert job.span_id in ancestors, part


def receiver_wait_parts(receiver: Receiver, trace_id: str, parts: int) -> list[ReceivedSpan]:
    receiver.wait_for(
        lambda spans: (
            sum(1 for s in spans if s.trace_id == trace_id and s.name == "run/mcp_jobs.part") >= parts
            and any(s.trace_id == trace_id and s.name == "job fan_twice" for s in spans)
        ),
        timeout=30,
        what=f"{parts} part runs and their job",
    )
    return receiver.of_trace(trace_id)


async def test_a_handoff_tools_request_links_to_the_jobs_trace(traced: Traced) -> None:
    trace_id, _, meta = caller_context()
    later_trace, _, later_meta = caller_context()
    async with Client(traced.url) as client:
        handed = await client.call_tool("long_haul", {"steps": 30, "delay": 0.1}, meta=meta)
        job_id = job_id_of(handed)
        status = await client.call_tool("job_status", {"job_id": job_id}, meta=later_meta)
    assert not status.is_error, status.content
    (asked,) = [
        span
        for span in wait_for_trace(traced.receiver, later_trace, {"tools/call job_status"})
        if span.name == "tools/call job_status"
    ]
    enqueue = named(wait_for_trace(traced.receiver, trace_id, {"enqueue long_haul"}), "enqueue long_haul")
    assert (trace_id, enqueue.span_id) in asked.links and asked.attributes["mcp_jobs.job.id"] == job_id


async def test_without_the_variables_no_sdk_is_loaded(stack: Stack) -> None:
    """The suite's own stack runs with no `OTEL_*` variable: its worker's pool processes have
    loaded nothing of the SDK's tracing, and neither has a server once it is set up to serve."""
    async with Client(stack.http_url) as client:
        result = await client.call_tool("loaded_modules", {"prefixes": TRACING_MODULES}, meta=caller_context()[2])
    assert not result.is_error and result.structured_content == {"result": []}, result
    script = (
        "import sys\n"
        "from mcp_jobs import tracing\n"
        "from mcp_jobs.server.app import Runtime, build_http_app\n"
        "from mcp_jobs.settings import get_settings\n"
        "assert not tracing.configure(tracing.SERVER_SERVICE)\n"
        "build_http_app(Runtime(get_settings()))\n"
        f"print([m for m in sys.modules if m.startswith(tuple({TRACING_MODULES!r}))])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_mcp_jobs_call_sends_its_trace_context_and_exports_its_own_span(
    traced: Traced, stack_env: dict[str, str]
) -> None:
    """The CLI is set up by the same variables: its whole call is one span, the SDK's request
    spans sit under it, and the server's `tools/call` under those (through `_meta.traceparent`)."""
    env = stack_env | {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": traced.receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    stages = json.dumps({"stages": [{"message": "from the terminal", "seconds": 0}]})
    done = subprocess.run(
        [sys.executable, "-m", "mcp_jobs.server.cli", "call", traced.url, "staged", "--json", stages, "--json-output"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    received = traced.receiver.wait_for(
        lambda spans: any(span.name == "mcp-jobs call staged" for span in spans), timeout=30, what="the CLI's span"
    )
    (root,) = [span for span in received if span.name == "mcp-jobs call staged"]
    assert root.service == "mcp-jobs-cli" and root.parent_id == ""
    spans = wait_for_trace(
        traced.receiver, root.trace_id, {"MCP send tools/call staged", "tools/call staged", "from the terminal"}
    )
    sent, call = named(spans, "MCP send tools/call staged"), named(spans, "tools/call staged")
    assert sent.parent_id == root.span_id and call.parent_id == sent.span_id and call.service == "mcp-jobs-server"


async def test_a_two_way_jobs_questions_and_answering_calls_are_in_its_trace(traced: Traced) -> None:
    """On 2026-07-28 a question ends the call with an `InputRequiredResult`, and the client calls
    again with the answers: the questions and answers are events of the job's span, the wait for
    each a step, and each answering call a request of its own that names the job."""

    async def answer(_: Any, params: ElicitRequestParams) -> ElicitResult:
        content = {"ok": True} if "Go ahead" in params.message else {"colour": "teal"}
        return ElicitResult(action="accept", content=content)

    trace_id, caller_span, meta = caller_context()
    async with Client(traced.url, mode="auto", elicitation_callback=answer) as client:
        result = await client.call_tool("interview", {"tag": uuid.uuid4().hex}, meta=meta)
    assert not result.is_error, result.content
    spans = wait_for_trace(traced.receiver, trace_id, {"job interview", "done"})
    job = named(spans, "job interview")
    assert [name for name, _ in job.events] == ["question", "answered", "question", "answered"]
    assert [attributes["mcp_jobs.round"] for _, attributes in job.events] == [1, 1, 2, 2]
    steps = [step.name for step in children(spans, job)]
    assert steps == [
        "started",
        "gathered the data",
        "waiting for an answer: Go ahead?",
        "confirmed",
        "waiting for an answer: Favourite colour?",
        "done",
    ]
    # The SDK re-issues the call with the original `_meta`: all three calls are the caller's
    # children in this trace, each naming the job (a call from another trace would link to it,
    # as the handoff tools' do above).
    traced.receiver.wait_for(
        lambda received: sum(1 for s in received if s.trace_id == trace_id and s.name == "tools/call interview") == 3,
        timeout=30,
        what="the three calls",
    )
    calls = [span for span in traced.receiver.of_trace(trace_id) if span.name == "tools/call interview"]
    assert len(calls) == 3 and {span.parent_id for span in calls} == {caller_span}
    assert {span.attributes["mcp_jobs.job.id"] for span in calls} == {job.attributes["mcp_jobs.job.id"]}
