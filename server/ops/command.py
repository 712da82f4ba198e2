"""`mcp-jobs jobs`: what the job system is doing right now, read from Redis directly.

Jobs in flight (tool, caller, state, progress, status, age, queue wait, worker), recent failures
with their error, queue depth per queue and the workers alive. `--watch` redraws it live until
Ctrl-C; `--json-output` prints the same data as JSON (with `--watch`, one object per line each
time it changes) for scripts. Settings (Redis URL, namespace) come from the environment, as for
`serve` and `worker`; no job module is imported.

`mcp-jobs jobs JOB_ID` shows one job, in flight or ended: its header (tool, state, caller,
attempt, when it was created, queue wait, run time, trace id, linked through
`MCP_JOBS_TRACE_URL` when set) and its step timeline (`view.read_job`), each step with when it
began after the first, how long it took, the slowest marked; `--json-output` prints
`JobDetail.as_json`.

Exit codes: 0 (also after Ctrl-C or SIGTERM in `--watch`, even when started with SIGINT ignored,
as a background job of a non-interactive shell is), 1 when Redis cannot be read (without
`--watch`; with it the screen says so and keeps trying) or the job is unknown (or another
caller's, with `--caller`), 2 for a usage error (a malformed job id among them).

What jobs wrote (messages, errors, names) is shown with its control characters escaped
(`_text.printable`): a job cannot write escape sequences to the operator's terminal.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import click
import redis.asyncio as aioredis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.style import Style
from rich.table import Table
from rich.text import Text

from mcp_jobs._contract import is_job_id
from mcp_jobs._events import Keys
from mcp_jobs._text import printable
from mcp_jobs._timeline import Step
from mcp_jobs.redis_connect import REDIS_ERRORS, async_client
from mcp_jobs.server.ops.view import (
    DEFAULT_LIMIT,
    JobDetail,
    JobRow,
    JobsView,
    list_jobs,
    read_job,
    trace_link,
    without_clock,
)
from mcp_jobs.settings import Settings, get_settings, redact_url

STATE_STYLES = {
    "queued": "yellow",
    "running": "cyan",
    "input_required": "magenta",
    "succeeded": "green",
    "failed": "red",
}

SLOWEST = "⚠ slowest"
STILL_GOING = "still going"


@click.command("jobs")
@click.argument("job_id", required=False)
@click.option("--watch", is_flag=True, help="Redraw live until Ctrl-C.")
@click.option("--json-output", is_flag=True, help="Print JSON instead of tables (with --watch: one line per change).")
@click.option("--caller", default=None, help="Only this caller's jobs (default: everyone's).")
@click.option(
    "--failures-for",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Show failures of the last this many seconds.",
)
@click.option("--queue", "queues", multiple=True, help="Also list this queue (repeatable).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True, help="Most jobs per list."
)
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=0.5, show_default=True, help="Seconds between redraws."
)
def jobs(
    job_id: str | None,
    watch: bool,
    json_output: bool,
    caller: str | None,
    failures_for: float,
    queues: tuple[str, ...],
    limit: int,
    interval: float,
) -> None:
    """Show jobs in flight, recent failures, queue depths and live workers (from Redis).

    With JOB_ID: that job (in flight or ended) and the timeline of its steps (--caller and
    --json-output apply; the list's options do not)."""
    if job_id is not None:
        if not is_job_id(job_id):
            raise click.BadParameter(f"{printable(job_id)!r} is not a job id (a uuid4)", param_hint="JOB_ID")
        if watch:
            raise click.UsageError("--watch lists jobs; it does not follow one JOB_ID")
    settings = get_settings()
    options = _Options(settings, caller, failures_for, queues, limit)
    try:
        if job_id is not None:
            asyncio.run(_one_job(options, job_id, json_output))
        elif watch:
            asyncio.run(_until_stopped(_watch(options, json_output, interval)))
        else:
            asyncio.run(_once(options, json_output))
    except KeyboardInterrupt:
        pass  # Ctrl-C before the watch installed its handlers


class _Options:
    def __init__(
        self, settings: Settings, caller: str | None, failures_for: float, queues: Sequence[str], limit: int
    ) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.caller = caller
        self.failures_for = failures_for
        self.queues = list(queues)
        self.limit = limit

    async def read(self, client: aioredis.Redis) -> JobsView:
        return await list_jobs(
            client,
            self.keys,
            self.caller,
            time.time(),
            self.failures_for,
            queues=self.queues,
            queue_depths=self.settings.broker_shares_redis,
            limit=self.limit,
        )

    def client(self) -> aioredis.Redis:
        return async_client(self.settings, socket_connect_timeout=5, socket_timeout=10)

    def unavailable(self, exc: Exception) -> str:
        """Why Redis cannot be read; the error may quote the server, so without control characters."""
        return printable(f"cannot read Redis at {redact_url(self.settings.redis_url)}: {exc}")


async def _once(options: _Options, json_output: bool) -> None:
    async with options.client() as client:
        try:
            view = await options.read(client)
        except (*REDIS_ERRORS, OSError) as exc:
            raise click.ClickException(options.unavailable(exc)) from exc
    if json_output:
        click.echo(json.dumps(view.to_json()))
    else:
        Console().print(render(view, options.settings.namespace))


async def _one_job(options: _Options, job_id: str, json_output: bool) -> None:
    async with options.client() as client:
        try:
            detail = await read_job(client, options.keys, job_id, time.time(), options.caller)
        except (*REDIS_ERRORS, OSError) as exc:
            raise click.ClickException(options.unavailable(exc)) from exc
    if detail is None:
        whose = "" if options.caller is None else f" of caller {printable(options.caller)!r}"
        raise click.ClickException(f"no job {job_id}{whose} in namespace {printable(options.settings.namespace)!r}")
    if json_output:
        click.echo(json.dumps(detail.as_json(trace_url=options.settings.trace_url)))
    else:
        Console().print(render_job(detail, options.settings.trace_url))


async def _until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it ends or SIGINT/SIGTERM arrives, then stop cleanly (exit 0).

    The handlers are installed here rather than left to Python's KeyboardInterrupt: a process
    started in the background by a non-interactive shell (as CI and process supervisors do)
    inherits SIGINT *ignored*, and Python then never raises KeyboardInterrupt, so Ctrl-C or
    `kill -INT` would not stop the watch."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running, stopped = asyncio.create_task(work), asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (running, stopped):
            task.cancel()
        await asyncio.gather(running, stopped, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if running.done() and not running.cancelled() and (error := running.exception()) is not None:
        raise error


async def _watch(options: _Options, json_output: bool, interval: float) -> None:
    async with options.client() as client:
        if json_output:
            await _watch_json(options, client, interval)
        else:
            await _watch_tables(options, client, interval)


async def _watch_json(options: _Options, client: aioredis.Redis, interval: float) -> None:
    """One JSON object per line, each time what it shows changes (not for the clock alone)."""
    last: dict[str, Any] | None = None
    while True:
        try:
            data = (await options.read(client)).to_json()
        except (*REDIS_ERRORS, OSError) as exc:
            data = {"error": options.unavailable(exc)}
        if without_clock(data) != last:
            click.echo(json.dumps(data))
            last = without_clock(data)
        await asyncio.sleep(interval)


async def _watch_tables(options: _Options, client: aioredis.Redis, interval: float) -> None:
    with Live(Text("reading Redis…"), console=Console(), auto_refresh=False) as live:
        while True:
            try:
                screen: RenderableType = render(await options.read(client), options.settings.namespace)
            except (*REDIS_ERRORS, OSError) as exc:
                screen = Text(options.unavailable(exc) + " (retrying)", style="red")
            live.update(screen, refresh=True)
            await asyncio.sleep(interval)


def render(view: JobsView, namespace: str) -> RenderableType:
    """The tables of a view, for a terminal."""
    parts: list[RenderableType] = [_headline(view, namespace), _in_flight(view)]
    if view.failures:
        parts.append(_failures(view))
    parts.append(_queues(view))
    notes = _notes(view)
    if notes:
        parts.append(Text(notes, style="yellow"))
    return Group(*parts)


def _headline(view: JobsView, namespace: str) -> Text:
    counts = view.counts
    who = "all callers" if view.caller is None else f"caller {view.caller or '(anonymous)'}"
    text = Text.assemble(
        ("mcp-jobs ", "bold"),
        (f"{namespace}", "bold cyan"),
        f" · {who} · ",
        (f"{counts.get('running', 0)} running", "cyan"),
        ", ",
        (f"{counts.get('queued', 0)} queued", "yellow"),
        f" · last {duration(view.recent_failures_for)}: ",
        (f"{counts.get('succeeded', 0)} succeeded", "green"),
        ", ",
        (f"{counts.get('failed', 0)} failed", "red"),
        f", {counts.get('cancelled', 0)} cancelled · {plural(len(view.workers), 'worker')} alive",
    )
    return text


def _in_flight(view: JobsView) -> RenderableType:
    if not view.in_flight:
        return Text("No jobs in flight.", style="dim")
    table = Table(title="Jobs in flight", title_justify="left", expand=False)
    for column in ("job", "tool", "caller", "state", "progress", "", "status", "age", "wait", "worker"):
        table.add_column(
            column, no_wrap=column not in ("status",), overflow="fold" if column == "status" else "ellipsis"
        )
    for job in view.in_flight:
        state = job.state
        if job.state == "running" and job.heartbeat is False:
            state = "running (no heartbeat)"
        if job.attempt > 1:
            state += f" #{job.attempt}"
        table.add_row(
            job.job_id[:8],
            _shown(job.tool),
            _shown(job.caller or "-"),
            Text(state, style=STATE_STYLES.get(job.state, "")),
            _bar(job),
            _amount(job),
            _shown(job.message or job.status),
            duration(job.age),
            duration(job.queue_wait),
            _shown(job.worker or "-"),
        )
    return table


def _failures(view: JobsView) -> RenderableType:
    table = Table(title=f"Failures, last {duration(view.recent_failures_for)}", title_justify="left")
    for column in ("job", "tool", "caller", "failed", "error"):
        table.add_column(column, no_wrap=column != "error", overflow="fold" if column == "error" else "ellipsis")
    for job in view.failures:
        error = job.error or "(no message)"
        if job.error_type:
            error = f"{job.error_type}: {error}"
        ago = None if job.updated_at is None else max(view.now - job.updated_at, 0.0)
        table.add_row(
            job.job_id[:8],
            _shown(job.tool),
            _shown(job.caller or "-"),
            f"{duration(ago)} ago",
            Text(printable(error), style="red"),
        )
    return table


def _queues(view: JobsView) -> RenderableType:
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue")
    table.add_column("waiting", justify="right")
    table.add_column("workers", justify="right")
    table.add_column("hosts")
    for queue in view.queues:
        hosts = [worker.hostname for worker in view.workers if queue.name in worker.queues]
        table.add_row(
            _shown(queue.name),
            "?" if queue.depth is None else str(queue.depth),
            Text(str(queue.workers), style="" if queue.workers else "bold red"),
            _shown(", ".join(hosts) or "-"),
        )
    return table


def _notes(view: JobsView) -> str:
    notes = []
    if view.in_flight_total > len(view.in_flight):
        notes.append(f"showing {len(view.in_flight)} of {view.in_flight_total} jobs in flight")
    if view.failures_total > len(view.failures):
        notes.append(f"showing {len(view.failures)} of {view.failures_total} failures")
    if not view.complete:
        notes.append(f"stopped reading after {view.scanned} jobs: some may be missing")
    return "; ".join(notes)


def render_job(detail: JobDetail, trace_url: str | None = None) -> RenderableType:
    """One job, for a terminal: its header, then its step timeline."""
    parts: list[RenderableType] = [_job_header(detail, trace_url)]
    if not detail.steps:
        parts.append(Text("No steps yet.", style="dim"))
        return Group(*parts)
    parts.append(_timeline(detail))
    if detail.trimmed:
        parts.append(Text(trimmed_note(detail), style="yellow"))
    return Group(*parts)


def trimmed_note(detail: JobDetail) -> str:
    """What a trimmed timeline says of the steps it lost."""
    return f"showing the last {len(detail.steps)} of {detail.steps_total} steps"


def _job_header(detail: JobDetail, trace_url: str | None) -> RenderableType:
    job = detail.job
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    state = Text(job.state, style=STATE_STYLES.get(job.state, ""))
    if job.state == "running" and job.heartbeat is False:
        state.append(" (no heartbeat)", style="red")
    rows: list[tuple[str, RenderableType]] = [
        ("job", job.job_id),
        ("tool", _shown(job.tool)),
        ("state", state),
        ("caller", _shown(job.caller or "(anonymous)")),
        ("attempt", str(job.attempt)),
        ("created", created(job.created_at, detail.now)),
        ("queue wait", duration(job.queue_wait)),
        (
            "run time",
            duration(detail.run_time) + (" so far" if detail.ended_at is None and detail.run_time is not None else ""),
        ),
    ]
    if job.error is not None:
        error = f"{job.error_type}: {job.error}" if job.error_type else job.error
        rows.append(("error", Text(printable(error), style="red")))
    elif job.status:
        rows.append(("status", _shown(job.status)))
    if job.worker:
        rows.append(("worker", _shown(job.worker)))
    trace: RenderableType = detail.trace_id or "-"
    link = trace_link(trace_url, detail.trace_id)
    if link is not None:
        trace = Text.assemble(detail.trace_id or "", "  ", (printable(link), Style(link=printable(link))))
    rows.append(("trace", trace))
    for name, value in rows:
        grid.add_row(name, value)
    return grid


def _timeline(detail: JobDetail) -> RenderableType:
    table = Table(title=f"Steps ({detail.steps_total})", title_justify="left")
    attempts = len({step.attempt for step in detail.steps}) > 1
    columns = ["#", *(["attempt"] if attempts else []), "step", "when", "took", ""]
    for column in columns:
        right = column in ("#", "attempt", "when", "took")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "step", overflow="fold")
    first = detail.steps[0].at
    for index, step in enumerate(detail.steps):
        took, mark = step_timing(step, detail.now)
        table.add_row(
            str(detail.first_number + index),
            *([str(step.attempt)] if attempts else []),
            _shown(step.message),
            "+" + duration(step.at - first),
            took,
            Text(mark, style="bold yellow" if step.slowest else "cyan"),
        )
    return table


def step_timing(step: Step, now: float) -> tuple[str, str]:
    """How long a step took ("so far" for the running job's last) and its mark (slowest, still going)."""
    marks = [SLOWEST] if step.slowest else []
    if step.duration is None:
        marks.append(STILL_GOING)
        return duration(max(now - step.at, 0.0)) + " so far", ", ".join(marks)
    return duration(step.duration), ", ".join(marks)


def created(at: float | None, now: float) -> str:
    """When a job was created: local time, and how long ago."""
    if at is None:
        return "-"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))} ({duration(max(now - at, 0.0))} ago)"


def _shown(text: str) -> str:
    """Text a job or a worker wrote, for a table cell: no control characters, no rich markup."""
    return escape(printable(text))


def _bar(job: JobRow) -> RenderableType:
    if job.fraction is None:
        return Text("")
    return ProgressBar(total=1.0, completed=job.fraction, width=20)


def _amount(job: JobRow) -> str:
    if job.progress is None:
        return ""
    if job.total:
        return f"{job.progress:g}/{job.total:g} {job.progress / job.total:.0%}"
    return f"{job.progress:g}"


def duration(seconds: float | None) -> str:
    """A short duration: 4s, 2m05s, 1h02m, 3d04h; "-" for None."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
