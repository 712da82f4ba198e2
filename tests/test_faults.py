"""Fault injection with real processes: time limits, a queue nobody serves, silent jobs, killed
pool processes and workers, a Redis restart. Each test asserts the outcome and a bound on how
long it took.

The module runs its own stack (Redis-compatible server, two single-process workers, the HTTP
server) with short timings, so that killing things here cannot disturb other tests.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import psutil
import pytest
import redis
from mcp import Client
from mcp.types import CallToolResult

from mcp_jobs._events import Keys
from mcp_jobs.server.dev_redis import RedisProcess, free_port
from mcp_jobs.server.dispatch import REDIS_UNREADABLE
from tests.conftest import TEST_JOB_MODULES
from tests.support.helpers import ProgressLog, assert_strictly_increasing, job_id_of_key, job_keys
from tests.support.processes import REPO, ManagedProcess, start_http_server, start_worker
from tests.support.rawclient import modern_request

pytestmark = pytest.mark.anyio

QUEUE_WAIT = 3.0
LOST_AFTER = 2.0
POLL = 0.5
KEEPALIVE = 0.5
VISIBILITY = 4


@dataclass
class FaultStack:
    redis: RedisProcess
    env: dict[str, str]
    keys: Keys
    url: str
    server: ManagedProcess
    workers: list[ManagedProcess] = field(default_factory=list)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, decode_responses=True)

    def ensure_workers(self, count: int = 2) -> None:
        self.workers = [w for w in self.workers if w.process.poll() is None]
        while len(self.workers) < count:
            self.workers.append(start_worker(self.env, f"fault-{uuid.uuid4().hex[:6]}", concurrency=1))

    def job_pid(self, job_id: str) -> int:
        return int(self.client().hget(self.keys.job(job_id), "pid") or 0)

    def worker_of(self, pid: int) -> ManagedProcess:
        (worker,) = [w for w in self.workers if pid in {c.pid for c in psutil.Process(w.pid).children(recursive=True)}]
        return worker


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultStack]:
    server_redis = RedisProcess(prefer_path=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_JOBS_")}
    env |= {
        "MCP_JOBS_REDIS_URL": server_redis.url,
        "MCP_JOBS_NAMESPACE": "faults",
        "MCP_JOBS_JOB_MODULES": TEST_JOB_MODULES,
        "MCP_JOBS_SNAPSHOT_POLL_INTERVAL": str(POLL),
        "MCP_JOBS_KEEPALIVE_INTERVAL": str(KEEPALIVE),
        "MCP_JOBS_MAX_QUEUE_WAIT": str(QUEUE_WAIT),
        "MCP_JOBS_WORKER_LOST_AFTER": str(LOST_AFTER),
        "MCP_JOBS_HEARTBEAT_INTERVAL": "0.5",
        "MCP_JOBS_VISIBILITY_TIMEOUT": str(VISIBILITY),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    stack = FaultStack(server_redis, env, Keys("faults"), f"http://127.0.0.1:{port}/mcp", server=None)  # type: ignore[arg-type]
    stack.ensure_workers()
    stack.server = start_http_server(env, port)
    try:
        yield stack
    finally:
        stack.server.stop()
        for worker in stack.workers:
            worker.stop()
        server_redis.close()


@pytest.fixture
def stack(faults: FaultStack) -> FaultStack:
    faults.ensure_workers()
    return faults


async def _call(stack: FaultStack, tool: str, arguments: dict[str, object], log: ProgressLog | None = None):
    async with Client(stack.url, mode="legacy") as client:
        return await client.call_tool(tool, arguments, progress_callback=log)


def _text(result: object) -> str:
    return result.content[0].text  # type: ignore[attr-defined]


async def test_a_job_over_its_time_limit_is_stopped(stack: FaultStack) -> None:
    started = time.monotonic()
    result = await _call(stack, "overrun", {"seconds": 30})
    took = time.monotonic() - started
    assert result.is_error and "exceeded its time limit of 1 s" in _text(result)
    assert took < 5, took


async def test_a_job_that_ignores_the_soft_limit_is_killed_at_the_hard_one(stack: FaultStack) -> None:
    started = time.monotonic()
    result = await _call(stack, "stubborn", {"seconds": 60})
    took = time.monotonic() - started
    assert result.is_error and "exceeded its time limit of 1 s" in _text(result)
    assert took < 1 + 5 + 4, took  # limit + grace before the kill + detection


async def test_a_job_no_worker_takes_ends_clearly_and_a_late_worker_skips_it(stack: FaultStack) -> None:
    log = ProgressLog()
    started = time.monotonic()
    result = await _call(stack, "unheard", {}, log)
    took = time.monotonic() - started
    assert result.is_error
    assert f"No worker started job unheard within {QUEUE_WAIT:g} s" in _text(result) and "'nobody'" in _text(result)
    assert QUEUE_WAIT <= took < QUEUE_WAIT + 3, took
    messages = [u.message for u in log.updates]
    assert messages[0] == "queued: 1 job waiting in the queue", messages
    assert len(log.updates) >= QUEUE_WAIT / KEEPALIVE - 2, "queued calls are kept alive"
    assert_strictly_increasing(log.values)

    (key,) = [k for k in job_keys(stack.client(), stack.keys) if stack.client().hget(k, "job") == "unheard"]
    job_id = job_id_of_key(key)
    late = start_worker(stack.env, "late", concurrency=1, queues="nobody")
    try:
        late.wait_for_line(job_id, timeout=30)  # the late worker received the message...
        snapshot = stack.client().hgetall(key)
        assert snapshot["state"] == "failed" and snapshot["error_type"] == "QueueTimeout"
        assert "pid" not in snapshot, "...and skipped it: the job never ran"
    finally:
        late.stop()


async def test_a_silent_job_is_kept_alive_with_increasing_notifications(stack: FaultStack) -> None:
    log = ProgressLog()
    result = await _call(stack, "silent", {"seconds": 3}, log)
    assert not result.is_error and result.structured_content == {"result": "done quietly"}
    assert len(log.updates) >= 4, log.updates
    assert all(u.message and u.message.startswith("still running") for u in log.updates[1:])
    assert_strictly_increasing(log.values)
    gaps = [b.at - a.at for a, b in zip(log.updates, log.updates[1:])]
    assert max(gaps) < KEEPALIVE + 1.0, gaps


async def _kill_when_running(
    stack: FaultStack, tool: str, tag: str, log: ProgressLog, *, whole_worker: bool
) -> tuple[object, float]:
    """Start `tool`, kill its pool process (or its whole worker) at step 2, return the result and
    the seconds from the kill to the end of the call."""
    outcome: dict[str, object] = {}
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            outcome["result"] = await _call(stack, tool, {"tag": tag, "steps": 10, "delay": 0.2}, log)
            outcome["ended"] = time.monotonic()

        tg.start_soon(call)
        await log.wait_for(2)
        redis_client = stack.client()
        (key,) = [
            k
            for k in job_keys(redis_client, stack.keys)
            if (redis_client.hget(k, "message") or "").startswith(f"{tag}:")
        ]
        pid = stack.job_pid(job_id_of_key(key))
        if whole_worker:
            worker = stack.worker_of(pid)
            os.killpg(worker.pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
    return outcome["result"], float(outcome["ended"]) - killed_at  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("whole_worker", "bound"),
    [
        (False, 10),  # the pool process dies: Celery requeues the job at once
        (True, VISIBILITY + 5 + 2 * 2 + 5),  # the worker dies: visibility timeout + restore sweep + re-run + slack
    ],
    ids=["pool-process", "whole-worker"],
)
async def test_a_retry_safe_job_that_loses_its_worker_is_run_again(
    stack: FaultStack, whole_worker: bool, bound: float
) -> None:
    log = ProgressLog()
    tag = f"safe-{'worker' if whole_worker else 'pool'}"
    result, took = await _kill_when_running(stack, "safe_steps", tag, log, whole_worker=whole_worker)
    assert not result.is_error, _text(result)  # type: ignore[attr-defined]
    assert result.structured_content == {"result": f"{tag} done after attempt 2"}  # type: ignore[attr-defined]
    assert_strictly_increasing(log.values)
    assert any(u.message and "(attempt 2)" in u.message for u in log.updates), [u.message for u in log.updates]
    assert took < bound, took


async def test_an_unsafe_job_whose_pool_process_dies_fails_quickly(stack: FaultStack) -> None:
    log = ProgressLog()
    result, took = await _kill_when_running(stack, "unsafe_steps", "unsafe-pool", log, whole_worker=False)
    text = _text(result)
    # Whichever notices first: Celery's main process (the pool process died) or the server (no heartbeat).
    assert result.is_error and "lost its worker" in text and "not marked safe to re-run" in text, text  # type: ignore[attr-defined]
    assert took < LOST_AFTER + POLL + 3, took


async def test_an_unsafe_job_whose_worker_dies_fails_when_its_heartbeat_stops(stack: FaultStack) -> None:
    log = ProgressLog()
    result, took = await _kill_when_running(stack, "unsafe_steps", "unsafe-worker", log, whole_worker=True)
    text = _text(result)
    assert result.is_error and f"lost its worker (no heartbeat for {LOST_AFTER:g} s)" in text, text  # type: ignore[attr-defined]
    assert took < LOST_AFTER + POLL + 3, took


async def test_a_redis_restart_mid_job_ends_every_call_and_nothing_dies(stack: FaultStack) -> None:
    workers = {w.pid for w in stack.workers}
    log = ProgressLog()
    outcome: dict[str, object] = {}
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            outcome["result"] = await _call(stack, "unsafe_steps", {"tag": "outage", "steps": 15, "delay": 0.2}, log)

        tg.start_soon(call)
        await log.wait_for(2)
        stack.redis.stop()
        stack.redis.start()
        restarted_at = time.monotonic()
    took = time.monotonic() - restarted_at
    result = outcome["result"]
    assert not result.is_error, _text(result)  # type: ignore[attr-defined]
    assert result.structured_content == {"result": "outage done"}  # type: ignore[attr-defined]
    assert_strictly_increasing(log.values)
    assert took < 15, took
    assert stack.server.process.poll() is None
    assert {w.pid for w in stack.workers if w.process.poll() is None} == workers, "workers survive a Redis restart"
    after = await _call(stack, "unsafe_steps", {"tag": "after", "steps": 1, "delay": 0})
    assert not after.is_error and after.structured_content == {"result": "after done"}


async def test_a_task_whose_worker_dies_is_ended_as_worker_lost_when_read(stack: FaultStack) -> None:
    """No follower runs for a task: `tasks/get` applies the same lost-worker rule as a call's
    follower (two beats of grace from the first read that missed the worker), on any replica."""
    async with httpx.AsyncClient(timeout=30) as http:
        created = await modern_request(
            http, stack.url, "tools/call", {"name": "unsafe_steps", "arguments": {"tag": "task-lost", "steps": 100}}
        )
        task_id = created["result"]["taskId"]
        with anyio.fail_after(20):
            while not stack.job_pid(task_id):
                await anyio.sleep(0.05)
        os.killpg(stack.worker_of(stack.job_pid(task_id)).pid, signal.SIGKILL)
        seen_lost = False
        with anyio.fail_after(LOST_AFTER + 20):
            while (task := (await modern_request(http, stack.url, "tasks/get", {"taskId": task_id}))["result"])[
                "status"
            ] == "working":
                seen_lost = seen_lost or stack.client().hexists(stack.keys.job(task_id), "lost_since")
                await anyio.sleep(0.1)
    assert seen_lost, "the first read without a heartbeat starts the grace, kept in the snapshot"
    text = task["result"]["content"][0]["text"]
    assert task["status"] == "completed" and task["result"]["isError"], task
    assert f"lost its worker (no heartbeat for {LOST_AFTER:g} s)" in text, text
    assert stack.client().hget(stack.keys.job(task_id), "error_type") == "WorkerLost"


async def _reads_while_redis_is_down(url: str) -> tuple[dict[str, Any], CallToolResult]:
    """What `tasks/get` and the handoff's `job_status` answer while the server cannot reach Redis."""
    job_id = str(uuid.uuid4())
    async with httpx.AsyncClient(timeout=30) as http:
        task = await modern_request(http, url, "tasks/get", {"taskId": job_id})
    async with Client(url, mode="legacy") as client:
        status = await client.call_tool("job_status", {"job_id": job_id})
    return task, status


