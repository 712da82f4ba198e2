"""Rivals in the same run (issue 15): mcp-jobs against what a user would pick instead.

    python -m bench.rivals            # about a minute once the virtualenvs exist (they take ~1 min more)
    python -m bench.rivals --quick    # smaller counts
    python -m bench.rivals --only mcp-jobs fastmcp

On the same machine, each on a fresh Redis-compatible server of the same type (RedisProcess,
`redis-server` from PATH), with two worker processes each:

- mcp-jobs: this checkout's server and 2 Celery prefork workers x 2 (bench.stack), mcp 2.x client.
- FastMCP 4 background tasks on Docket (fastmcp + fastmcp-tasks + pydocket): one server process
  whose own Docket worker is given concurrency 0 (so it only serves MCP), and 2 worker processes
  (`python -m fastmcp_tasks.worker_cli worker`) at Docket's default concurrency of 10 async slots.
  The client is the official mcp 2.x `Client` with fastmcp-tasks' `TasksClientExtension`.
- mcp-celery 0.2.0 (needs mcp<2): its `AsyncToolServer` with the default adaptive strategy and 2
  Celery prefork workers x 2; the client is the official mcp 1.x `ClientSession` +
  `streamablehttp_client`.

Figures: (a) no-op jobs/s, N concurrent calls over 4 client sessions to one server process;
(b) progress visibility on one job of 20 steps x 0.25 s: distinct steps the client saw and the lag
from the worker's report (its wall-clock time, stamped when the step is reported) to the client.

The rivals' virtualenvs are created under ~/.cache/mcp-jobs-bench (MCP_JOBS_BENCH_CACHE) on first
use with the pinned versions below; their servers, jobs and clients are the scripts in bench/rivals/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import fmt, p50
from bench.stack import _accepts, bench_stack
from mcp_jobs.server.dev_redis import RedisProcess, free_port
from tests.support.processes import ManagedProcess, wait_until
from tests.support.venvs import pinned_venv

HERE = Path(__file__).parent
RIVALS = HERE / "rivals"
CACHE = Path(os.environ.get("MCP_JOBS_BENCH_CACHE", Path.home() / ".cache" / "mcp-jobs-bench"))

# Exact versions tested; the virtualenvs are rebuilt when these change.
PINS: dict[str, list[str]] = {
    "fastmcp": ["fastmcp==4.1.4", "fastmcp-tasks==4.1.4", "pydocket==0.27.0", "mcp==2.3.0", "redis==8.0.1"],
    "mcp-celery": ["mcp-celery==0.2.0", "mcp==1.30.0", "celery[redis]==5.7.0", "kombu==5.7.0", "redis==8.1.0"],
}
REPORTED = {
    "fastmcp": ["fastmcp", "fastmcp-tasks", "pydocket", "mcp", "redis"],
    "mcp-celery": ["mcp-celery", "mcp", "celery", "redis"],
}
STEPS, INTERVAL = 20, 0.25
SESSIONS = 4


# --------------------------------------------------------------------------- virtualenvs


def venv_python(name: str) -> Path:
    """The rival's virtualenv interpreter, creating and installing the pinned packages on first use."""
    venv = CACHE / f"venv-{name}"
    if not (venv / "pins.txt").exists():
        print(f"  creating {venv} ({', '.join(PINS[name])}) ...", flush=True)
    return pinned_venv(venv, PINS[name])


def versions(python: Path | str, packages: list[str]) -> str:
    code = "import importlib.metadata as m, sys\nprint(', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:]))"
    out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or out.stderr.strip()[-200:]


# --------------------------------------------------------------------------- figures


@dataclass
class Progress:
    """Progress visibility on one stamped job, as one client saw it."""

    how: str
    seen: int = 0
    lags_ms: list[float] = field(default_factory=list)  # per seen step: first sighting - its report time
    stale_ms: list[float] = field(default_factory=list)  # per step: first sighting of it or a later step
    note: str = ""


