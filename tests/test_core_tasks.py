"""2025-11-25 core tasks end to end: the official TypeScript SDK 1.x drives them with its own task
API (`client.experimental.tasks`, tests/ts_client/core_tasks.mjs): a call streamed as a task to
its result (progress on the call's token, status polls and notifications), `tasks/list`, a cancel
that stops the job on the worker, and a task created through one replica that another one reads,
lists, answers and cancels after the creating session has ended. Raw HTTP checks the rest of the
wire: the capability, `execution.taskSupport`, a 2025-11-25 call without `params.task`, and the
errors of that revision (and of 2026-07-28, where these methods do not exist).

A worker and two server replicas on Redis database 8, a namespace of their own.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
import redis

from mcp_jobs._events import Keys
from tests.conftest import TS_CLIENT_DIR
from tests.support.helpers import assert_strictly_increasing
from tests.support.processes import replica_stack
from tests.support.rawclient import HEADERS, call_messages, modern_request, open_session, progress_of, tool_call

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

DATABASE = 8
CORE = "2025-11-25"
CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
RELATED_TASK = "io.modelcontextprotocol/related-task"
TTL = 60_000
"""The ttl core_tasks.mjs asks for (its default)."""
INVALID_PARAMS, METHOD_NOT_FOUND = -32602, -32601
LONG = {"steps": 400, "delay": 0.05}
"""A job that runs 20 s unless it is cancelled."""


@dataclass
class Replicas:
    """The two servers' URLs, and the Redis database their jobs live in."""

    first: str
    second: str
    redis: redis.Redis

    def job_keys(self, task_id: str) -> Keys:
        """The key names of the task's job (the task id is the job id), in the stack's namespace."""
        (key,) = self.redis.scan_iter(match=f"*:job:{{{task_id}}}")
        return Keys(key.removesuffix(f":job:{{{task_id}}}"))


@pytest.fixture(scope="module")
def replicas(stack_env: dict[str, str]) -> Iterator[Replicas]:
    url = stack_env["MCP_JOBS_REDIS_URL"].rsplit("/", 1)[0] + f"/{DATABASE}"
    with replica_stack(stack_env, DATABASE, "core-tasks") as (first, second):
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            yield Replicas(first, second, client)
        finally:
            client.close()


def ts_core(node: str, url: str, tool: str, arguments: dict[str, Any], mode: str, second: str = "") -> dict[str, Any]:
    """Run core_tasks.mjs to its end; its JSON line (see the script's header)."""
    args = [node, "core_tasks.mjs", url, tool, json.dumps(arguments), mode, *([second] if second else [])]
    done = subprocess.run(args, cwd=TS_CLIENT_DIR, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    assert out["ok"] and out["error"] is None, out
    return out


def assert_connected(out: dict[str, Any], task_support: str) -> None:
    """The SDK negotiated 2025-11-25, saw the tasks capability and the tool's task support, and
    had the session's standalone stream open before it called."""
    assert out["protocolVersion"] == CORE, out
    assert out["tasksCapability"] == CAPABILITY, out
    assert out["taskSupport"] == task_support, out
    assert out["standalone"], "the SDK opens the session's GET stream after initialize"


def assert_created(out: dict[str, Any]) -> str:
    """The call answered with a CreateTaskResult (a working Task); its task id."""
    created = out["created"]
    assert created is not None and created["taskId"] == out["taskId"], out
    assert created["status"] == "working" and created["ttl"] > 0 and created["pollInterval"] > 0, created
    assert created["createdAt"] == created["lastUpdatedAt"], created
    return str(created["taskId"])


def assert_related(result: dict[str, Any], task_id: str) -> None:
    assert result["_meta"][RELATED_TASK] == {"taskId": task_id}, result


def status_notifications(out: dict[str, Any], task_id: str) -> list[str]:
    assert {n["taskId"] for n in out["notifications"]} <= {task_id}, "only this session's task"
    return [n["status"] for n in out["notifications"]]


async def watching_liveness(replicas: Replicas, run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], set[str]]:
    """What `run` (a `ts_core` call) returns, and every job liveness key seen while it ran."""
    seen: set[str] = set()

    async def watch() -> None:
        while True:
            seen.update(replicas.redis.scan_iter(match="*:job:*:alive"))
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        out = await anyio.to_thread.run_sync(run)
        group.cancel_scope.cancel()
    return out, seen


async def assert_the_job_stopped(replicas: Replicas, task_id: str, alive_seen: set[str]) -> None:
    """The worker ended the job: its final write drops the liveness key, which the worker's
    heartbeat would otherwise renew (every 2 s, for 10 s) until the job's natural end (20 s)."""
    keys = replicas.job_keys(task_id)
    assert keys.alive(task_id) in alive_seen, "the job ran on a worker before it was cancelled"
    with anyio.fail_after(5):
        while replicas.redis.exists(keys.alive(task_id)):
            await anyio.sleep(0.05)
    assert replicas.redis.hget(keys.job(task_id), "state") == "cancelled"
    assert float(replicas.redis.hget(keys.job(task_id), "progress") or 0) < LONG["steps"]


