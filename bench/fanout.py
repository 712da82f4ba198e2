"""Fan-out scaling: the same call (one call, split into parts) with 1, 2 and 4 worker processes.

Two jobs: `count_primes` (CPU-bound parts: the machine's core count bounds the speed-up, and on a
small machine Redis, the server and the client share those cores) and `fan` (8 parts that each
wait 0.25 s, as parts calling another service would: the speed-up shows how the parts spread).

    python -m bench.fanout [--limit N] [--chunks N]
"""

from __future__ import annotations

import argparse
import os
import time

import anyio
from mcp import Client

from bench.stack import bench_stack


async def _one_call(url: str, tool: str, arguments: dict[str, object]) -> float:
    async with Client(url) as client:
        started = time.perf_counter()
        result = await client.call_tool(tool, arguments)
        elapsed = time.perf_counter() - started
    assert not result.is_error, result.content
    return elapsed


def fanout_scaling(
    calls: dict[str, tuple[str, dict[str, object]]], processes: tuple[int, ...] = (1, 2, 4)
) -> dict[str, dict[int, float]]:
    """Seconds for each fanned-out call with each number of worker processes (one worker, N slots),
    the best of three after a warm-up."""
    seconds: dict[str, dict[int, float]] = {label: {} for label in calls}
    for count in processes:
        with bench_stack(workers=1, concurrency=count) as stack:
            for label, (tool, arguments) in calls.items():
                anyio.run(_one_call, stack.url, tool, arguments)  # warm up: every pool process imports and connects
                seconds[label][count] = min(anyio.run(_one_call, stack.url, tool, arguments) for _ in range(3))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--limit", type=int, default=40_000_000)
    parser.add_argument("--chunks", type=int, default=16)
    args = parser.parse_args()
    calls = {
        f"count_primes(limit={args.limit:,}, chunks={args.chunks})": (
            "count_primes",
            {"limit": args.limit, "chunks": args.chunks},
        ),
        "fan(parts=8, delay=0.25)": ("fan", {"parts": 8, "delay": 0.25}),
    }
    print(f"one fanned-out call, {os.cpu_count()} cores")
    for label, seconds in fanout_scaling(calls).items():
        print(f"\n{label}\nworker processes | seconds | speed-up vs 1")
        for count, value in seconds.items():
            print(f"{count:>16} | {value:7.2f} | {seconds[1] / value:5.2f}x")


if __name__ == "__main__":
    main()