def visibility(
    how: str, sightings: list[tuple[float, int]], stamps: dict[int, float], ended: float, note: str
) -> Progress:
    """Figures from (client receive time, step) sightings and each step's report time in the worker.

    `stale_ms` is there when every step's report time is known: for each step, how long until the
    client knew it was done (it saw that step, a later one, or the job's result).
    """
    first: dict[int, float] = {}
    for received, step in sorted(sightings):
        if 1 <= step <= STEPS and step not in first:
            first[step] = received
    lags = [1000 * (received - stamps[step]) for step, received in first.items() if step in stamps]
    stale = []
    if len(stamps) == STEPS:
        for step in range(1, STEPS + 1):
            known = min([t for s, t in first.items() if s >= step] + [ended])
            stale.append(1000 * (known - stamps[step]))
    return Progress(how, len(first), lags, stale, note)


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def returned_stamps(result_text: str, *path: str) -> dict[int, float]:
    """Step -> report time from a job that returns its list of report times (JSON result text)."""
    try:
        value: Any = json.loads(result_text)
        for key in path:
            value = value[key]
        return {i + 1: float(x) for i, x in enumerate(value)}
    except (ValueError, KeyError, TypeError, IndexError):
        return {}


@dataclass
class Throughput:
    """No-op jobs/s in one configuration: successful calls / elapsed."""

    config: str
    jobs_per_s: float
    ok: int
    calls: int
    note: str


@dataclass
class Rival:
    name: str
    versions: str
    capacity: str
    throughput: list[Throughput] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    error: str = ""


def run_client(python: Path | str, script: str, mode: str, url: str, timeout: float, *args: str) -> dict[str, Any]:
    """Run a client script in its virtualenv; its last stdout line is a JSON object."""
    command = [str(python), str(RIVALS / script), mode, url, "--timeout", str(timeout), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60, cwd=RIVALS)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{script} {mode} exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return json.loads(lines[-1])


def throughput(
    config: str, python: Path | str, script: str, url: str, calls: int, timeout: float, *extra: str
) -> Throughput:
    raw = run_client(python, script, "throughput", url, timeout, "--tool", "noop", "--calls", str(calls),
                     "--sessions", str(SESSIONS), *extra)  # fmt: skip
    note = f"{raw['elapsed']:.1f} s"
    if raw["errors"]:
        note += f"; {raw['errors']} calls failed: {raw['first_error'][:100]}"
    if raw["timed_out"]:
        note += f"; stopped at the {timeout:g} s bound"
    return Throughput(config, raw["ok"] / raw["elapsed"], raw["ok"], calls, note)


def progress_run(python: Path | str, script: str, url: str, tool: str, *extra: str) -> dict[str, Any]:
    return run_client(python, script, "progress", url, 90, "--tool", tool, "--steps", str(STEPS),
                      "--interval", str(INTERVAL), *extra)  # fmt: skip


def done_note(raw: dict[str, Any]) -> str:
    return f"job ended {'with an error' if raw['error'] else 'ok'}, call took {raw['elapsed']:.2f} s"


# --------------------------------------------------------------------------- the rivals


def measure_mcp_jobs(calls: int, timeout: float) -> Rival:
    from importlib.metadata import version

    rival = Rival(
        "mcp-jobs (this checkout)",
        f"mcp-jobs {version('mcp-jobs')}, mcp {version('mcp')}, celery {version('celery')}",
        "2 Celery prefork workers x 2",
    )
    for processes in (2, 4):  # `serve --processes N`; the rivals have no such mode of their own
        with bench_stack(workers=2, concurrency=2, processes=str(processes)) as stack:
            label = f"defaults, {processes} server processes"
            rival.throughput.append(throughput(label, sys.executable, "rival_client.py", stack.url, calls, timeout))
    with bench_stack(workers=2, concurrency=2) as stack:
        rival.throughput.insert(
            0, throughput("defaults (bench.stack)", sys.executable, "rival_client.py", stack.url, calls, timeout)
        )
        raw = progress_run(sys.executable, "rival_client.py", stack.url, "stamped")
    # The stamped job of bench.jobs: progress = the step, message = its report time.
    sightings = [(t, int(v)) for t, v, m in raw["events"] if _float(m) is not None]
    stamps = {int(v): float(m) for _, v, m in raw["events"] if _float(m) is not None}
    rival.progress.append(
        visibility("progress notifications (pushed)", sightings, stamps, raw["ended"], done_note(raw))
    )
    return rival