# ---- the TypeScript SDK 1.x (core_tasks.mjs) ----


def test_the_typescript_client_streams_a_task_to_its_result(node: str, replicas: Replicas) -> None:
    out = ts_core(node, replicas.first, "sleep_steps", {"steps": 8, "delay": 0.25}, "stream")
    assert_connected(out, "optional")
    task_id = assert_created(out)
    types = [m["type"] for m in out["messages"]]
    assert types[0] == "taskCreated" and types[-1] == "result", types
    assert set(types[1:-1]) == {"taskStatus"}, types
    *working, last = out["statuses"]
    assert working and set(working) == {"working"} and last == "completed", out["statuses"]
    assert any("/8]" in m["statusMessage"] for m in out["messages"][1:-2]), "polls show the job's progress"
    assert out["messages"][-2]["ttl"] == TTL, "an ended task keeps the ttl it asked for"
    result = out["result"]
    assert result["isError"] is False and result["structuredContent"] == {"steps": 8, "slept_seconds": 2.0}
    assert_related(result, task_id)
    values = [p["progress"] for p in out["progress"]]
    assert len(values) >= 3, "progress for the call's token, while the task runs"
    assert_strictly_increasing(values)
    assert out["progress"][-1] == {"progress": 8, "total": 8, "message": "step 8/8 done"}
    assert status_notifications(out, task_id)[-1] == "completed", out["notifications"]


@pytest.mark.parametrize(
    ("tool", "arguments", "support", "text"),
    [
        ("failing_job", {}, "required", "failing_job failed on purpose"),
        ("fail_politely", {"reason": "not today"}, "optional", "not today"),
    ],
)
def test_a_job_error_fails_the_task_and_tasks_result_says_why(
    node: str, replicas: Replicas, tool: str, arguments: dict[str, Any], support: str, text: str
) -> None:
    out = ts_core(node, replicas.first, tool, arguments, "stream")
    assert_connected(out, support)
    task_id = assert_created(out)
    assert out["statuses"][-1] == "failed" and out["messages"][-2]["statusMessage"] == text, out
    assert out["result"] is None and "failed" in out["streamError"]["message"], out
    result = out["taskResult"]["result"]
    assert result["isError"] is True and result["content"][0]["text"] == text, out["taskResult"]
    assert_related(result, task_id)
    assert status_notifications(out, task_id)[-1] == "failed", out["notifications"]


def test_list_tasks_shows_the_task(node: str, replicas: Replicas) -> None:
    out = ts_core(node, replicas.first, "sleep_steps", {"steps": 3, "delay": 0.2}, "list")
    task_id = assert_created(out)
    listed = out["listed"]
    assert listed["found"], listed
    assert listed["task"]["taskId"] == task_id and listed["task"]["createdAt"] == out["created"]["createdAt"]
    assert listed["task"]["status"] in {"working", "completed"}, listed
    assert out["statuses"][-1] == "completed" and out["result"]["structuredContent"]["steps"] == 3, out


async def test_cancel_task_answers_cancelled_and_stops_the_job(node: str, replicas: Replicas) -> None:
    run = partial(ts_core, node, replicas.first, "sleep_steps", LONG, "cancel")
    out, alive = await watching_liveness(replicas, run)
    task_id = assert_created(out)
    assert out["cancel"]["taskId"] == task_id and out["cancel"]["status"] == "cancelled", out["cancel"]
    assert out["cancel"]["statusMessage"], "a cancelled Task says so"
    assert out["afterCancel"]["status"] == "cancelled", out["afterCancel"]
    assert out["statuses"][0] == "working" and out["statuses"][-1] == "cancelled", out["statuses"]
    assert "cancelled" in out["streamError"]["message"], out["streamError"]
    assert out["cancelAgain"]["code"] == INVALID_PARAMS, "a task that ended cannot be cancelled again"
    assert out["taskResult"]["result"]["isError"] is True, "a cancelled task has no successful result"
    assert status_notifications(out, task_id)[-1] == "cancelled", out["notifications"]
    await assert_the_job_stopped(replicas, task_id, alive)


def test_a_task_is_answered_through_another_replica_after_its_session_ended(node: str, replicas: Replicas) -> None:
    arguments = {"steps": 10, "delay": 0.2}
    out = ts_core(node, replicas.first, "sleep_steps", arguments, "across-result", replicas.second)
    task_id = assert_created(out)
    other = out["other"]
    assert other["get"]["taskId"] == task_id and other["get"]["status"] == "working", "still running"
    assert other["get"]["createdAt"] == out["created"]["createdAt"], other["get"]
    assert other["listed"]["found"] and other["listed"]["task"]["taskId"] == task_id, other["listed"]
    result = other["result"]["result"]
    assert result["isError"] is False and result["structuredContent"] == {"steps": 10, "slept_seconds": 2.0}
    assert_related(result, task_id)
    assert other["after"]["status"] == "completed" and other["after"]["ttl"] == TTL, other["after"]


