"""A Redis failover under load: a master, a replica and three sentinels started here; the master
killed (SIGKILL) while eight calls and a task run; the sentinels promote the replica. The server,
the worker and Celery's broker connections find the new master through the sentinels
(`MCP_JOBS_REDIS_SENTINELS`), so every call ends with its result, on both protocol eras, a new
call works right after, and the task is completed and readable.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import httpx
import mcp_types as types
import pytest
import redis
from mcp import Client

from mcp_jobs.server.dev_redis import free_port
from tests.support.helpers import ProgressLog, assert_strictly_increasing, job_id_of
from tests.support.processes import ManagedProcess, start_http_server, start_worker, wait_until
from tests.support.sentinel import MASTER_NAME, SentinelSet, sentinel_set
from tests.test_tasks import create, settle

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

STEPS, DELAY = 40, 0.2
"""Each call runs about 8 s: long enough that the failover (about 3 s) falls inside every one."""

SLOTS = 8


@dataclass
class Failover:
    sentinels: SentinelSet
    url: str
    worker: ManagedProcess
    server: ManagedProcess


@contextmanager
def served_by_sentinels(stack_env: dict[str, str], **settings: str) -> Iterator[Failover]:
    """A master, a replica and three sentinels; a worker and a server that find the master
    through them, with `settings` (`MCP_JOBS_...`) on top."""
    with sentinel_set() as sentinels:
        env = stack_env | {
            # The host is the sentinels' to name; the URL still gives the database (and password).
            "MCP_JOBS_REDIS_URL": "redis://found-by-sentinel/0",
            "MCP_JOBS_REDIS_SENTINELS": sentinels.nodes,
            "MCP_JOBS_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "MCP_JOBS_NAMESPACE": f"failover-{uuid.uuid4().hex[:8]}",
            "MCP_JOBS_PROGRESS_RATE": "20",
            **settings,
        }
        # Eight slots for nine jobs (eight calls and a task): one waits on the broker's queue
        # through the failover.
        worker = start_worker(env, f"failover-{uuid.uuid4().hex[:6]}", concurrency=SLOTS, pool="threads")
        port = free_port()
        server = start_http_server(env, port)
        try:
            yield Failover(sentinels, f"http://127.0.0.1:{port}/mcp", worker, server)
        finally:
            server.stop()
            worker.stop()


@pytest.fixture
def failover(stack_env: dict[str, str]) -> Iterator[Failover]:
    with served_by_sentinels(stack_env) as served:
        yield served


async def test_calls_and_a_task_in_flight_end_with_their_results_across_a_failover(failover: Failover) -> None:
    sentinels = failover.sentinels
    logs = [ProgressLog() for _ in range(8)]
    results: dict[int, types.CallToolResult] = {}
    arguments = {"steps": STEPS, "delay": DELAY}
    async with (
        Client(failover.url, mode="auto") as modern,
        Client(failover.url, mode="legacy") as legacy,
        httpx.AsyncClient(timeout=60) as http,
    ):
        task = await create(http, failover.url, "sleep_steps", arguments)

        async def call(index: int) -> None:
            client = modern if index % 2 else legacy
            results[index] = await client.call_tool("sleep_steps", arguments, progress_callback=logs[index])

        async with anyio.create_task_group() as calls:
            for index in range(8):
                calls.start_soon(call, index)
            with anyio.fail_after(60):
                while sum(1 for log in logs if log.values and log.values[-1] >= 2) < SLOTS - 1:
                    await anyio.sleep(0.05)  # the running calls' progress reaches their callers
            old_master = sentinels.master.port
            master = redis.Redis(port=old_master, decode_responses=True)
            queued = master.llen("celery")
            master.close()
            sentinels.kill_master()
            killed = time.monotonic()
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: sentinels.master_port() == sentinels.replica.port, 30, "the promotion")
            )
            promoted = time.monotonic() - killed
        assert sentinels.master_port() != old_master
        for index in range(8):
            result = results[index]
            assert not result.is_error, (index, result.content)
            assert result.structured_content == {"steps": STEPS, "slept_seconds": pytest.approx(STEPS * DELAY)}
            assert logs[index].values[-1] == STEPS, (index, logs[index].values[-5:])
            assert_strictly_increasing(logs[index].values)
        # Right after: new calls on both eras, on the new master.
        for client in (modern, legacy):
            after = await client.call_tool("sleep_steps", {"steps": 2, "delay": 0})
            assert not after.is_error and after.structured_content == {"steps": 2, "slept_seconds": 0.0}
        done = await settle(http, failover.url, task["taskId"], timeout=60)
    assert done["status"] == "completed", done
    assert done["result"]["structuredContent"] == {"steps": STEPS, "slept_seconds": pytest.approx(STEPS * DELAY)}
    assert promoted < 30
    assert queued == 1, "one job was still on the broker's queue when the master died, and ran after"


async def test_with_no_master_left_calls_end_at_the_outage_limit(stack_env: dict[str, str]) -> None:
    """Master and replica both gone: no sentinel can promote anything, and the calls in flight end
    once Redis has been unreachable for `MCP_JOBS_REDIS_OUTAGE_LIMIT`, saying so, instead of hanging."""
    with served_by_sentinels(stack_env, MCP_JOBS_REDIS_OUTAGE_LIMIT="3") as served:
        logs = [ProgressLog() for _ in range(2)]
        results: dict[int, types.CallToolResult] = {}
        async with Client(served.url, mode="auto") as modern, Client(served.url, mode="legacy") as legacy:

            async def call(index: int) -> None:
                client = modern if index % 2 else legacy
                results[index] = await client.call_tool(
                    "sleep_steps", {"steps": 600, "delay": 0.1}, progress_callback=logs[index]
                )

            async with anyio.create_task_group() as calls:
                for index in range(2):
                    calls.start_soon(call, index)
                with anyio.fail_after(60):
                    for log in logs:
                        await log.wait_for(2)
                served.sentinels.replica.stop()
                served.sentinels.kill_master()
                lost = time.monotonic()
            ended = time.monotonic() - lost
        for index in range(2):
            assert results[index].is_error and "Redis is unreachable" in str(results[index].content), results[index]
        assert ended < 30, ended


async def test_a_retry_safe_job_across_a_failover_is_acknowledged_and_the_worker_takes_new_jobs(
    failover: Failover,
) -> None:
    """A late-acknowledged job holds its message unacknowledged while the master dies: the
    worker's consumer must survive closing that channel (kombu 5.7 did not: `broker.py`) and
    take the next job, and the job's message, when the visibility timeout brings it back, must
    not run the finished job again."""
    sentinels = failover.sentinels
    log = ProgressLog()
    results: dict[str, types.CallToolResult] = {}
    tag = uuid.uuid4().hex
    async with Client(failover.url, mode="auto") as client:

        async def call() -> None:
            results["safe"] = await client.call_tool(
                "safe_steps", {"tag": tag, "steps": STEPS, "delay": DELAY}, progress_callback=log
            )

        async with anyio.create_task_group() as calls:
            calls.start_soon(call)
            await log.wait_for(2, timeout=60)
            sentinels.kill_master()
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: sentinels.master_port() == sentinels.replica.port, 30, "the promotion")
            )
        with anyio.fail_after(60):
            after = await client.call_tool("sleep_steps", {"steps": 2, "delay": 0})
    assert not results["safe"].is_error and f"{tag} done after attempt 1" in str(results["safe"].content)
    assert not after.is_error, "the worker still consumes after the failover"
    # Its acknowledgement went to the channel the failover closed, so its message waits in the
    # unacknowledged set for the visibility timeout, as a lost worker's does. Put it back as
    # kombu's sweep would: the redelivered job finds its outcome written and runs nothing.
    master = redis.Redis(port=sentinels.replica.port, decode_responses=True)
    try:
        (raw,) = master.hvals("unacked")
        payload, _, queue = json.loads(raw)
        master.lpush(queue or "celery", json.dumps(payload))
    finally:
        master.close()
    job_id = job_id_of(results["safe"])
    failover.worker.wait_for_line(rf"job {job_id} \(safe_steps\) already finished; skipping", timeout=30)
