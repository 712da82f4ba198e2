"""Scenario 5 with more server processes: no-op jobs/s through `serve --processes N` (1, 2, 4),
against a plain SDK tool's ceiling with the same clients.

One client process tops out near what one server process serves (the SDK's client costs about
as much per call as its server), so the calls come from `CLIENTS` client processes at once, each
with `SESSIONS` sessions. Each client warms up, says so, and starts on a word from here; the
rate is all the calls over the time from the first start to the last end (their monotonic
clocks are the machine's). The same workers, Redis and clients serve every N, and the runs take
turns (1, 2, 4, then again) so the machine's drift falls on all of them.

    python -m bench --only processes
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from statistics import median

import anyio
import psutil
from mcp import Client

from bench.measure import Row
from bench.stack import bench_env, bench_stack, sdk_server, sdk_server_pid
from tests.support.processes import REPO

CLIENTS = 2
SESSIONS = 4
PROCESSES = (1, 2, 4)


async def _client(url: str, tool: str, count: int) -> None:
    """One client process: warm up, wait for the word, run `count` calls, print start and end."""
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url, mode="auto")) for _ in range(SESSIONS)]
        for client in clients:
            await client.call_tool(tool, {})
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(clients[i % SESSIONS].call_tool, tool, {})
        print(started, time.monotonic(), flush=True)


def calls_per_second(url: str, tool: str, count: int, server_pid: int) -> tuple[float, float, float]:
    """`count` calls from each of `CLIENTS` client processes at once: all of them per second, and
    the cores the server and the whole machine kept busy meanwhile."""
    command = [sys.executable, "-m", "bench.processes", url, tool, str(count)]
    clients = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=bench_env(""))
        for _ in range(CLIENTS)
    ]
    try:
        for client in clients:
            assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        server, machine, began = _server_cpu(server_pid), psutil.cpu_times(), time.monotonic()
        for client in clients:
            assert client.stdin is not None
            client.stdin.write("go\n")
            client.stdin.flush()
        spans = []
        for client in clients:
            assert client.stdout is not None
            start, end = map(float, client.stdout.readline().split())
            spans.append((start, end))
            assert client.wait(60) == 0
        server, machine = _server_cpu(server_pid) - server, _busy(machine, psutil.cpu_times())
        measured = time.monotonic() - began  # the readings' own window: a client's exit is in it
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
    window = max(end for _, end in spans) - min(start for start, _ in spans)
    return CLIENTS * count / window, server / measured, machine / measured


def _server_cpu(pid: int) -> float:
    """CPU seconds of a server and (`--processes N`) its children so far."""
    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def _busy(before: object, after: object) -> float:
    """CPU seconds the whole machine was busy (all but idle and I/O wait) between two readings."""
    idle = ("idle", "iowait")  # and time the hypervisor gave to other machines (steal)
    fields = [f for f in after._fields if f not in idle and f not in ("steal", "guest", "guest_nice")]  # type: ignore[attr-defined]
    return sum(getattr(after, f) - getattr(before, f) for f in fields)


def processes_throughput(quick: bool) -> list[Row]:
    count, rounds = (150, 1) if quick else (400, 2)
    rates: dict[int, list[float]] = {n: [] for n in PROCESSES}
    busy: dict[int, list[tuple[float, float]]] = {n: [] for n in PROCESSES}
    with sdk_server() as sdk_url:
        sdk = [calls_per_second(sdk_url, "sdk_noop", count, sdk_server_pid(sdk_url))[0] for _ in range(rounds)]
    for _ in range(rounds):
        for n in PROCESSES:
            with bench_stack(workers=2, concurrency=2, processes=str(n)) as stack:
                rate, server, machine = calls_per_second(stack.url, "noop", count, stack.server.pid)
                rates[n].append(rate)
                busy[n].append((server, machine))
    cores = os.cpu_count()
    scenario = "5 job throughput, N server processes"
    rows = [
        Row(
            scenario,
            f"no-op jobs/s, {n} server process{'es' if n > 1 else ''}",
            median(rates[n]),
            "/s",
            median(rates[1]),
            note=f"{cores} cores; rounds: {', '.join(f'{r:.0f}' for r in rates[n])}; baseline: 1 process; "
            f"cores busy: server {median(b[0] for b in busy[n]):.2f}, machine {median(b[1] for b in busy[n]):.2f}",
        )
        for n in PROCESSES
    ]
    rows += [
        Row(
            scenario,
            f"no-op jobs/s vs the SDK's own ceiling, {n} server process{'es' if n > 1 else ''}",
            median(rates[n]),
            "/s",
            median(sdk),
            "≥ 0.8×",
            f"{CLIENTS} client processes x {SESSIONS} sessions x {count} calls; baseline: a plain SDK tool that "
            "returns at once, one server process, same clients",
        )
        for n in PROCESSES
    ]
    return rows


if __name__ == "__main__":
    anyio.run(_client, sys.argv[1], sys.argv[2], int(sys.argv[3]))
