"""What the rival clients share (each runs in its rival's own virtualenv, so only the standard
library and anyio here)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio


async def burst(
    call: Callable[[Any], Awaitable[None]], sessions: list[Any], calls: int, timeout: float
) -> dict[str, Any]:
    """`calls` concurrent calls spread over `sessions`, within `timeout`: how many succeeded (the
    `call` returned), how many failed (it raised), and how long they all took."""
    ok = errors = 0
    first_error = ""

    async def one(session: Any) -> None:
        nonlocal ok, errors, first_error
        try:
            await call(session)
            ok += 1
        except Exception as exc:  # recorded, not raised: the figure says how many failed
            errors += 1
            first_error = first_error or repr(exc)[:300]

    started = time.perf_counter()
    with anyio.move_on_after(timeout) as scope:
        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(one, sessions[i % len(sessions)])
    elapsed = time.perf_counter() - started
    return {
        "calls": calls,
        "ok": ok,
        "errors": errors,
        "first_error": first_error,
        "elapsed": elapsed,
        "timed_out": scope.cancelled_caught,
    }


Scenario = Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]


def run_cli(throughput: Scenario, progress: Scenario, with_tasks: bool = False) -> None:
    """The clients' command line: `<mode> <url> [options]`, the scenario's figures printed as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["throughput", "progress"])
    parser.add_argument("url")
    parser.add_argument("--tool", default="noop")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--timeout", type=float, default=60.0)
    if with_tasks:
        parser.add_argument("--tasks", action="store_true")
    args = parser.parse_args()
    run = throughput if args.mode == "throughput" else progress
    print(json.dumps(anyio.run(run, args)))
