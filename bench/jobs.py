"""Jobs used only by the benchmarks."""

from __future__ import annotations

import time

from mcp_jobs import Progress, job


@job
def noop() -> int:
    """Do nothing: the per-job overhead of the bridge."""
    return 0


@job
def tagged(progress: Progress, tag: str, steps: int = 5, delay: float = 0.0) -> str:
    """Report `steps` steps tagged with `tag`, `delay` seconds apart."""
    progress.set_total(steps, f"{tag}: start")
    for step in range(1, steps + 1):
        if delay:
            time.sleep(delay)
        progress.report(step, f"{tag}: step {step}")
    return tag


@job
def stamped(progress: Progress, steps: int, interval: float) -> int:
    """Report `steps` steps `interval` seconds apart, each message carrying its wall-clock send time."""
    progress.set_total(steps)
    next_at = time.monotonic()
    for step in range(1, steps + 1):
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        progress.report(step, repr(time.time()))
    return steps


@job
def hold(progress: Progress, seconds: float) -> int:
    """Stay in flight for `seconds`, reporting once a second."""
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        progress.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        step += 1
        progress.report(step, repr(time.time()))
    return step