async def test_a_task_is_cancelled_through_another_replica_after_its_session_ended(
    node: str, replicas: Replicas
) -> None:
    run = partial(ts_core, node, replicas.first, "sleep_steps", LONG, "across-cancel", replicas.second)
    out, alive = await watching_liveness(replicas, run)
    task_id = assert_created(out)
    other = out["other"]
    assert other["listed"]["found"], other["listed"]
    assert other["cancel"]["result"]["status"] == "cancelled", other["cancel"]
    assert other["afterCancel"]["status"] == "cancelled", other["afterCancel"]
    assert other["cancelAgain"]["error"]["code"] == INVALID_PARAMS, other["cancelAgain"]
    ended = other["resultAfterCancel"]["result"]
    assert ended["isError"] is True and "cancelled" in ended["content"][0]["text"], ended
    await assert_the_job_stopped(replicas, task_id, alive)


# ---- the wire, raw ----


async def initialize(http: httpx.AsyncClient, url: str, version: str) -> tuple[dict[str, str], dict[str, Any]]:
    """A session of protocol `version`: the headers its requests carry, and the initialize result."""
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    response = await http.post(url, json=init, headers=HEADERS)
    response.raise_for_status()
    lines = [line[5:] for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    answer = json.loads(lines[0]) if lines else response.json()
    headers = HEADERS | {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": version}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers, answer["result"]


async def request(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """One request on a session: its JSON-RPC response (the last message of its stream)."""
    body = {"jsonrpc": "2.0", "id": uuid.uuid4().int % 10**9, "method": method, "params": params}
    messages = await call_messages(http, url, headers, body)
    return next(m for m in messages if m.get("id") == body["id"])


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as client:
        yield client


async def test_only_a_2025_11_25_session_is_offered_tasks(http: httpx.AsyncClient, replicas: Replicas) -> None:
    headers, result = await initialize(http, replicas.first, CORE)
    assert result["protocolVersion"] == CORE and result["capabilities"]["tasks"] == CAPABILITY, result
    tools = (await request(http, replicas.first, headers, "tools/list", {}))["result"]["tools"]
    support = {tool["name"]: (tool.get("execution") or {}).get("taskSupport") for tool in tools}
    assert support["sleep_steps"] == "optional" and support["failing_job"] == "required", support
    assert support["greet"] is None, "a tool that never runs as a task says nothing"
    older, result = await initialize(http, replicas.first, "2025-06-18")
    assert result["protocolVersion"] == "2025-06-18" and "tasks" not in result["capabilities"], result
    tools = (await request(http, replicas.first, older, "tools/list", {}))["result"]["tools"]
    assert not [tool["name"] for tool in tools if "execution" in tool], "no task support before 2025-11-25"


async def test_a_call_without_params_task_streams_as_before(http: httpx.AsyncClient, replicas: Replicas) -> None:
    headers = await open_session(http, replicas.first)
    messages = await call_messages(
        http, replicas.first, headers, tool_call(7, "sleep_steps", {"steps": 3, "delay": 0.25}, token="plain")
    )
    final = messages[-1]
    assert final["id"] == 7 and "task" not in final["result"], final
    assert final["result"]["structuredContent"] == {"steps": 3, "slept_seconds": 0.75}, final
    progress = progress_of(messages)
    assert {p["progressToken"] for p in progress} == {"plain"}, "progress on the call's own stream"
    assert_strictly_increasing([p["progress"] for p in progress])
    assert progress[-1]["progress"] == 3


async def test_tasks_errors_of_2025_11_25(http: httpx.AsyncClient, replicas: Replicas) -> None:
    here, there = await open_session(http, replicas.first), await open_session(http, replicas.second)
    call = {"name": "sleep_steps", "arguments": {"steps": 1, "delay": 0.25}, "task": {"ttl": TTL}}
    task_id = (await request(http, replicas.first, here, "tools/call", call))["result"]["task"]["taskId"]
    done = await request(http, replicas.second, there, "tasks/result", {"taskId": task_id})
    assert done["result"]["structuredContent"] == {"steps": 1, "slept_seconds": 0.25}, done
    ended = await request(http, replicas.first, here, "tasks/cancel", {"taskId": task_id})
    assert ended["error"]["code"] == INVALID_PARAMS, ("a task that ended", ended)
    unknown = str(uuid.uuid4())
    for method in ("tasks/get", "tasks/result", "tasks/cancel"):
        answer = await request(http, replicas.first, here, method, {"taskId": unknown})
        assert answer["error"]["code"] == INVALID_PARAMS, (method, answer)


async def test_on_2026_07_28_tasks_list_and_tasks_result_are_unknown(
    http: httpx.AsyncClient, replicas: Replicas
) -> None:
    for method in ("tasks/list", "tasks/result"):
        answer = await modern_request(http, replicas.first, method, {"taskId": str(uuid.uuid4())})
        assert answer["error"]["code"] == METHOD_NOT_FOUND, (method, answer)
