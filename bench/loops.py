"""The event loop, decided on the whole server: asyncio against uvloop (`MCP_JOBS_EVENT_LOOP`),
in rounds that take turns on the same machine, so its drift falls on both alike.

Each round starts a fresh stack per loop and measures what the loop could change: notifications
forwarded per server CPU-second (rate cap off), server CPU per no-op call, and no-op jobs/s.
A bare stream woken per message is known to cost about half under uvloop (DESIGN.md); whether
the server gains is what this says.
"""

from __future__ import annotations

import statistics

from bench.measure import Row
from bench.stack import bench_stack
from bench.throughput import calls_per_second, notifications_delivered, with_cpu

SCENARIO = "11 event loop"
LOOPS = ("asyncio", "uvloop")


def one_round(loop: str, calls: int, steps: int) -> tuple[float, float, float]:
    """(notifications per server CPU-second, server CPU ms per call, jobs/s) on `loop`."""
    with bench_stack(workers=2, concurrency=4, pool="threads", progress_rate="1000000", event_loop=loop) as stack:
        (sent, _), [burst_cpu] = with_cpu(
            [stack.server.pid], lambda: notifications_delivered(stack.url, "burst", {"steps": steps}, 4)
        )
        rate, [call_cpu] = with_cpu([stack.server.pid], lambda: calls_per_second(stack.url, "noop", calls))
    return sent / burst_cpu, 1000 * call_cpu / (calls + 4), rate


def event_loops(quick: bool) -> list[Row]:
    rounds, calls, steps = (2, 300, 1000) if quick else (3, 1000, 3000)
    figures: dict[str, list[tuple[float, float, float]]] = {loop: [] for loop in LOOPS}
    for _ in range(rounds):
        for loop in LOOPS:
            figures[loop].append(one_round(loop, calls, steps))
    rows = []
    names = [
        ("notifications per server CPU-second", "/s"),
        ("server CPU per no-op call", "ms"),
        ("no-op jobs/s", "/s"),
    ]
    for index, (metric, unit) in enumerate(names):
        base = [figure[index] for figure in figures["asyncio"]]
        fast = [figure[index] for figure in figures["uvloop"]]
        spread = f"rounds: asyncio {', '.join(f'{v:.3g}' for v in base)}; uvloop {', '.join(f'{v:.3g}' for v in fast)}"
        rows.append(
            Row(SCENARIO, f"{metric}, uvloop", statistics.median(fast), unit, statistics.median(base), note=spread)
        )
    return rows
