"""When tracing turns on, and what its helpers do while it is off (the tests' own processes have
no OpenTelemetry SDK set up: see tests/test_tracing.py for the real exporters)."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from mcp_jobs import tracing


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": " None "}, False),
        ({"OTEL_TRACES_EXPORTER": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, False),
    ],
)
def test_only_an_exporter_or_an_endpoint_asks_for_traces(environ: dict[str, str], expected: bool) -> None:
    assert tracing.wanted(environ) is expected


def test_trace_ids_are_read_from_well_formed_traceparents_only() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.trace_id(good) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (None, "", "00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "junk", good[:-3]):
        assert tracing.trace_id(bad) is None, bad


def test_while_off_every_helper_does_nothing() -> None:
    assert not tracing.enabled()
    with tracing.enqueue_span("tool", "job") as headers:
        assert headers == {}
    with tracing.span("work", {"a": 1}):
        assert tracing.log_ids() is None
    tracing.link_job("job", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert tracing.start_job("tool", "job", 1, {}, 0.0, "started") is None


def test_log_ids_name_the_current_span_even_one_only_propagated() -> None:
    """A caller's context with no SDK here (a non-recording span) still names its trace in logs."""
    context = trace.SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True)
    with trace.use_span(trace.NonRecordingSpan(context)):
        assert tracing.log_ids() == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
