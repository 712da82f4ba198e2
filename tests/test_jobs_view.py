"""What `mcp-jobs jobs` and the jobs page show: jobs in flight with their progress, recent
failures, queues and workers, read from the real stack's Redis; the filtering by caller and the
bounds on fake snapshots in a namespace of their own; the `jobs` command as a real process, and
`mcp-jobs jobs JOB_ID` with the step timeline of a `staged` job a real worker ran."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import pytest
import redis
from mcp import Client

from mcp_jobs._events import Keys
from mcp_jobs._timeline import STEP_HISTORY
from mcp_jobs.server.ops.command import SLOWEST, STILL_GOING
from mcp_jobs.server.ops.view import JobRow, JobsView, list_jobs
from tests.conftest import Stack
from tests.support.helpers import (
    ProgressLog,
    async_redis,
    job_id_of,
    job_id_of_key,
    job_keys,
    namespace_of_its_own,
)
from tests.support.processes import REPO, ManagedProcess, sigint_ignored

pytestmark = pytest.mark.anyio

JOBS_COMMAND = [sys.executable, "-m", "mcp_jobs.server.cli", "jobs"]


@asynccontextmanager
async def running_job(stack: Stack, steps: int, delay: float, at: float = 1) -> AsyncIterator[tuple[str, ProgressLog]]:
    """A `sleep_steps` call through MCP, once its job reported `at`; yields the job id. The call
    is cancelled on the way out (which stops the job)."""
    sync = stack.redis()
    before = job_keys(sync, stack.keys)
    log = ProgressLog()
    async with Client(stack.http_url) as client, anyio.create_task_group() as tg:

        async def call() -> None:
            await client.call_tool("sleep_steps", {"steps": steps, "delay": delay}, progress_callback=log)

        tg.start_soon(call)
        try:
            await log.wait_for(at)
            ours = [key for key in job_keys(sync, stack.keys) - before if sync.hget(key, "job") == "sleep_steps"]
            assert len(ours) == 1, ours
            yield job_id_of_key(ours[0]), log
        finally:
            tg.cancel_scope.cancel()


def find(jobs: list[JobRow], job_id: str) -> JobRow:
    matches = [job for job in jobs if job.job_id == job_id]
    assert matches, f"job {job_id} not in {[job.job_id for job in jobs]}"
    return matches[0]


@pytest.mark.cluster
async def test_a_running_job_is_listed_with_its_progress(stack: Stack) -> None:
    async with (
        running_job(stack, steps=40, delay=0.2, at=2) as (job_id, log),
        async_redis(stack.redis_url, stack.cluster) as client,
    ):
        view = await list_jobs(client, stack.keys, None, time.time())
        job = find(view.in_flight, job_id)
        assert job.tool == "sleep_steps" and job.state == "running", job
        assert job.total == 40 and job.progress is not None and job.progress >= 2, job
        assert job.status.startswith(f"[{job.progress:g}/40] ") and job.message, job
        assert job.caller == "" and job.heartbeat is True and job.worker, job
        assert job.age is not None and 0 < job.age < 60 and job.attempt == 1, job
        assert job.fraction is not None and 0 < job.fraction < 1
        assert view.counts["running"] >= 1 and view.complete and not view.truncated
        celery = [queue for queue in view.queues if queue.name == "celery"]
        assert celery and celery[0].workers >= len(stack.workers) and celery[0].depth is not None, view.queues
        assert len(view.workers) >= len(stack.workers)

        # It moves: a later read shows more progress (waiting on the caller's own notifications).
        await log.wait_for(job.progress + 2)
        later = find((await list_jobs(client, stack.keys, None, time.time())).in_flight, job_id)
        assert later.progress is not None and later.progress > job.progress

        # The anonymous caller sees it; a named caller does not.
        assert find((await list_jobs(client, stack.keys, "", time.time())).in_flight, job_id)
        assert job_id not in [j.job_id for j in (await list_jobs(client, stack.keys, "mallory", time.time())).in_flight]


@pytest.mark.cluster
async def test_a_failed_job_is_listed_with_its_error_among_recent_failures(stack: Stack) -> None:
    reason = f"the input folder is empty ({uuid.uuid4().hex[:6]})"
    async with Client(stack.http_url) as client:
        result = await client.call_tool("fail_politely", {"reason": reason})
    assert result.is_error
    async with async_redis(stack.redis_url, stack.cluster) as redis_client:
        view = await list_jobs(redis_client, stack.keys, None, time.time())
        failures = [job for job in view.failures if job.error == reason]
        assert len(failures) == 1, view.failures
        failure = failures[0]
        assert failure.tool == "fail_politely" and failure.state == "failed" and failure.error_type == "JobError"
        assert failure.job_id not in [job.job_id for job in view.in_flight]
        # Only *recent* failures: two hours on, it is no longer listed.
        later = await list_jobs(redis_client, stack.keys, None, time.time() + 7200, recent_failures_for=3600)
        assert failure.job_id not in [job.job_id for job in later.failures]


@pytest.fixture
def own_namespace(stack: Stack) -> Iterator[tuple[redis.Redis, Keys]]:
    """A namespace of this test's own (with glob characters, which the scan must escape)."""
    client = stack.redis()
    with namespace_of_its_own(client, f"view-[{uuid.uuid4().hex[:8]}]*") as keys:
        yield client, keys


