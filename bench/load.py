"""1,000 concurrent calls with progress over two worker processes: none lost, none mixed up.

    python -m bench.load [--calls 1000] [--workers 2] [--concurrency 2]

Two passes against one stack:

1. the `mcp` SDK client (8 sessions, both protocol eras): every call's result is its own, its
   progress messages are its own and strictly increasing;
2. raw HTTP (8 sessions, 2025-11-25): the bytes on each call's stream hold the job's final
   progress before the result and nothing after it.

Prints what it measured; exits non-zero if a call was lost, mixed up, or broke a progress rule
(including a final progress that did not arrive before the result).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time

import anyio
import httpx
from mcp import Client

from bench.stack import bench_stack
from tests.support.rawclient import call_messages, open_session, tool_call, wire_problems

SESSIONS = 8


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def sdk_pass(url: str, calls: int, steps: int) -> tuple[dict[str, float], list[str]]:
    progress: dict[str, list[tuple[float, str | None]]] = {f"c{i:05d}": [] for i in range(calls)}
    latency: dict[str, float] = {}
    problems: list[str] = []
    sessions = [Client(url, mode="legacy" if i % 2 else "auto") for i in range(SESSIONS)]
    started = time.perf_counter()
    for session in sessions:
        await session.__aenter__()
    try:
        async with anyio.create_task_group() as tg:
            for i, tag in enumerate(progress):

                async def call(tag: str = tag, client: Client = sessions[i % SESSIONS]) -> None:
                    async def record(value: float, total: float | None, message: str | None) -> None:
                        progress[tag].append((value, message))

                    t0 = time.perf_counter()
                    result = await client.call_tool("tagged", {"tag": tag, "steps": steps}, progress_callback=record)
                    latency[tag] = time.perf_counter() - t0
                    if result.is_error or result.structured_content != {"result": tag}:
                        problems.append(f"{tag}: wrong result {result.structured_content or result.content}")

                tg.start_soon(call)
        elapsed = time.perf_counter() - started
        # Progress callbacks run in tasks of their own: let them finish before the sessions close.
        with anyio.move_on_after(5):
            while any(not u or u[-1][0] < steps for u in progress.values()):
                await anyio.sleep(0.01)
    finally:
        for session in reversed(sessions):
            await session.__aexit__(None, None, None)
    final_missing = 0
    for tag, updates in progress.items():
        values = [v for v, _ in updates]
        if any(b <= a for a, b in itertools.pairwise(values)):
            problems.append(f"{tag}: progress not strictly increasing {values}")
        if any(m and not (m.startswith(f"{tag}:") or m.startswith("queued")) for _, m in updates):
            problems.append(f"{tag}: another call's progress message")
        if not values or values[-1] != steps:
            final_missing += 1
            problems.append(f"{tag}: final progress did not arrive ({values})")
    figures = {
        "sdk_calls_completed": len(latency),
        "sdk_calls_per_s": len(latency) / elapsed,
        "sdk_call_latency_p50_s": statistics.median(latency.values()),
        "sdk_call_latency_p99_s": _percentile(list(latency.values()), 0.99),
        "sdk_notifications": sum(len(u) for u in progress.values()),
        "sdk_final_progress_not_at_callback": final_missing,
    }
    return figures, problems


async def wire_pass(url: str, calls: int, steps: int) -> tuple[dict[str, float], list[str]]:
    problems: list[str] = []
    per_session = calls // SESSIONS
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=calls + SESSIONS)) as http:

        async def session(offset: int) -> None:
            headers = await open_session(http, url)

            async def one(i: int) -> None:
                messages = await call_messages(
                    http, url, headers, tool_call(i + 1, "tagged", {"tag": f"w{i}", "steps": steps}, f"w{i}")
                )
                problems.extend(wire_problems(f"w{i}", messages, steps))

            await asyncio.gather(*(one(i) for i in range(offset, offset + per_session)))

        started = time.perf_counter()
        await asyncio.gather(*(session(k * per_session) for k in range(SESSIONS)))
        elapsed = time.perf_counter() - started
    return {"wire_calls": per_session * SESSIONS, "wire_calls_per_s": per_session * SESSIONS / elapsed}, problems


async def run_load(url: str, calls: int, steps: int) -> tuple[dict[str, float], list[str]]:
    sdk, sdk_problems = await sdk_pass(url, calls, steps)
    wire, wire_problems = await wire_pass(url, calls, steps)
    return sdk | wire, sdk_problems + wire_problems


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with bench_stack(workers=args.workers, concurrency=args.concurrency) as stack:
        figures, problems = anyio.run(run_load, stack.url, args.calls, args.steps)
    for key, value in figures.items():
        print(f"{key:>36}: {value:.3f}" if isinstance(value, float) else f"{key:>36}: {value}")
    for problem in problems[:20]:
        print("PROBLEM", problem)
    print(f"{len(problems)} problems")
    sys.exit(1 if problems or figures["sdk_calls_completed"] != args.calls else 0)


if __name__ == "__main__":
    main()