async def test_redis_gone_for_good_ends_every_call_with_an_error_that_says_so(stack: FaultStack) -> None:
    """Two calls running and two queued (both workers busy), then Redis killed and not restarted:
    each call ends within the outage limit plus a poll, saying Redis is unreachable, and once the
    server has seen the outage its notices say that, not a job state it cannot read. Meanwhile
    tasks and the handoff tools answer with an error that says so too."""
    limit = 3.0
    port = free_port()
    server = start_http_server(stack.env | {"MCP_JOBS_REDIS_OUTAGE_LIMIT": str(limit)}, port)
    url = f"http://127.0.0.1:{port}/mcp"
    logs = {tag: ProgressLog() for tag in ("run-1", "run-2", "wait-1", "wait-2")}
    results: dict[str, object] = {}
    try:
        async with anyio.create_task_group() as tg:

            async def call(tag: str) -> None:
                async with Client(url, mode="legacy") as client:
                    results[tag] = await client.call_tool(
                        "unsafe_steps", {"tag": tag, "steps": 300, "delay": 0.2}, progress_callback=logs[tag]
                    )
                results[f"{tag}:ended"] = time.monotonic()

            for tag in ("run-1", "run-2"):
                tg.start_soon(call, tag)
            await logs["run-1"].wait_for(2)
            await logs["run-2"].wait_for(2)
            for tag in ("wait-1", "wait-2"):
                tg.start_soon(call, tag)
            with anyio.fail_after(20):
                while not all(
                    any("queued" in (u.message or "") for u in logs[t].updates) for t in ("wait-1", "wait-2")
                ):
                    await anyio.sleep(0.05)
            stack.redis.stop()
            killed_at = time.monotonic()
            task, status = await _reads_while_redis_is_down(url)
        assert task["error"]["message"] == REDIS_UNREADABLE, task
        assert status.is_error and REDIS_UNREADABLE in _text(status), _text(status)
        for tag, log in logs.items():
            result = results[tag]
            assert result.is_error, (tag, _text(result))  # type: ignore[attr-defined]
            assert "Redis is unreachable" in _text(result), (tag, _text(result))
            took = float(results[f"{tag}:ended"]) - killed_at  # type: ignore[arg-type]
            assert took < limit + 10, (tag, took)
            told = [i for i, u in enumerate(log.updates) if "Redis unreachable" in (u.message or "")]
            assert told, (tag, [u.message for u in log.updates[-5:]])
            after = [u.message or "" for u in log.updates[told[0] :]]
            assert not any("queued" in m or "running" in m for m in after), (tag, after)
        assert server.process.poll() is None, "the server stays up"
    finally:
        server.stop()
        stack.redis.start()  # for whatever runs after this module's last test
