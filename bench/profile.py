"""Where the server's CPU goes, per call and per notification: py-spy samples of the real server
under load, each sample put in the part of the path it was spent in.

Two loads, one server process each time (2 workers beside it):
- calls: no-op jobs as fast as the client sends them (the per-call path: the SDK's request,
  our dispatch, the first snapshot's script, the Celery message, the follower, the result);
- notifications: jobs reporting a step every 2 ms with the rate cap off (the per-notification
  path: the pub/sub reader, the follower's turn, the gate, the SDK's send).

py-spy (`--native`, so C frames such as hiredis and the selector count too) samples the server's
threads while they run; the server's CPU time over the same window (psutil) is split in the
samples' proportions. A sample goes to the first part, in `PARTS` order, that any of its frames
belongs to: a Redis command issued by the follower counts as the follower's, one issued for
the job's first snapshot as the script call, the Celery message built for it as the message.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import psutil

from bench.measure import Row
from bench.stack import bench_stack
from bench.throughput import calls_per_second, notifications_delivered

T = TypeVar("T")

SCENARIO = "10 server CPU breakdown"
SAMPLE_RATE = 250
"""py-spy samples per second."""

NOTIFY_CALLS = 4
NOTIFY_INTERVAL = 0.002
"""The notification load: calls reporting a step this often (2,000 steps/s in all, which one
server process forwards without collapsing any)."""

PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("pub/sub reader", ("/server/listener.py", "/server/sharded_listener.py")),
    ("Celery message", ("/server/enqueue.py", "/kombu/", "/celery/")),
    ("follower (ours, with its Redis reads)", ("/server/follow.py", "/server/gate.py", "/server/deadlines.py")),
    ("first snapshot (script call)", ("_queue (", "/server/snapshots.py", "/_store.py")),
    ("dispatch (ours)", ("/server/dispatch.py", "/server/handoff.py", "/server/callers.py", "/server/app.py")),
    ("Redis client (other)", ("/redis/",)),
    ("SDK: request handling and send", ("/mcp/", "/mcp_types/", "/pydantic", "/sse_starlette/")),
    ("HTTP server (uvicorn, starlette, h11)", ("/uvicorn/", "/starlette/", "/h11/", "/httptools/", "/anyio/")),
    ("asyncio inside a task (queues, events, timeouts)", ("/asyncio/",)),
]
"""The parts of the path, in the order a sample is matched against them."""


LOOP_ENTRY = "Handle._run ("
"""The frame where asyncio enters a callback or a task's step (`Handle._run`): frames outside it
are the loop itself, shared by every sample."""


IDLE_FRAMES = ("epoll_wait", "Condition.wait (", "lock_PyThread_acquire_lock")
"""Frames of a thread that waits: the loop in `epoll_wait`, an idle worker thread of anyio's on
its queue. With `--native` py-spy cannot tell such a thread idle and samples it as if it ran;
counted, they swelled "event loop and sockets" (an idle thread alone took 40% of the samples)
and shrank every other part."""


def part_of(stack: str) -> str | None:
    """The part a collapsed stack ("outer;...;inner") belongs to (see the module doc), or None
    for a thread that waits (`IDLE_FRAMES`). Only the frames inside the loop's callback count:
    outside it, every sample shares uvicorn's `run` and asyncio's loop, and a sample with
    nothing inside is the loop's own work (scheduling, reading the selector's events)."""
    frames = stack.split(";")
    if any(idle in frame for frame in frames for idle in IDLE_FRAMES):
        return None
    entries = [i for i, frame in enumerate(frames) if frame.startswith(LOOP_ENTRY) and "asyncio/events.py" in frame]
    if not entries:
        return "event loop and sockets"
    frames = frames[entries[-1] + 1 :]
    for name, markers in PARTS:
        if any(marker in frame for frame in frames for marker in markers):
            return name
    return "other"


def parse_raw(text: str) -> Counter[str]:
    """Samples per part from py-spy's raw output (one "stack count" per line)."""
    parts: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        part = part_of(stack) if stack and count.isdigit() else None
        if part is not None:
            parts[part] += int(count)
    return parts


def profiled(pid: int, work: Callable[[], Awaitable[T]]) -> tuple[T, Counter[str], float]:
    """Run `work` while py-spy samples process `pid`; return its value, the samples per part and
    the CPU seconds the process spent meanwhile."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    process = psutil.Process(pid)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "raw.txt"
        command = [spy, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE), "--native", "--full-filenames"]
        command += ["--format", "raw", "--output", str(out)]  # --native needs the process paused per sample
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            anyio.run(anyio.sleep, 1.0)  # py-spy attaches
            before = process.cpu_times()
            value = anyio.run(work)
            after = process.cpu_times()
        finally:
            recorder.send_signal(signal.SIGINT)
            _, err = recorder.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-2000:]}")
        parts = parse_raw(out.read_text())
    return value, parts, (after.user - before.user) + (after.system - before.system)


def breakdown(quick: bool) -> list[Row]:
    calls, steps = (300, 750) if quick else (1000, 2500)
    rows: list[Row] = []
    with bench_stack(workers=2, concurrency=4, pool="threads", progress_rate="1000000") as stack:
        _, per_call, call_cpu = profiled(stack.server.pid, lambda: calls_per_second(stack.url, "noop", calls))
        arguments = {"steps": steps, "interval": NOTIFY_INTERVAL}
        (sent, _), per_note, note_cpu = profiled(
            stack.server.pid, lambda: notifications_delivered(stack.url, "stamped", arguments, NOTIFY_CALLS)
        )
    rows += _rows("per call", per_call, 1000 * call_cpu / calls, "ms", f"{calls} no-op calls")
    load = f"{sent:,} of {steps * NOTIFY_CALLS:,} steps sent ({NOTIFY_CALLS} calls, a step every {NOTIFY_INTERVAL} s)"
    rows += _rows("per notification", per_note, 1e6 * note_cpu / max(sent, 1), "µs", load)
    return rows


def _rows(what: str, parts: Counter[str], total: float, unit: str, load: str) -> list[Row]:
    samples = sum(parts.values()) or 1
    rows = [Row(SCENARIO, f"server CPU {what}", total, unit, note=f"{load}; {samples:,} samples at {SAMPLE_RATE}/s")]
    for name, _ in [*PARTS, ("event loop and sockets", ()), ("other", ())]:
        share = parts.get(name, 0) / samples
        rows.append(Row(SCENARIO, f"{what}: {name}", total * share, unit, note=f"{share:.0%} of the samples"))
    return rows
