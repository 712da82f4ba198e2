"""What an operator runs: readiness, metrics (scraped and parsed), quotas, JSON logs, and a
server and a worker stopped with SIGTERM while calls are in flight, all with real processes."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator

import anyio
import httpx
import httpx2
import pytest
import redis.asyncio as aioredis
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from mcp_jobs._events import JobState
from mcp_jobs.server.dev_redis import free_port
from mcp_jobs.server.snapshots import AsyncJobStore
from tests.conftest import Stack
from tests.support.helpers import ProgressLog, job_id_of, wait_for_state
from tests.support.processes import ManagedProcess, start_http_server, start_worker, wait_until
from tests.support.rawclient import modern_request

pytestmark = pytest.mark.anyio


def base(url: str) -> str:
    return url.removesuffix("/mcp")


def readiness(url: str) -> tuple[int, dict[str, object]]:
    response = httpx.get(base(url) + "/readyz", timeout=5)
    return response.status_code, response.json()


def test_readyz_wants_a_live_worker_for_every_queue_the_server_routes_to(stack: Stack) -> None:
    # The test jobs route to queues "nobody" and "drain", which no worker of the stack consumes.
    status, state = readiness(stack.http_url)
    assert status == 503 and state["redis"] is True, state
    assert set(state["queues_without_workers"]) == {"nobody", "drain"}, state  # type: ignore[arg-type]
    extra = start_worker(stack.env, f"ready-{uuid.uuid4().hex[:6]}", concurrency=1, queues="nobody,drain")
    try:
        wait_until(lambda: readiness(stack.http_url)[0] == 200, timeout=20, what="readiness with every queue served")
    finally:
        extra.stop()
    wait_until(lambda: readiness(stack.http_url)[0] == 503, timeout=20, what="a stopped worker to withdraw")
    assert httpx.get(base(stack.http_url) + "/healthz", timeout=5).status_code == 200, "liveness is not readiness"


async def test_with_workers_that_scale_to_zero_a_server_is_ready_and_queues_the_job(stack: Stack) -> None:
    """`MCP_JOBS_READY_WITHOUT_WORKERS`: ready while no worker serves a queue (still listed), and a
    call's job waits in that queue until a worker comes, as a scaler starting one would."""
    port = free_port()
    server = start_http_server(stack.env | {"MCP_JOBS_READY_WITHOUT_WORKERS": "true"}, port)
    url = f"http://127.0.0.1:{port}/mcp"
    late: ManagedProcess | None = None
    try:
        status, state = readiness(url)
        assert status == 200 and state["ready"] is True, state
        assert set(state["queues_without_workers"]) == {"nobody", "drain"}, state  # type: ignore[arg-type]
        log = ProgressLog()
        async with Client(url) as client, anyio.create_task_group() as tg:
            results = []

            async def call() -> None:
                arguments = {"steps": 2, "delay": 0.05}
                results.append(await client.call_tool("drain_steps", arguments, progress_callback=log))

            tg.start_soon(call)
            first = await log.wait_for(0)  # the job waits for a worker, and the caller is told
            assert "queued" in (first.message or ""), log.updates
            late = start_worker(stack.env, f"late-{uuid.uuid4().hex[:6]}", concurrency=1, queues="drain")
        assert not results[0].is_error and results[0].structured_content == {"result": 2}, results
    finally:
        if late is not None:
            late.stop()
        server.stop()


async def test_metrics_are_scraped_and_parsed(stack: Stack) -> None:
    log = ProgressLog()
    async with Client(stack.http_url) as client:
        await client.call_tool("sleep_steps", {"steps": 3, "delay": 0.05}, progress_callback=log)
        await client.call_tool("fail_politely", {"reason": "metrics"})
        stages = [{"message": "warming up", "seconds": 0.3}, {"message": "done soon", "seconds": 0}]
        await client.call_tool("staged", {"stages": stages})
    text = httpx.get(base(stack.http_url) + "/metrics", timeout=5).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("mcp_jobs_calls_total", tool="sleep_steps", outcome="succeeded") >= 1
    assert value("mcp_jobs_calls_total", tool="fail_politely", outcome="failed") >= 1
    assert value("mcp_jobs_queue_wait_seconds_count", tool="sleep_steps") >= 1
    assert value("mcp_jobs_run_seconds_count", tool="sleep_steps") >= 1
    # Three steps ("started", and the two stages), timed as the job's timeline times them.
    assert value("mcp_jobs_step_seconds_count", tool="staged") >= 3
    assert value("mcp_jobs_step_seconds_sum", tool="staged") >= 0.3
    assert value("mcp_jobs_run_seconds_sum", tool="staged") >= 0.3
    assert value("mcp_jobs_progress_lag_seconds_count") >= 3
    assert value("mcp_jobs_notifications_total", result="sent") >= 4
    assert ("mcp_jobs_calls_in_flight", ()) in samples
    assert value("mcp_jobs_workers_alive", queue="celery") >= 2
    assert ("mcp_jobs_queue_depth", (("queue", "celery"),)) in samples
    labels = {dict(labels).get("tool") for (_, labels) in samples} - {None}
    assert labels <= set(json.loads(json.dumps(list(labels)))), "tool labels only"


