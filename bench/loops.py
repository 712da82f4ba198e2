"""Server settings decided on the whole server, in rounds that take turns on the same machine so
its drift falls on both alike: the event loop (asyncio against uvloop, `MCP_JOBS_EVENT_LOOP`)
and the garbage collector (Python's defaults against the frozen start-up heap,
`MCP_JOBS_GC_FREEZE`, see `server/collector.py`).

Each round starts a fresh stack per variant and measures what the setting could change:
notifications forwarded per server CPU-second (rate cap off), server CPU per no-op call, and
no-op jobs/s. A bare stream woken per message is known to cost about half under uvloop
(DESIGN.md); whether the server gains is what this says.
"""

from __future__ import annotations

import statistics

from bench.measure import Row
from bench.stack import bench_stack
from bench.throughput import calls_per_second, notifications_delivered, with_cpu

METRICS = [
    ("notifications per server CPU-second", "/s"),
    ("server CPU per no-op call", "ms"),
    ("no-op jobs/s", "/s"),
]


def one_round(calls: int, steps: int, settings: dict[str, str]) -> tuple[float, float, float]:
    """(notifications per server CPU-second, server CPU ms per call, jobs/s) with `settings`."""
    with bench_stack(workers=2, concurrency=4, pool="threads", progress_rate="1000000", **settings) as stack:
        (sent, _), [burst_cpu] = with_cpu(
            [stack.server.pid], lambda: notifications_delivered(stack.url, "burst", {"steps": steps}, 4)
        )
        rate, [call_cpu] = with_cpu([stack.server.pid], lambda: calls_per_second(stack.url, "noop", calls))
    return sent / burst_cpu, 1000 * call_cpu / (calls + 4), rate


def taking_turns(scenario: str, variants: dict[str, dict[str, str]], quick: bool) -> list[Row]:
    """Rows for the second of two `variants` (name: settings) against the first, in rounds."""
    rounds, calls, steps = (2, 300, 1000) if quick else (3, 1000, 3000)
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, settings in variants.items():
            figures[name].append(one_round(calls, steps, settings))
    (base_name, base_figures), (name, new_figures) = figures.items()
    rows = []
    for index, (metric, unit) in enumerate(METRICS):
        base = [figure[index] for figure in base_figures]
        new = [figure[index] for figure in new_figures]
        spread = (
            f"rounds: {base_name} {', '.join(f'{v:.3g}' for v in base)}; {name} {', '.join(f'{v:.3g}' for v in new)}"
        )
        rows.append(
            Row(scenario, f"{metric}, {name}", statistics.median(new), unit, statistics.median(base), note=spread)
        )
    return rows


def event_loops(quick: bool) -> list[Row]:
    return taking_turns(
        "11 event loop", {"asyncio": {"event_loop": "asyncio"}, "uvloop": {"event_loop": "uvloop"}}, quick
    )


def garbage_collector(quick: bool) -> list[Row]:
    variants = {"Python's defaults": {"gc_freeze": "false"}, "frozen start-up heap": {"gc_freeze": "true"}}
    return taking_turns("12 garbage collector", variants, quick)
