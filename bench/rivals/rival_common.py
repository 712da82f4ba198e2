"""What the rival clients share (each runs in its rival's own virtualenv, so only the standard
library and anyio here)."""

from __future__ import annotations

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
