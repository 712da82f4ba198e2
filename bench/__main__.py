"""Run every benchmark, print the figures and write bench/RESULTS.md.

    python -m bench            # the full set (a few minutes)
    python -m bench --quick    # smaller counts, for a first look
    python -m bench --only latency scale
    python -m bench --only startup   # `mcp-jobs call` startup against the SDK client import
    python -m bench --only tracing   # server CPU per call with the otel extra off, on, and absent
    python -m bench --only profile   # where the server's CPU goes, per call and per notification (py-spy)
    python -m bench --only loops     # asyncio against uvloop, and the gc settings, in rounds taking turns
    python -m bench --only processes # no-op jobs/s through serve --processes 1, 2 and 4

Every figure is measured against its baseline in the same run, on this machine, over loopback,
with real Redis, real Celery workers and the `mcp` client. Nothing here asserts a speed: the
targets are printed beside the figures, and bench/ANALYSIS.md says why a missed one is missed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from bench.floors import parts_cost
from bench.latency import progress_latency, under_load
from bench.loops import event_loops, garbage_collector
from bench.measure import Row, table, write_results
from bench.processes import processes_throughput
from bench.profile import breakdown
from bench.scale import in_flight, scaling_out
from bench.startup import call_startup
from bench.throughput import overhead_and_job_throughput, server_throughput
from bench.topologies import topologies
from bench.tracing import tracing_cost

HERE = Path(__file__).parent
SCENARIOS: dict[str, list[Callable[[bool], list[Row]]]] = {
    "parts": [parts_cost],
    "startup": [call_startup],
    "latency": [progress_latency, under_load],
    "throughput": [server_throughput, overhead_and_job_throughput],
    "processes": [processes_throughput],
    "scale": [in_flight, scaling_out],
    "tracing": [tracing_cost],
    "topologies": [topologies],
    "profile": [breakdown],
    "loops": [event_loops, garbage_collector],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute and a half)")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="run only these groups")
    parser.add_argument("--no-write", action="store_true", help="print, but leave RESULTS.md alone")
    args = parser.parse_args()
    rows: list[Row] = []
    started = time.perf_counter()
    for group in args.only or SCENARIOS:
        for scenario in SCENARIOS[group]:
            print(f"running {scenario.__name__} ...", end=" ", flush=True)
            began = time.perf_counter()
            rows += scenario(args.quick)
            print(f"{time.perf_counter() - began:.0f} s", flush=True)
    print(table(rows))
    took = time.perf_counter() - started
    print(f"\n{len(rows)} figures in {took:.0f} s")
    if not args.no_write:
        preamble = (
            f"Written by `python -m bench{' --quick' if args.quick else ''}` in {took:.0f} s. "
            "Ratios are value / baseline, both measured in the same run."
        )
        write_results(rows, HERE / "RESULTS.md", preamble, (HERE / "ANALYSIS.md").read_text())


if __name__ == "__main__":
    main()
