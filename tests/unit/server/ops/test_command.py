"""`mcp-jobs jobs`: what it draws of hostile job text, how a watch stops, and how one job's
timeline (`mcp-jobs jobs JOB_ID`) reads."""

from __future__ import annotations

import asyncio
import io
import json
import signal

import pytest
from click.testing import CliRunner
from rich.console import Console, RenderableType

from mcp_jobs.server.ops.command import SLOWEST, STILL_GOING, _until_stopped, jobs, render, render_job
from mcp_jobs.server.ops.view import JobDetail, JobRow, JobsView, QueueRow, WorkerRow, detail_of

HOSTILE = "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07\x1b[2J\x9b31m[bold]forged\r\n"
CONTROLS = {chr(code) for code in (*range(0x20), *range(0x7F, 0xA0))} - {"\n"}


def _row(
    state: str,
    tool: str,
    caller: str = "",
    message: str | None = None,
    worker: str | None = None,
    error: str | None = None,
) -> JobRow:
    return JobRow(
        job_id="0" * 36,
        tool=tool,
        caller=caller,
        state=state,
        progress=1.0,
        total=2.0,
        status=f"[1/2] 50% {message}",
        message=message,
        created_at=0.0,
        updated_at=1.0,
        age=1.0,
        queue_wait=None,
        attempt=1,
        task=False,
        worker=worker,
        heartbeat=True,
        error=error,
        error_type="JobError" if error else None,
    )


def _view() -> JobsView:
    running = _row("running", tool=HOSTILE, caller=HOSTILE, message=HOSTILE, worker=HOSTILE)
    failed = _row("failed", tool=HOSTILE, error=HOSTILE)
    return JobsView(
        now=2.0,
        caller=None,
        in_flight=[running],
        in_flight_total=1,
        failures=[failed],
        failures_total=1,
        recent_failures_for=3600,
        counts={"running": 1, "failed": 1},
        queues=[QueueRow(name=HOSTILE, depth=0, workers=1)],
        workers=[WorkerRow(hostname=HOSTILE, queues=[HOSTILE], pid=1)],
        limit=500,
        scanned=2,
        complete=True,
    )


def test_the_tables_show_what_jobs_wrote_escaped() -> None:
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(render(_view(), "ns"))
    drawn = out.getvalue()
    assert not CONTROLS & set(drawn), repr(drawn)
    assert "\\x1b]8;;https://evil.example\\x07click" in drawn and "[bold]forged\\r\\n" in drawn, drawn


def test_the_json_output_is_escaped_by_json_itself() -> None:
    text = json.dumps(_view().to_json())
    assert not CONTROLS & set(text) and json.loads(text)["in_flight"][0]["message"] == HOSTILE


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_watch_stops_on_a_signal_even_if_it_inherited_sigint_ignored(signum: int) -> None:
    """A non-interactive shell starts background jobs with SIGINT ignored; Python then never raises
    KeyboardInterrupt. The watch's own handlers stop it regardless."""
    cleaned_up = asyncio.Event()

    async def watch() -> None:
        try:
            signal.raise_signal(signum)
            await asyncio.Event().wait()  # a watch waits for ever
        finally:
            cleaned_up.set()

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_until_stopped(watch()))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cleaned_up.is_set()


JOB_ID = "0b6f3c9e-1d2a-4c5b-8e7f-9a0b1c2d3e4f"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def drawn(renderable: RenderableType) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(renderable)
    return out.getvalue()


def detail(
    state: str = "succeeded",
    messages: tuple[str, ...] = ("started", "fetching", "parsing", "writing"),
    ats: tuple[float, ...] = (102.0, 102.2, 102.4, 103.6),
    total: int = 0,
    **fields: str,
) -> JobDetail:
    snapshot = {
        "job": "staged",
        "state": state,
        "seq": "9",
        "created_at": "100.0",
        "started_at": "102.0",
        "attempt": "1",
        "caller": "",
        "steps": str(total or len(messages)),
        "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
        **fields,
    }
    if state in ("succeeded", "failed", "cancelled"):
        snapshot.setdefault("updated_at", "103.8")
    entries = [
        json.dumps({"attempt": 1, "at": at, "progress": None, "total": None, "message": message})
        for at, message in zip(ats, messages)
    ]
    made = detail_of(JOB_ID, snapshot, state == "running", entries, 104.0)
    assert made is not None
    return made


def step_lines(text: str, *messages: str) -> list[str]:
    return [line for line in text.splitlines() if any(f" {message} " in line for message in messages)]


def test_a_jobs_timeline_shows_each_step_its_offset_its_time_and_the_slowest() -> None:
    text = drawn(render_job(detail()))
    started, fetching, parsing, writing = step_lines(text, "started", "fetching", "parsing", "writing")
    assert "+0.0s" in started and "+0.2s" in fetching and "+0.4s" in parsing and "+1.6s" in writing
    assert "1.2s" in parsing and SLOWEST in parsing
    assert not any(SLOWEST in line for line in (started, fetching, writing)), text
    assert "queue wait  2.0s" in text and "run time    1.8s" in text and TRACE in text
    assert "showing the last" not in text


def test_the_trace_is_linked_when_a_trace_url_is_set() -> None:
    text = drawn(render_job(detail(), "http://jaeger:16686/trace/{trace_id}"))
    assert f"http://jaeger:16686/trace/{TRACE}" in text


def test_a_running_jobs_last_step_is_still_going() -> None:
    text = drawn(render_job(detail("running", ("started", "fetching"), (102.0, 102.5))))
    (last,) = step_lines(text, "fetching")
    assert STILL_GOING in last and "1.5s so far" in last and SLOWEST in last, last
    assert "run time    2.0s so far" in text


def test_a_trimmed_timeline_says_how_many_steps_it_shows() -> None:
    messages = tuple(f"item {i}" for i in range(100))
    text = drawn(render_job(detail(messages=messages, ats=tuple(100.0 + i / 100 for i in range(100)), total=130)))
    assert "showing the last 100 of 130 steps" in text
    assert step_lines(text, "item 0")[0].split()[1] == "31", "steps keep their number in the whole run"


def test_a_failed_jobs_error_and_what_jobs_wrote_are_escaped() -> None:
    text = drawn(render_job(detail("failed", ("started", HOSTILE), (102.0, 102.5), job=HOSTILE, error=HOSTILE)))
    assert not CONTROLS & set(text), repr(text)
    assert "\\x1b]8;;https://evil.example\\x07click" in text and "[bold]forged\\r\\n" in text, text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["not-a-job"], "is not a job id"),
        ([JOB_ID.upper()], "is not a job id"),
        ([JOB_ID, "--watch"], "does not follow one JOB_ID"),
    ],
)
def test_a_malformed_job_id_is_a_usage_error(args: list[str], says: str) -> None:
    result = CliRunner().invoke(jobs, args)
    assert result.exit_code == 2 and says in result.output, result.output