def snapshot(client: redis.Redis, keys: Keys, caller: str, state: str, job: str = "index", **fields: object) -> str:
    """Write a snapshot the way the server and workers lay one out; return its job id."""
    job_id = str(uuid.uuid4())
    now = time.time()
    values: dict[str, object] = {
        "job": job,
        "state": state,
        "seq": "2",
        "progress": "",
        "total": "",
        "message": state,
        "caller": caller,
        "created_at": repr(now - 30),
        "updated_at": repr(now - 1),
        "attempt": "1" if state != "queued" else "0",
    }
    values.update({name: str(value) for name, value in fields.items()})
    client.hset(keys.job(job_id), mapping=values)  # type: ignore[arg-type]
    return job_id


async def test_each_caller_sees_only_their_own_jobs(stack: Stack, own_namespace: tuple[redis.Redis, Keys]) -> None:
    client, keys = own_namespace
    alice = snapshot(client, keys, "alice", "running", progress="3.0", total="10.0", message="step 3", worker="w@h")
    client.set(keys.alive(alice), "1")
    bob_queued = snapshot(client, keys, "bob", "queued")
    bob_failed = snapshot(
        client, keys, "bob", "failed", error="disk full", error_type="JobError", result="null", progress="1.0"
    )
    snapshot(client, keys, "alice", "succeeded", result="1")
    # Another namespace that shares the prefix must not leak in.
    snapshot(client, Keys(keys.namespace + "x"), "alice", "running")

    async with async_redis(stack.redis_url, stack.cluster) as redis_client:
        everyone = await list_jobs(redis_client, keys, None, time.time())
        as_alice = await list_jobs(redis_client, keys, "alice", time.time())
        as_bob = await list_jobs(redis_client, keys, "bob", time.time())
        as_nobody = await list_jobs(redis_client, keys, "", time.time())

    assert {job.job_id for job in everyone.in_flight} == {alice, bob_queued}
    assert [job.job_id for job in as_alice.in_flight] == [alice] and as_alice.failures == []
    assert as_alice.counts == {
        "queued": 0,
        "running": 1,
        "input_required": 0,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert [job.job_id for job in as_bob.in_flight] == [bob_queued]
    assert [job.job_id for job in as_bob.failures] == [bob_failed]
    assert as_bob.failures[0].error == "disk full" and as_bob.failures[0].error_type == "JobError"
    assert as_nobody.in_flight == [] and as_nobody.failures == []

    running = as_alice.in_flight[0]
    assert (running.progress, running.total, running.status) == (3.0, 10.0, "[3/10] 30% step 3")
    assert running.heartbeat is True and running.worker == "w@h" and running.queue_wait is None
    queued = as_bob.in_flight[0]
    assert queued.status == "queued, waiting for a worker" and queued.queue_wait is not None
    assert 29 < queued.queue_wait < 120 and queued.heartbeat is None

    # The JSON the page gets leaves worker host names out.
    data = as_alice.to_json(hosts=False)
    assert data["in_flight"][0]["worker"] is None and data["workers"] == []
    assert data["in_flight"][0]["fraction"] == pytest.approx(0.3)
    json.dumps(data, allow_nan=False)


async def test_lists_and_scans_are_bounded_and_say_so(stack: Stack, own_namespace: tuple[redis.Redis, Keys]) -> None:
    client, keys = own_namespace
    ids = [snapshot(client, keys, "carol", "running") for _ in range(5)]
    client.hset(keys.job(str(uuid.uuid4())), mapping={"state": "exploded", "job": "x"})  # malformed: skipped
    async with async_redis(stack.redis_url, stack.cluster) as redis_client:
        capped = await list_jobs(redis_client, keys, None, time.time(), limit=2)
        assert len(capped.in_flight) == 2 and capped.in_flight_total == 5 and capped.truncated
        assert capped.complete and capped.scanned == 6
        partial = await list_jobs(redis_client, keys, None, time.time(), max_keys=3)
        assert not partial.complete and partial.truncated and partial.scanned == 3
        full = await list_jobs(redis_client, keys, None, time.time())
        assert {job.job_id for job in full.in_flight} == set(ids) and not full.truncated


async def test_queues_and_workers(stack: Stack, own_namespace: tuple[redis.Redis, Keys]) -> None:
    client, keys = own_namespace
    queue = f"view-queue-{uuid.uuid4().hex[:6]}"
    client.set(keys.worker("w1@box"), json.dumps({"queues": [queue, "celery"], "pid": 42}), ex=60)
    client.set(keys.worker("w2@box"), json.dumps({"queues": ["celery"], "pid": 43}), ex=60)
    client.rpush(queue, "a", "b", "c")
    try:
        async with async_redis(stack.redis_url, stack.cluster) as redis_client:
            view = await list_jobs(redis_client, keys, None, time.time(), queues=["unserved"])
            unknown = await list_jobs(redis_client, keys, None, time.time(), queue_depths=False)
    finally:
        client.delete(queue)
    rows = {row.name: row for row in view.queues}
    assert (rows[queue].depth, rows[queue].workers) == (3, 1)
    assert rows["celery"].workers == 2
    assert (rows["unserved"].depth, rows["unserved"].workers) == (0, 0)
    assert sorted((w.hostname, w.pid) for w in view.workers) == [("w1@box", 42), ("w2@box", 43)]
    assert all(row.depth is None for row in unknown.queues)
    assert isinstance(view, JobsView) and view.in_flight == []


@pytest.mark.cluster
async def test_the_jobs_command_prints_the_running_job(stack: Stack) -> None:
    env = {**stack.env, "COLUMNS": "200"}
    async with running_job(stack, steps=100, delay=0.2, at=1) as (job_id, _):
        table = await anyio.run_process([*JOBS_COMMAND], env=env, cwd=REPO)
        out = table.stdout.decode()
        assert "sleep_steps" in out and job_id[:8] in out and "running" in out, out
        assert "Queues" in out and "celery" in out, out

        as_json = await anyio.run_process([*JOBS_COMMAND, "--json-output"], env=env, cwd=REPO)
        data = json.loads(as_json.stdout)
        job = next(row for row in data["in_flight"] if row["job_id"] == job_id)
        assert job["tool"] == "sleep_steps" and job["state"] == "running" and job["total"] == 100
        assert job["progress"] >= 1 and job["worker"], job

        other = await anyio.run_process([*JOBS_COMMAND, "--json-output", "--caller", "mallory"], env=env, cwd=REPO)
        assert job_id not in other.stdout.decode()

        # --watch --json-output: one JSON object per line, each time something changed; Ctrl-C ends it,
        # even in a process that inherited SIGINT ignored, as everything a non-interactive shell starts
        # in the background does (CI's runner among them: Python then raises no KeyboardInterrupt).
        command = [*JOBS_COMMAND, "--watch", "--json-output", "--interval", "0.2"]
        watch = ManagedProcess("jobs --watch", sigint_ignored(command), env)
        try:
            first = await anyio.to_thread.run_sync(watch.wait_for_line, job_id, 20.0)
            was = next(row["progress"] for row in json.loads(first)["in_flight"] if row["job_id"] == job_id)
            moved = rf'"job_id": "{job_id}"[^}}]*"progress": (?!{re.escape(json.dumps(was))}[,}}])'
            await anyio.to_thread.run_sync(watch.wait_for_line, moved, 20.0)  # a later line: it moved
            os.killpg(watch.pid, signal.SIGINT)
            assert await anyio.to_thread.run_sync(watch.process.wait, 10) == 0, watch.output()
        finally:
            watch.stop()

        # --watch draws live in a terminal and redraws as the job moves, until Ctrl-C (exit 0).
        screen = await anyio.to_thread.run_sync(watch_in_a_terminal, env)
        assert "sleep_steps" in screen and job_id[:8] in screen


def watch_in_a_terminal(env: dict[str, str]) -> str:
    """Run `jobs --watch` on a pseudo-terminal until two different progress values of the running
    job (total 100) were drawn, then press Ctrl-C; return what it drew."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [*JOBS_COMMAND, "--watch", "--interval", "0.2"],
        env={**env, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "50"},
        cwd=REPO,
        stdin=child,
        stdout=child,
        stderr=child,
        start_new_session=True,
    )
    os.close(child)
    screen = b""
    try:
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while len(seen) < 2:  # two different values of the job's "n/100 n%" column were drawn
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no redraw showing the job's progress moving:\n{screen.decode(errors='replace')}"
            ready, _, _ = select.select([main], [], [], remaining)
            if ready:
                screen += os.read(main, 65536)
            seen = set(re.findall(r"\b(\d+)/100 \d+%", screen.decode(errors="replace")))
        os.killpg(process.pid, signal.SIGINT)
        while process.poll() is None:
            ready, _, _ = select.select([main], [], [], 10)
            if not ready:
                break
            try:
                screen += os.read(main, 65536)
            except OSError:  # the terminal closed with the process
                break
        assert process.wait(10) == 0, screen.decode(errors="replace")
        return screen.decode(errors="replace")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(main)


STAGES = [
    {"message": "fetching", "seconds": 0.2},
    {"message": "parsing", "seconds": 1.2},
    {"message": "writing", "seconds": 0.2},
]
"""Three steps (after the run's own "started"), the middle one clearly the slowest."""

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"


async def staged_job(stack: Stack, stages: list[dict[str, object]], fail: str | None = None) -> str:
    """Run a `staged` job through MCP to its end (the call returns once it ended); its id."""
    async with Client(stack.http_url) as client:
        result = await client.call_tool("staged", {"stages": stages, "fail": fail})
    assert result.is_error == (fail is not None), result
    job_id = job_id_of(result)
    assert stack.redis().hget(stack.keys.job(job_id), "state") in ("succeeded", "failed")
    return job_id


async def jobs_command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await anyio.run_process([*JOBS_COMMAND, *args], env=env, cwd=REPO, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.mark.cluster
async def test_the_jobs_command_shows_one_jobs_timeline_with_the_slowest_step(stack: Stack) -> None:
    job_id = await staged_job(stack, STAGES)
    stack.redis().hset(stack.keys.job(job_id), "traceparent", f"00-{TRACE}-00f067aa0ba902b7-01")
    env = {**stack.env, "COLUMNS": "200", "MCP_JOBS_TRACE_URL": TRACE_URL}

    code, out, err = await jobs_command(env, job_id)
    assert code == 0, err
    steps = [line.split("│") for line in out.splitlines() if re.match(r"│ +\d+ │", line)]  # the table's rows
    assert [cells[2].strip() for cells in steps] == ["started", "fetching", "parsing", "writing"], out
    assert [SLOWEST in cells[5] for cells in steps] == [False, False, True, False], out
    assert all(re.fullmatch(r" *\+[0-9.hms]+ ", cells[3]) for cells in steps), out
    assert "staged" in out and "succeeded" in out and "(anonymous)" in out, out
    assert TRACE in out and TRACE_URL.replace("{trace_id}", TRACE) in out, out
    assert "showing the last" not in out

    code, out, err = await jobs_command(env, job_id, "--json-output")
    assert code == 0, err
    data = json.loads(out)
    assert data["job"]["job_id"] == job_id and data["job"]["state"] == "succeeded" and data["job"]["worker"]
    steps = data["steps"]
    assert [step["message"] for step in steps] == ["started", "fetching", "parsing", "writing"], steps
    assert [step["number"] for step in steps] == [1, 2, 3, 4] and data["steps_total"] == 4
    fetching, parsing, writing = (step["duration"] for step in steps[1:])
    assert parsing > fetching and parsing > writing and parsing >= 1.0, steps
    assert [step["slowest"] for step in steps] == [False, False, True, False], steps
    offsets = [step["offset"] for step in steps]
    assert offsets == sorted(offsets) and offsets[0] == 0, offsets
    assert data["ended_at"] is not None and data["queue_wait"] is not None and data["queue_wait"] >= 0
    assert data["run_time"] >= fetching + parsing + writing - 0.05, data
    assert data["trace_id"] == TRACE and data["trace_link"] == TRACE_URL.replace("{trace_id}", TRACE)

    # Another caller's job is as unknown as one that never was; a malformed id is a usage error.
    for args in ([job_id, "--caller", "mallory"], [str(uuid.uuid4())]):
        code, out, err = await jobs_command(env, *args)
        assert code == 1 and "no job" in err and not out, (args, out, err)
    code, _, err = await jobs_command(env, "not-a-job-id")
    assert code == 2 and "is not a job id" in err, err


async def test_a_long_timeline_shows_its_last_steps_and_says_how_many_there_were(stack: Stack) -> None:
    stages: list[dict[str, object]] = [{"message": f"item {i}", "seconds": 0} for i in range(STEP_HISTORY + 5)]
    job_id = await staged_job(stack, stages)
    total = len(stages) + 1  # and the run's "started"
    env = {**stack.env, "COLUMNS": "200"}

    code, out, err = await jobs_command(env, job_id, "--json-output")
    assert code == 0, err
    data = json.loads(out)
    assert (data["steps_shown"], data["steps_total"]) == (STEP_HISTORY, total), data
    assert [step["number"] for step in data["steps"]] == list(range(total - STEP_HISTORY + 1, total + 1))
    assert data["steps"][-1]["message"] == f"item {len(stages) - 1}"

    code, out, err = await jobs_command(env, job_id)
    assert code == 0, err
    assert f"showing the last {STEP_HISTORY} of {total} steps" in out, out


async def test_a_running_jobs_last_step_is_still_going(stack: Stack) -> None:
    env = {**stack.env, "COLUMNS": "200"}
    async with running_job(stack, steps=100, delay=0.2, at=2) as (job_id, _):
        code, out, err = await jobs_command(env, job_id, "--json-output")
        assert code == 0, err
        data = json.loads(out)
        assert data["job"]["state"] == "running" and data["ended_at"] is None, data
        assert data["steps"][-1]["duration"] is None and all(s["duration"] is not None for s in data["steps"][:-1])
        assert data["run_time"] is not None and data["run_time"] > 0

        code, out, err = await jobs_command(env, job_id)
        assert code == 0, err
        (last,) = [line for line in out.splitlines() if STILL_GOING in line]
        assert "so far" in last, out