def _rival_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_JOBS_", "FASTMCP_", "PYTHON"))}
    return env | {"BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(RIVALS), "PYTHONUNBUFFERED": "1"} | extra


@contextmanager
def _processes() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop()


def _serve(started: list[ManagedProcess], name: str, args: list[str], env: dict[str, str], port: int) -> str:
    server = ManagedProcess(name, args, env, cwd=RIVALS)
    started.append(server)
    wait_until(lambda: _accepts(port), timeout=60, what=name, process=server)
    return f"http://127.0.0.1:{port}/mcp"


def measure_fastmcp(calls: int, timeout: float) -> Rival:
    python = venv_python("fastmcp")
    rival = Rival(
        "FastMCP background tasks (Docket)",
        versions(python, REPORTED["fastmcp"]),
        "2 Docket worker processes x 10 async slots (server's own worker at 0)",
    )
    with RedisProcess(prefer_path=True) as redis, _processes() as started:
        env = _rival_env(redis.url, BENCH_DOCKET_NAME=f"bench-{uuid.uuid4().hex[:6]}")
        for i in range(2):
            worker = ManagedProcess(
                f"docket worker {i}",
                [str(python), "-m", "fastmcp_tasks.worker_cli", "worker", "rival_fastmcp_server.py"],
                env | {"BENCH_DOCKET_CONCURRENCY": "10"},
                cwd=RIVALS,
            )
            started.append(worker)
            worker.wait_for_line(r"Starting worker", timeout=60)
        server_env = env | {"BENCH_DOCKET_CONCURRENCY": "0"}
        command = [str(python), "rival_fastmcp_server.py"]
        port = free_port()
        url = _serve(started, "fastmcp server", [*command, str(port)], server_env, port)
        rival.throughput.append(throughput("defaults", python, "rival_client.py", url, calls, timeout, "--tasks"))
        if rival.throughput[-1].ok < calls:
            # redis-py's asyncio pool allows 100 connections by default, and Docket holds one per
            # in-flight Redis command: raise it through the URL, as a user would after those errors.
            started.pop().stop()
            port = free_port()
            server_env["BENCH_REDIS_URL"] = f"{redis.url}?max_connections={calls + 1000}"
            url = _serve(started, "fastmcp server", [*command, str(port)], server_env, port)
            config = f"Redis pool raised to {calls + 1000} (URL ?max_connections=)"
            rival.throughput.append(throughput(config, python, "rival_client.py", url, calls, timeout, "--tasks"))
        default = progress_run(python, "rival_client.py", url, "stamped", "--tasks")
        tuned = progress_run(python, "rival_client.py", url, "stamped_fastpoll", "--tasks")
    stamps = returned_stamps(default["result"], "structuredContent", "result")
    rival.progress.append(
        visibility(
            "progress_callback of the call",
            [],
            stamps,
            default["ended"],
            f"{len(default['events'])} progress notifications: a background task sends none; "
            "its progress is only a statusMessage in tasks/get",
        )
    )
    for raw, how in (
        (default, "tasks/get polling, default pollInterval 5 s"),
        (tuned, "tasks/get polling, pollInterval tuned to 0.1 s"),
    ):
        stamps = returned_stamps(raw["result"], "structuredContent", "result")
        step_of = {stamp: step for step, stamp in stamps.items()}
        sightings = [(t, step_of.get(_float(m) or 0.0, 0)) for t, m in raw["polled"]]
        note = f"{raw['polls']} polls (the extension's backoff: 20 ms doubling up to pollInterval); {done_note(raw)}"
        rival.progress.append(visibility(how, sightings, stamps, raw["ended"], note))
    return rival


def measure_mcp_celery(calls: int, timeout: float) -> Rival:
    python = venv_python("mcp-celery")
    rival = Rival(
        "mcp-celery (adaptive strategy)", versions(python, REPORTED["mcp-celery"]), "2 Celery prefork workers x 2"
    )
    with RedisProcess(prefer_path=True) as redis, _processes() as started:
        env = _rival_env(redis.url)
        for i in range(2):
            args = [str(python), "-m", "celery", "-A", "rival_celery_app", "worker", "--loglevel", "INFO", "-c", "2"]
            args += [
                "--pool",
                "prefork",
                "-n",
                f"mcpc{i}-{uuid.uuid4().hex[:4]}@%h",
                "--without-mingle",
                "--without-gossip",
            ]
            worker = ManagedProcess(f"mcp-celery worker {i}", args, env, cwd=RIVALS)
            started.append(worker)
            worker.wait_for_line(r"ready\.", timeout=60)
        port = free_port()
        url = _serve(started, "mcp-celery server", [str(python), "rival_celery_app.py", str(port)], env, port)
        rival.throughput.append(throughput("defaults", python, "rival_client_legacy.py", url, calls, timeout))
        raw = progress_run(python, "rival_client_legacy.py", url, "stamped")
    # Its notifications carry progress = step/steps and the status ("RUNNING") as message; the job
    # returns the list of step report times, joined here with the progress values.
    stamps = returned_stamps(raw["result"], "result")
    sightings = [(t, round(float(v) * STEPS)) for t, v, _ in raw["events"]]
    note = (
        f"{len(raw['events'])} notifications, sent by the server when its result-backend poll "
        f"(0.2 s growing x1.5 to 2 s) finds a new value; {done_note(raw)}"
    )
    rival.progress.append(
        visibility("progress notifications (server polls the result backend)", sightings, stamps, raw["ended"], note)
    )
    return rival


MEASURES: dict[str, Callable[[int, float], Rival]] = {
    "mcp-jobs": measure_mcp_jobs,
    "fastmcp": measure_fastmcp,
    "mcp-celery": measure_mcp_celery,
}


# --------------------------------------------------------------------------- report


def machine() -> str:
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    server = next((w.removeprefix("v=") for w in redis if w.startswith("v=")), "?")
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}, redis-server {server}"


