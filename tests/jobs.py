"""Jobs that exist only for the tests: failures, bursts, odd progress, argument round trips."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Annotated, Any

from mcp.types import ResourceLink
from pydantic import BaseModel, Field

from mcp_jobs import JobError, PartFailed, Progress, content, job


@job
def fail_politely(progress: Progress, reason: str) -> str:
    """Fail with a JobError whose message the model should see."""
    progress.report(1, "about to fail", total=2)
    raise JobError(reason)


@job
def crash(progress: Progress, secret: str) -> str:
    """Fail with an unexpected exception whose text must stay on the worker."""
    progress.report(1, "about to crash", total=2)
    raise KeyError(secret)


@job
def burst(progress: Progress, steps: int, interval: float = 0.0) -> int:
    """Report `steps` updates, `interval` seconds apart (0: as fast as possible)."""
    for step in range(1, steps + 1):
        if interval:
            progress.sleep(interval)
        progress.report(step, f"item {step}/{steps}", total=steps)
    return steps


@job
def wobbly(progress: Progress, values: list[float], interval: float = 0.1) -> list[float]:
    """Report `values` in the order given, however they go up or down."""
    for value in values:
        progress.report(value, f"at {value:g}")
        progress.sleep(interval)
    return values


class Item(BaseModel):
    name: str
    tags: list[str] = []


class Echo(BaseModel):
    text: str
    number: int
    item: Item
    maybe: float | None


@job
def echo(text: str, number: int, item: Item, maybe: float | None = None) -> Echo:
    """Return the arguments, to check they survive the trip to the worker (no Progress parameter)."""
    return Echo(text=text, number=number, item=item, maybe=maybe)


@job
async def async_steps(progress: Progress, steps: Annotated[int, Field(ge=1, le=100)] = 3) -> int:
    """An async job: report each step."""
    progress.set_total(steps)
    for step in range(1, steps + 1):
        await asyncio.sleep(0.01)
        progress.report(step, f"async step {step}")
    return steps * 10


@job(time_limit=1)
def overrun(progress: Progress, seconds: float = 30) -> str:
    """Sleep past the 1 s time limit."""
    progress.report(1, "sleeping")
    progress.sleep(seconds)
    return "finished"


@job(time_limit=1)
def stubborn(progress: Progress, seconds: float = 30) -> str:
    """Ignore the soft time limit, so only the hard limit stops it."""
    import time

    progress.report(1, "ignoring limits")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(BaseException):
            time.sleep(0.05)
    return "finished"


@job(queue="nobody")
def unheard(progress: Progress) -> str:
    """Routed to a queue no worker consumes (until a test starts one)."""
    progress.report(1, "finally ran")
    return "ran"


@job
def silent(progress: Progress, seconds: float) -> str:
    """Work for `seconds` without reporting anything."""
    import time

    time.sleep(seconds)
    return "done quietly"


def _tagged_steps(progress: Progress, tag: str, steps: int, delay: float) -> None:
    progress.set_total(steps, f"{tag}: starting")
    for step in range(1, steps + 1):
        progress.sleep(delay)
        progress.report(step, f"{tag}: step {step}")


@job(retry_safe=True)
def safe_steps(progress: Progress, tag: str, steps: int = 10, delay: float = 0.2) -> str:
    """Report `steps` steps; safe to re-run from scratch after a lost worker."""
    _tagged_steps(progress, tag, steps, delay)
    return f"{tag} done after attempt {progress.attempt}"


@job
def unsafe_steps(progress: Progress, tag: str, steps: int = 10, delay: float = 0.2) -> str:
    """Like safe_steps, but not safe to re-run."""
    _tagged_steps(progress, tag, steps, delay)
    return f"{tag} done"


@job
def big_result(size: int) -> str:
    """Return a string of `size` characters."""
    return "x" * size


MISTAKES = ("nan", "inf", "string", "bool", "number-message", "huge-message", "nan-result", "object-result")


@job
def careless(progress: Progress, mistake: str) -> dict[str, object]:
    """Make one of the mistakes of a careless job author, after a valid first report."""
    progress.report(1, "fine so far", total=3)
    bad: Any
    if mistake == "nan":
        progress.report(float("nan"), "not a number")
    elif mistake == "inf":
        progress.report(float("inf"), "infinite")
    elif mistake == "string":
        bad = "abc"
        progress.report(bad)
    elif mistake == "bool":
        bad = True
        progress.report(bad)
    elif mistake == "number-message":
        bad = 12345
        progress.report(2, bad)
    elif mistake == "huge-message":
        progress.report(2, "x" * 10_000_000)
    elif mistake == "nan-result":
        return {"x": float("nan")}
    elif mistake == "object-result":
        return {"x": object()}
    progress.report(3, "done")
    return {"x": 1}


@job(handoff_after=1)
def long_haul(progress: Progress, steps: int = 30, delay: float = 0.1) -> int:
    """Report `steps` steps `delay` apart; a call still running after 1 s hands the job off."""
    _tagged_steps(progress, "haul", steps, delay)
    return steps


@job(scopes=["reports"])
def scoped_report(title: str = "report") -> str:
    """Needs the `reports` scope when authentication is on."""
    return f"{title} ready"


@job(queue="drain")
def drain_steps(progress: Progress, steps: int = 10, delay: float = 0.2) -> int:
    """Report `steps` steps on the `drain` queue (a worker of its own, stopped by a test)."""
    _tagged_steps(progress, "drain", steps, delay)
    return steps


def pid_part(item: dict[str, Any]) -> dict[str, Any]:
    """One part of `fan`: wait, maybe refuse, and say which process ran it."""
    import os
    import time

    time.sleep(item["delay"])
    if item["fail"]:
        raise JobError(f"part {item['n']} refused")
    return {"n": item["n"], "pid": os.getpid()}


@job
def fan(
    progress: Progress, parts: int = 8, delay: float = 0.3, fail: int | None = None, fail_fast: bool = True
) -> dict[str, list[int]]:
    """Fan `parts` parts out over the workers; part `fail` (if any) fails."""
    items = [{"n": n, "delay": delay, "fail": n == fail} for n in range(parts)]
    results = progress.map(pid_part, items, fail_fast=fail_fast, describe=lambda item: f"item {item['n']}")
    done = [r for r in results if not isinstance(r, PartFailed)]
    return {
        "order": [r["n"] for r in done],
        "pids": sorted({r["pid"] for r in done}),
        "failed": [r.index for r in results if isinstance(r, PartFailed)],
    }


def square_part(n: int) -> int:
    """A part of `fan_twice`."""
    return n * n


@job
def fan_twice(progress: Progress, n: int = 4) -> dict[str, list[int]]:
    """Fan out twice in one job: each map has its own parts."""
    squares = progress.map(square_part, list(range(n)))
    doubles = progress.map(pid_part, [{"n": i, "delay": 0, "fail": False} for i in range(n)])
    return {"squares": squares, "second": [r["n"] for r in doubles]}


# Two-way jobs (tests/test_two_way.py).


class Go(BaseModel):
    ok: bool


class Colour(BaseModel):
    colour: str


def _count_run(tag: str) -> int:
    """Count this run of a job in Redis, so that a test sees how often the job ran."""
    from mcp_jobs.redis_connect import sync_client
    from mcp_jobs.settings import get_settings

    settings = get_settings()
    client = sync_client(settings)
    try:
        return int(client.incr(f"{settings.namespace}:test:runs:{tag}"))
    finally:
        client.close()


@job
def interview(progress: Progress, tag: str) -> dict[str, object]:
    """Do some work, ask whether to go on, ask a colour, finish: two rounds of questions."""
    runs = _count_run(tag)
    progress.info(f"{tag}: gathering")
    progress.report(1, "gathered the data", total=3)
    go = progress.ask("Go ahead?", Go)
    if not go.ok:
        raise JobError("stopped: the user said no")
    progress.report(2, "confirmed", total=3)
    colour = progress.ask("Favourite colour?", Colour)
    progress.report(3, "done", total=3)
    return {"runs": runs, "colour": colour.colour}


@job
def make_file(progress: Progress, megabytes: float, name: str = "data.bin") -> list[content.TextContent | ResourceLink]:
    """Make a file of `megabytes` (a repeating pattern) and return it by link, as an artifact."""
    data = (bytes(range(256)) * (int(megabytes * 1024 * 1024) // 256 + 1))[: int(megabytes * 1024 * 1024)]
    progress.report(1, "made the file", total=2)
    link = progress.artifact(name, data)
    progress.report(2, "stored it", total=2)
    return [content.text(f"{name}: {len(data)} bytes"), link]


@job(oversized="artifacts")
def big_report(progress: Progress, megabytes: float) -> list[content.TextContent | content.EmbeddedResource]:
    """A summary and a CSV of `megabytes`, embedded: over the inline cap, the CSV goes by link."""
    rows = int(megabytes * 1024 * 1024) // 16
    csv = "".join(f"{row:07d},{row % 97:06d}\n" for row in range(rows))
    return [content.text(f"{rows} rows"), content.embedded_file("report://usage.csv", csv, "text/csv")]


@job(task_after=1)
def patient_steps(progress: Progress, steps: int = 10, delay: float = 0.2) -> int:
    """Report `steps` steps `delay` apart; called as a task with a progress token, it streams for a second first."""
    progress.set_total(steps)
    for step in range(1, steps + 1):
        progress.sleep(delay)
        progress.report(step, f"step {step}/{steps}")
    return steps


class Stage(BaseModel):
    """One named step of `staged`: its message and how long it takes."""

    message: str
    seconds: float = Field(ge=0, le=30)
    reports: int = Field(default=1, ge=1, le=50)
    """Progress reports within the step (the first carries the message, the rest repeat it)."""


@job
def staged(progress: Progress, stages: list[Stage], fail: str | None = None) -> int:
    """Runs `stages` one after another (each a step of the job's timeline); fails at the end with
    `fail` when given. The timeline's and the traces' test job."""
    progress.set_total(len(stages))
    for index, stage in enumerate(stages):
        for report in range(stage.reports):
            progress.report(index + report / stage.reports, stage.message)
            progress.sleep(stage.seconds / stage.reports)
    if fail is not None:
        raise JobError(fail)
    return len(stages)


@job
def loaded_modules(prefixes: list[str]) -> list[str]:
    """The modules loaded in the worker process that runs this, among `prefixes` (what tracing
    left out when it is off)."""
    return sorted(name for name in sys.modules if name.startswith(tuple(prefixes)))
