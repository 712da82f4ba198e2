"""1,000 concurrent calls with progress over two worker processes: none lost, none mixed up.

    python -m bench.load [--calls 1000] [--workers 2] [--concurrency 2]

Two passes against one stack:

1. the `mcp` SDK client (8 sessions, both protocol eras): every call's result is its own, its
   progress messages are its own and strictly increasing;
2. raw HTTP (8 sessions, 2025-11-25): the bytes on each call's stream hold the job's final
   progress before the result and nothing after it.

Prints what it measured; exits non-zero if a call was lost, mixed up, or broke a progress rule.
The count of calls whose final progress did not reach the SDK client's callback is printed on
its own (see bench/RESULTS.md: the wire carries it; the SDK's legacy client sometimes drops it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import anyio
import httpx
from mcp import Client

from bench.stack import bench_stack

SESSIONS = 8
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


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
        if any(b <= a for a, b in zip(values, values[1:])):
            problems.append(f"{tag}: progress not strictly increasing {values}")
        if any(m and not (m.startswith(f"{tag}:") or m.startswith("queued")) for _, m in updates):
            problems.append(f"{tag}: another call's progress message")
        final_missing += not values or values[-1] != steps
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
            init = {
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
            }  # fmt: skip
            response = await http.post(url, json=init, headers=HEADERS)
            headers = HEADERS | {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)

            async def one(i: int) -> None:
                body = {
                    "jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                    "params": {"name": "tagged", "arguments": {"tag": f"w{i}", "steps": steps}, "_meta": {"progressToken": f"w{i}"}},
                }  # fmt: skip
                messages = []
                async with http.stream("POST", url, json=body, headers=headers) as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("data:") and line[5:].strip():
                            messages.append(json.loads(line[5:]))
                values = [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"]
                tokens = {m["params"]["progressToken"] for m in messages if m.get("method") == "notifications/progress"}
                if "result" not in messages[-1] or messages[-1]["result"].get("structuredContent") != {"result": f"w{i}"}:
                    problems.append(f"w{i}: the stream does not end with this call's result")
                if not values or values[-1] != steps or tokens != {f"w{i}"}:
                    problems.append(f"w{i}: final progress missing or foreign on the wire ({values}, {tokens})")
                if any(b <= a for a, b in zip(values, values[1:])):
                    problems.append(f"w{i}: progress not strictly increasing on the wire {values}")

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