def _p50_max(values: list[float]) -> str:
    return f"{fmt(p50(values))} | {fmt(max(values))}" if values else "n/a | n/a"


def tables(rivals: list[Rival], calls: int) -> str:
    jobs = [
        f"| rival | worker capacity | configuration | no-op jobs/s | calls ok (of {calls}) | notes |",
        "|---|---|---|---:|---:|---|",
    ]
    seen = [
        f"| rival | how progress reaches the client | steps seen (of {STEPS}) | lag p50 ms | lag max ms "
        "| every step known after, p50 ms | max ms | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rivals:
        if r.error:
            jobs.append(f"| {r.name} | | | not measured | | {r.error} |")
            seen.append(f"| {r.name} | | not measured | | | | | {r.error} |")
            continue
        for t in r.throughput:
            jobs.append(f"| {r.name} | {r.capacity} | {t.config} | {fmt(t.jobs_per_s)} | {t.ok} | {t.note} |")
        for p in r.progress:
            lag = _p50_max(p.lags_ms)
            stale = _p50_max(p.stale_ms)
            seen.append(f"| {r.name} | {p.how} | {p.seen} | {lag} | {stale} | {p.note} |")
    head_jobs = (
        f"**(a) No-op jobs/s**: {calls} concurrent calls over {SESSIONS} client sessions to one server "
        "process; jobs/s = calls that succeeded / elapsed."
    )
    head_seen = (
        f"**(b) Progress visibility**: one job of {STEPS} steps x {INTERVAL} s; lag = the client's receive "
        "time - the worker's wall-clock time when it reported the step, first sighting of each step seen. "
        "'Every step known after': for all 20 steps, the time until the client saw that step, a later "
        "one, or the result (what a polling design's unseen steps cost)."
    )
    return "\n".join([head_jobs, "", *jobs, "", head_seen, "", *seen])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls for jobs/s (under a minute)")
    parser.add_argument("--only", nargs="+", choices=sorted(MEASURES), help="measure only these")
    parser.add_argument("--calls", type=int, help="concurrent no-op calls for jobs/s (default 1000, --quick 300)")
    args = parser.parse_args()
    calls = args.calls or (300 if args.quick else 1000)
    timeout = 60.0 if args.quick else 120.0
    started = time.perf_counter()
    rivals: list[Rival] = []
    for name in args.only or MEASURES:
        print(f"measuring {name} ...", flush=True)
        began = time.perf_counter()
        try:
            rivals.append(MEASURES[name](calls, timeout))
        except Exception as exc:  # one rival that cannot run must not hide the others' figures
            reason = " ".join(str(exc).split())[:300]
            rivals.append(Rival(name, "", "", error=f"could not be measured: {type(exc).__name__}: {reason}"))
        print(f"  {time.perf_counter() - began:.0f} s", flush=True)
    took = time.perf_counter() - started
    print()
    print(f"Written by `python -m bench.rivals{' --quick' if args.quick else ''}` in {took:.0f} s.")
    print(f"Machine: {machine()}.")
    print("Versions: " + "; ".join(f"{r.name}: {r.versions}" for r in rivals if r.versions) + ".")
    print()
    print(tables(rivals, calls))


if __name__ == "__main__":
    main()
