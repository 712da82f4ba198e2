"""`mcp-jobs jobs`: what it draws of hostile job text, and how a watch stops."""

from __future__ import annotations

import asyncio
import io
import json
import signal

import pytest
from rich.console import Console

from mcp_jobs.server.ops.command import _until_stopped, render
from mcp_jobs.server.ops.view import JobRow, JobsView, QueueRow, WorkerRow

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
