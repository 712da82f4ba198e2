"""The Tasks extension on the queue, end to end: real Redis, real workers, two more server
processes sharing nothing but Redis, raw 2026-07-28 requests (what a Tasks-aware client sends)
and the SDK client for callers that do not opt in.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from mcp_jobs.server.dev_redis import free_port
from tests.conftest import TS_CLIENT_DIR, Stack
from tests.support.helpers import ProgressLog, assert_strictly_increasing
from tests.support.processes import ManagedProcess, start_http_server
from tests.support.rawclient import HEADERS, modern_request

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"


@pytest.fixture
def replicas(stack: Stack) -> Iterator[list[tuple[str, ManagedProcess]]]:
    """Two more server processes on their own ports, beside the stack's."""
    servers = []
    try:
        for _ in range(2):
            port = free_port()
            servers.append((f"http://127.0.0.1:{port}/mcp", start_http_server(stack.env, port)))
        yield servers
    finally:
        for _, server in servers:
            server.stop()


async def create(http: httpx.AsyncClient, url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    response = await modern_request(http, url, "tools/call", {"name": tool, "arguments": arguments})
    assert "result" in response, response
    return dict(response["result"])


async def get(http: httpx.AsyncClient, url: str, task_id: str) -> dict[str, Any]:
    response = await modern_request(http, url, "tasks/get", {"taskId": task_id})
    assert "result" in response, response
    return dict(response["result"])


def without_meta(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "_meta"}


async def settle(http: httpx.AsyncClient, url: str, task_id: str, timeout: float = 20) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while (task := await get(http, url, task_id))["status"] == "working":
            await anyio.sleep(0.05)
    return task


async def test_a_task_created_on_one_server_is_followed_and_cancelled_on_another(
    stack: Stack, replicas: list[tuple[str, ManagedProcess]]
) -> None:
    (one, _), (other, _) = replicas
    async with httpx.AsyncClient(timeout=30) as http:
        created = await create(http, one, "sleep_steps", {"steps": 100, "delay": 0.1})
        assert created["resultType"] == "task" and created["status"] == "working", created
        assert created["ttlMs"] > 0 and created["pollIntervalMs"] > 0
        assert not {"result", "error", "task", "ttl", "pollInterval"} & set(created)
        task_id = created["taskId"]
        first = await get(http, other, task_id)  # resolves at once, on another replica
        assert first["taskId"] == task_id and first["resultType"] == "complete"
        with anyio.fail_after(20):
            while not (task := await get(http, other, task_id))["statusMessage"].startswith("[3/100]"):
                assert task["status"] == "working", task
                await anyio.sleep(0.02)
        assert task["statusMessage"].endswith("% step 3/100 done"), task
        assert re.match(ISO, task["createdAt"]) and re.match(ISO, task["lastUpdatedAt"])
        assert task["createdAt"] < task["lastUpdatedAt"]
        ack = await modern_request(http, other, "tasks/cancel", {"taskId": task_id})
        assert without_meta(ack["result"]) == {"resultType": "complete"}, ack
        final = await settle(http, one, task_id, timeout=5)
    assert final["status"] == "cancelled" and "result" not in final
    assert stack.redis().hget(stack.keys.job(task_id), "state") == "cancelled"
    assert float(stack.redis().hget(stack.keys.job(task_id), "progress") or 0) < 100


async def test_a_task_outlives_the_server_that_created_it(
    stack: Stack, replicas: list[tuple[str, ManagedProcess]]
) -> None:
    (one, creator), (other, _) = replicas
    async with httpx.AsyncClient(timeout=30) as http:
        created = await create(http, one, "slow_compute", {"seconds": 2, "label": "survivor"})
        os.killpg(creator.pid, signal.SIGKILL)
        creator.process.wait(10)
        final = await settle(http, other, created["taskId"])
    assert final["status"] == "completed", final
    assert final["result"]["content"][0]["text"] == '"survivor computed for 2 s"' or "survivor computed" in str(
        final["result"]
    )
    assert not final["result"].get("isError")


async def test_job_errors_complete_with_is_error_and_protocol_errors_fail(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        failing = await create(http, stack.http_url, "failing_job", {})
        broken = await create(http, stack.http_url, "protocol_error_job", {})
        failed_job = await settle(http, stack.http_url, failing["taskId"])
        protocol = await settle(http, stack.http_url, broken["taskId"])
    assert failed_job["status"] == "completed" and failed_job["result"]["isError"] is True
    assert "failed on purpose" in failed_job["result"]["content"][0]["text"]
    assert protocol["status"] == "failed" and protocol["error"]["code"] == -32603 and "result" not in protocol


async def test_a_required_task_without_the_opt_in_is_refused_and_tasks_need_it_too(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await modern_request(
            http, stack.http_url, "tools/call", {"name": "failing_job", "arguments": {}}, tasks=False
        )
        gated = await modern_request(http, stack.http_url, "tasks/get", {"taskId": "anything"}, tasks=False)
        unknown = await modern_request(http, stack.http_url, "tasks/get", {"taskId": str(uuid.uuid4())})
        created = await create(http, stack.http_url, "slow_compute", {"seconds": 0.2})
        misrouted = await modern_request(http, stack.http_url, "tasks/get", {"taskId": created["taskId"]}, name="other")
    assert refused["error"]["code"] == -32021
    assert "io.modelcontextprotocol/tasks" in refused["error"]["data"]["requiredCapabilities"]["extensions"]
    assert gated["error"]["code"] == -32021, "checked before the task is looked up"
    assert unknown["error"]["code"] == -32602
    assert misrouted["error"]["code"] == -32020


async def test_an_expired_task_is_gone(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        created = await create(http, stack.http_url, "slow_compute", {"seconds": 0})
        done = await settle(http, stack.http_url, created["taskId"])
        assert done["status"] == "completed" and 0 < done["ttlMs"] <= 3600 * 1000 + 60_000
        stack.redis().pexpire(stack.keys.job(created["taskId"]), 1)  # as if the TTL ran out
        with anyio.fail_after(5):
            while stack.redis().exists(stack.keys.job(created["taskId"])):
                await anyio.sleep(0.01)
        gone = await modern_request(http, stack.http_url, "tasks/get", {"taskId": created["taskId"]})
    assert gone["error"]["code"] == -32602


async def test_ids_that_are_not_task_ids_are_refused_before_redis_is_read(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        created = await create(http, stack.http_url, "sleep_steps", {"steps": 100, "delay": 0.1})
        task_id = created["taskId"]
        with anyio.fail_after(10):  # running: its liveness key exists, and is a string, not a hash
            while not stack.redis().exists(stack.keys.alive(task_id)):
                await anyio.sleep(0.05)
        answers = [
            await modern_request(http, stack.http_url, method, {"taskId": bad})
            for method in ("tasks/get", "tasks/cancel")
            for bad in (f"{task_id}:alive", "not-a-task", task_id.upper())
        ]
        await modern_request(http, stack.http_url, "tasks/cancel", {"taskId": task_id})
    assert all(answer.get("error", {}).get("code") == -32602 for answer in answers), answers
    assert "WRONGTYPE" not in stack.server.output(20_000)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_that_does_not_opt_in_gets_the_streaming_call_with_progress(stack: Stack, mode: str) -> None:
    log = ProgressLog()
    async with Client(stack.http_url, mode=mode) as client:
        result = await client.call_tool("slow_compute", {"seconds": 2, "label": "streamed"}, progress_callback=log)
    assert not result.is_error and result.structured_content == {"result": "streamed computed for 2 s"}
    assert [u.message for u in log.updates][-1] == "streamed: 2/2 s"
    assert_strictly_increasing(log.values)


def ts_task(node: str, url: str, tool: str, arguments: dict[str, Any], mode: str) -> dict[str, Any]:
    """Drive `tool` as a task with the official TypeScript client (npm @modelcontextprotocol/ext-tasks)."""
    args = [node, "tasks.mjs", url, tool, json.dumps(arguments), mode]
    done = subprocess.run(args, cwd=TS_CLIENT_DIR, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_typescript_tasks_client_settles_and_cancels_jobs(node: str, stack: Stack) -> None:
    done = ts_task(node, stack.http_url, "slow_compute", {"seconds": 1, "label": "ts"}, "settle")
    assert done["ok"] and done["status"] == "completed", done
    assert done["result"]["structuredContent"] == {"result": "ts computed for 1 s"}
    failing = ts_task(node, stack.http_url, "failing_job", {}, "settle")
    assert failing["status"] == "completed" and failing["result"]["isError"] is True, failing
    cancelled = ts_task(node, stack.http_url, "sleep_steps", {"steps": 100, "delay": 0.1}, "cancel")
    assert cancelled["status"] == "cancelled" and cancelled["serverStatus"] == "cancelled", cancelled
    assert stack.redis().hget(stack.keys.job(cancelled["taskId"]), "state") == "cancelled"


async def test_a_task_whose_job_waits_past_the_queue_deadline_fails_when_it_is_read(stack: Stack) -> None:
    """No follower runs for a task: `tasks/get` applies the queue-wait deadline from the snapshot's
    own timestamps, ends the job (so a worker arriving late skips it) and says why."""
    port = free_port()
    server = start_http_server(stack.env | {"MCP_JOBS_MAX_QUEUE_WAIT": "1"}, port)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            created = await create(http, url, "unheard", {})  # queue "nobody": no worker consumes it
            first = await get(http, url, created["taskId"])
            settled = await settle(http, url, created["taskId"], timeout=10)
    finally:
        server.stop()
    assert first["status"] == "working"
    assert settled["status"] == "completed" and settled["result"]["isError"] is True
    assert "nobody" in settled["result"]["content"][0]["text"], settled
    snapshot = stack.redis().hgetall(stack.keys.job(created["taskId"]))
    assert snapshot["state"] == "failed" and snapshot["error_type"] == "QueueTimeout"
    stack.redis().delete("nobody")  # the message nobody consumed


async def call_with_progress(http: httpx.AsyncClient, url: str, tool: str, arguments: dict[str, Any]) -> list[Any]:
    """A 2026-07-28 `tools/call` that opts in to tasks and sends a progress token: every message
    of its response, in wire order."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
        "progressToken": "live",
    }
    body = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta},
    }
    headers = HEADERS | {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool}
    response = await http.post(url, json=body, headers=headers)
    messages = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    return messages or [response.json()]


async def test_a_task_caller_that_asks_for_progress_sees_it_live_until_the_job_becomes_a_task(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        # Done within the threshold: an ordinary call, its progress live, its result at the end.
        quick = await call_with_progress(http, stack.http_url, "patient_steps", {"steps": 3, "delay": 0.05})
        # Still running after it (1 s for this job): the steps so far live, then the task handle.
        slow = await call_with_progress(http, stack.http_url, "patient_steps", {"steps": 20, "delay": 0.15})
        handle = slow[-1]["result"]
        assert handle["resultType"] == "task" and handle["status"] == "working", handle
        done = await settle(http, stack.http_url, handle["taskId"], timeout=30)
    progress = [m["params"] for m in quick if m.get("method") == "notifications/progress"]
    assert quick[-1]["result"]["structuredContent"] == {"result": 3}
    assert progress and progress[-1]["progress"] == 3 and {p["progressToken"] for p in progress} == {"live"}
    streamed = [m["params"]["progress"] for m in slow if m.get("method") == "notifications/progress"]
    assert streamed and 0 < streamed[-1] < 20, streamed
    assert_strictly_increasing(streamed)
    assert done["status"] == "completed" and done["result"]["structuredContent"] == {"result": 20}