@pytest.fixture
def limited(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = stack.env | {
        "MCP_JOBS_MAX_CALLS_PER_CALLER": "1",
        "MCP_JOBS_MAX_QUEUED_JOBS": "1",
        "MCP_JOBS_LOG_FORMAT": "json",
    }
    server = start_http_server(env, port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("job_id") for line in lines), "cancellations are logged with their job id"


async def test_quotas_refuse_with_a_clear_error_and_json_logs(limited: str) -> None:
    # Queued jobs per queue: tasks wait in queue "nobody", which no worker consumes.
    async with httpx.AsyncClient(timeout=30) as http:
        first = await modern_request(http, limited, "tools/call", {"name": "unheard", "arguments": {}})
        refused = await modern_request(http, limited, "tools/call", {"name": "unheard", "arguments": {}})
        # Cancelled while queued: no worker will run it, so it no longer counts for its caller.
        await modern_request(http, limited, "tasks/cancel", {"taskId": first["result"]["taskId"]})
    assert first["result"]["resultType"] == "task", first
    assert refused["result"]["isError"], refused
    assert "Queue 'nobody' already holds 1 jobs" in refused["result"]["content"][0]["text"]

    # Jobs per caller (here the one anonymous caller, limit 1).
    log = ProgressLog()
    async with Client(limited) as client, anyio.create_task_group() as tg:

        async def first_call() -> None:
            await client.call_tool("sleep_steps", {"steps": 100, "delay": 0.1}, progress_callback=log)

        tg.start_soon(first_call)
        await log.wait_for(1)
        second = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
        tg.cancel_scope.cancel()
    assert second.is_error, second
    assert "You have 1 job queued or running" in second.content[0].text  # type: ignore[union-attr]


async def test_a_caller_counts_only_its_jobs_that_can_still_run(stack: Stack) -> None:
    """The admission in the write script, against a real Redis: finished, vanished, cancelled
    queued and worker-lost jobs leave a caller's count; a refused job is not created."""
    client = aioredis.Redis.from_url(stack.redis_url)
    store = AsyncJobStore(client, stack.keys, ttl=60)
    caller = f"caller-{uuid.uuid4().hex[:6]}"

    async def create() -> tuple[str, int]:
        job_id = str(uuid.uuid4())
        outcome = await store.write(job_id, JobState.QUEUED, extra={"job": "echo"}, admit=(caller, 2))
        return job_id, outcome.seq

    (done, seq_a), (cancelled, seq_b) = await create(), await create()
    assert seq_a > 0 and seq_b > 0
    refused, seq = await create()
    assert seq == -1 and (await store.read(refused))[0] is None, "a refused job is not created"

    await store.write(done, JobState.SUCCEEDED, result=1)
    running, seq = await create()
    assert seq > 0, "a finished job frees its place"
    await store.flag_cancel(cancelled)
    lost, seq = await create()
    assert seq > 0, "a queued job already cancelled frees its place"
    assert (await create())[1] == -1

    await store.write(running, JobState.RUNNING, alive_for=60)
    await store.write(lost, JobState.RUNNING, alive_for=0)  # running, and no liveness key: its worker is gone
    vanished, seq = await create()
    assert seq > 0, "a running job without a live worker frees its place"
    stack.redis().delete(stack.keys.job(vanished))
    assert (await create())[1] > 0, "so does a job gone from Redis"
    assert (await create())[1] == -1, "the running job with a live worker still counts"
    await client.aclose()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_stopping_server_finishes_short_calls_and_hands_off_long_ones(stack: Stack, mode: str) -> None:
    """Both eras: a 2025-11-25 session's calls stream through sse-starlette, which would end
    every stream at the first SIGTERM (see server/drain.py)."""
    port = free_port()
    server = start_http_server(stack.env | {"MCP_JOBS_SHUTDOWN_GRACE": "1.5"}, port)
    url = f"http://127.0.0.1:{port}/mcp"
    short_log, long_log = ProgressLog(), ProgressLog()
    results = {}
    try:
        try:
            async with Client(url, mode=mode) as client, anyio.create_task_group() as tg:

                async def call(name: str, steps: int, log: ProgressLog) -> None:
                    arguments = {"steps": steps, "delay": 0.2}
                    results[name] = await client.call_tool("sleep_steps", arguments, progress_callback=log)

                await client.list_tools()  # the client validates results against cached schemas: fetch them now
                tg.start_soon(call, "short", 4, short_log)
                tg.start_soon(call, "long", 40, long_log)
                await short_log.wait_for(1)
                await long_log.wait_for(1)
                os.kill(server.pid, signal.SIGTERM)
        except* httpx2.ConnectError:
            pass  # the client's goodbye finds the server gone: expected, the results are in
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert server.process.wait(15) in (0, -signal.SIGTERM), server.output()
    finally:
        server.stop()
    assert not results["short"].is_error and results["short"].structured_content["steps"] == 4  # type: ignore[index]
    handed = results["long"]
    assert handed.is_error and "goes on in the background" in handed.content[0].text  # type: ignore[union-attr]
    key = stack.keys.job(job_id_of(handed))
    assert await wait_for_state(stack.redis(), key, {"succeeded"}, timeout=20) == "succeeded", "the job went on"


async def test_a_stopping_worker_finishes_its_running_job(stack: Stack) -> None:
    worker = start_worker(stack.env, f"drain-{uuid.uuid4().hex[:6]}", concurrency=1, queues="drain")
    log = ProgressLog()
    try:
        async with Client(stack.http_url) as client, anyio.create_task_group() as tg:
            outcome = {}

            async def call() -> None:
                outcome["result"] = await client.call_tool(
                    "drain_steps", {"steps": 10, "delay": 0.2}, progress_callback=log
                )

            tg.start_soon(call)
            await log.wait_for(2)
            # To the main process only, as a container runtime sends it (a signal to the whole
            # process group would also kill the pool process running the job).
            os.kill(worker.pid, signal.SIGTERM)  # Celery's warm shutdown
        assert worker.process.wait(30) == 0, worker.output()
    finally:
        worker.stop()
    result = outcome["result"]
    assert not result.is_error and result.structured_content == {"result": 10}, result.content
    assert log.values[-1] == 10
