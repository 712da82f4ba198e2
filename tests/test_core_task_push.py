"""2025-11-25 tasks on the wire, across replicas: what the session's standalone stream carries for a
task (progress on the call's token, `notifications/tasks/status`), callers kept apart, the ttl a
task asks for, `tasks/list` pages, and the outcomes of failing jobs.

Raw HTTP sessions (`rawclient.open_session`), so the wire itself is what is checked; a worker and
two authenticated server replicas on a Redis database of this module's own. (The TypeScript SDK
1.x client's own task API is driven in `test_core_tasks.py`.)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from mcp_jobs.server.auth import hash_token
from tests.support.helpers import Arrivals, assert_strictly_increasing
from tests.support.processes import replica_stack
from tests.support.rawclient import HEADERS, call_messages, modern_request

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

ALICE, BOB = "alice-core-tasks-" + "a" * 20, "bob-core-tasks-" + "b" * 20
TOKENS = [
    {"sha256": hash_token(ALICE), "caller": "alice", "scopes": []},
    {"sha256": hash_token(BOB), "caller": "bob", "scopes": []},
]


@pytest.fixture(scope="module")
def replicas(stack_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    with replica_stack(stack_env | {"MCP_JOBS_AUTH_TOKENS": json.dumps(TOKENS)}, 9, "core-push") as (first, second):
        yield first, second


class Session:
    """A raw 2025-11-25 session of one caller on one replica."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        self.http, self.url = http, url
        self.headers = HEADERS | {"Authorization": f"Bearer {token}"}
        self._ids = iter(range(1, 10**6))

    async def open(self) -> Session:
        init = {
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
        }  # fmt: skip
        response = await self.http.post(self.url, json=init, headers=self.headers)
        response.raise_for_status()
        self.initialized = next(json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:"))
        self.headers |= {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await self.http.post(
            self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self.headers
        )
        return self

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        messages = await call_messages(self.http, self.url, self.headers, body)
        return next(m for m in messages if "result" in m or "error" in m)

    async def create(self, tool: str, arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
        answer = await self.request("tools/call", {"name": tool, "arguments": arguments, "task": {}, **extra})
        assert "result" in answer, answer
        return dict(answer["result"]["task"])

    @asynccontextmanager
    async def standalone(self) -> AsyncIterator[Received]:
        """The session's GET stream, its messages collected while the block runs."""
        received = Received()
        opened = anyio.Event()

        async def read() -> None:
            async with self.http.stream("GET", self.url, headers=self.headers) as stream:
                opened.set()
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        received.add(json.loads(line[5:]))

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            with anyio.fail_after(10):
                await opened.wait()
            yield received
            group.cancel_scope.cancel()


class Received(Arrivals):
    """A session stream's messages: progress and task statuses."""

    def progress(self) -> list[dict[str, Any]]:
        return self.params_of("notifications/progress")

    def statuses(self, task_id: str) -> list[str]:
        return [p["status"] for p in self.params_of("notifications/tasks/status") if p["taskId"] == task_id]


@asynccontextmanager
async def sessions(*targets: tuple[str, str]) -> AsyncIterator[list[Session]]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as http:
        yield [await Session(http, url, token).open() for url, token in targets]


async def test_a_tasks_progress_and_a_cancel_from_another_replica_reach_the_sessions_stream(
    replicas: tuple[str, str],
) -> None:
    first, second = replicas
    async with sessions((first, ALICE), (second, ALICE)) as (here, there):
        assert here.initialized["result"]["capabilities"]["tasks"] == {
            "list": {}, "cancel": {}, "requests": {"tools": {"call": {}}},
        }  # fmt: skip
        async with here.standalone() as seen:
            token = f"tok-{uuid.uuid4().hex[:6]}"
            arguments = {"steps": 400, "delay": 0.05}
            task = await here.create("sleep_steps", arguments, _meta={"progressToken": token})
            task_id = task["taskId"]
            await seen.until(lambda: len(seen.progress()) >= 3)
            assert {p["progressToken"] for p in seen.progress()} == {token}, "the call's token, still valid"
            assert_strictly_increasing([p["progress"] for p in seen.progress()])
            cancelled = await there.request("tasks/cancel", {"taskId": task_id})
            assert cancelled["result"]["status"] == "cancelled", "moved to cancelled before the answer"
            await seen.until(lambda: "cancelled" in seen.statuses(task_id))
        got = await here.request("tasks/get", {"taskId": task_id})
        assert got["result"]["status"] == "cancelled"
        again = await there.request("tasks/cancel", {"taskId": task_id})
        assert again["error"]["code"] == -32602, "a task that ended cannot be cancelled"


async def test_one_caller_never_reaches_anothers_task(replicas: tuple[str, str]) -> None:
    first, second = replicas
    async with sessions((first, ALICE), (second, ALICE), (second, BOB)) as (alice, alice_there, bob):
        task_id = (await alice.create("sleep_steps", {"steps": 2, "delay": 0.1}))["taskId"]
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            refused = await bob.request(method, {"taskId": task_id})
            assert refused["error"]["code"] == -32602, (method, refused)
            assert "not found" in refused["error"]["message"].lower()
        listed = await bob.request("tasks/list", {})
        assert task_id not in {t["taskId"] for t in listed["result"]["tasks"]}
        result = await alice_there.request("tasks/result", {"taskId": task_id})
        assert result["result"]["structuredContent"]["steps"] == 2
        assert result["result"]["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
        listed = await alice_there.request("tasks/list", {})
        assert task_id in {t["taskId"] for t in listed["result"]["tasks"]}


async def test_tasks_list_pages_through_every_task_once(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    async with sessions((first, ALICE)) as (alice,):
        created = {
            (await alice.create("echo", {"text": "x", "number": n, "item": {"name": "i"}}))["taskId"] for n in range(53)
        }
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            listing = await alice.request("tasks/list", {"cursor": cursor} if cursor else {})
            page = listing["result"]
            seen += [t["taskId"] for t in page["tasks"]]
            pages += 1
            cursor = page.get("nextCursor")
            if cursor is None:
                break
        assert pages >= 2, "53 tasks are more than one page"
        assert len(seen) == len(set(seen)), "no task listed twice"
        assert created <= set(seen)
        bad = await alice.request("tasks/list", {"cursor": "not-a-cursor"})
        assert bad["error"]["code"] == -32602


async def test_a_shorter_ttl_is_honoured_once_the_job_has_ended(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    async with sessions((first, ALICE)) as (alice,):
        asked = await alice.request(
            "tools/call", {"name": "sleep_steps", "arguments": {"steps": 1, "delay": 0.05}, "task": {"ttl": 2000}}
        )
        task = asked["result"]["task"]
        task_id, created = task["taskId"], time.time()
        assert task["ttl"] > 2000, "while the job runs the record is kept (a job is never left unreachable)"
        done = await alice.request("tasks/result", {"taskId": task_id})
        assert done["result"]["isError"] is False
        got = await alice.request("tasks/get", {"taskId": task_id})
        if "result" in got:  # read within the ttl: it says the ttl it was given
            assert got["result"]["ttl"] == 2000
        with anyio.fail_after(15):
            while "result" in (got := await alice.request("tasks/get", {"taskId": task_id})):
                await anyio.sleep(0.2)
        assert got["error"]["code"] == -32602 and "expired" in got["error"]["message"]
        assert time.time() - created >= 2.0 - 0.1
        listed = await alice.request("tasks/list", {})
        assert task_id not in {t["taskId"] for t in listed["result"]["tasks"]}


async def test_failing_jobs_end_their_tasks_as_that_revision_says(replicas: tuple[str, str]) -> None:
    first, second = replicas
    async with sessions((first, ALICE), (second, ALICE)) as (here, there):
        tool_error = (await here.create("failing_job", {}))["taskId"]
        protocol_error = (await here.create("protocol_error_job", {}))["taskId"]
        failed = await there.request("tasks/result", {"taskId": tool_error})
        assert failed["result"]["isError"] is True and "failed on purpose" in failed["result"]["content"][0]["text"]
        assert (await there.request("tasks/get", {"taskId": tool_error}))["result"]["status"] == "failed"
        raised = await there.request("tasks/result", {"taskId": protocol_error})
        assert raised["error"]["code"] == -32603 and "on purpose" in raised["error"]["message"]
        assert (await here.request("tasks/get", {"taskId": protocol_error}))["result"]["status"] == "failed"
        # `required` needs `params.task` on this revision, `forbidden` refuses it: -32601 both.
        plain = await here.request("tools/call", {"name": "failing_job", "arguments": {}})
        assert plain["error"]["code"] == -32601
        forbidden = await here.request("tools/call", {"name": "greet", "arguments": {"name": "x"}, "task": {}})
        assert forbidden["error"]["code"] == -32601
        tools = (await here.request("tools/list", {}))["result"]["tools"]
        support = {tool["name"]: (tool.get("execution") or {}).get("taskSupport") for tool in tools}
        assert support["failing_job"] == "required" and support["sleep_steps"] == "optional"
        assert support["greet"] is None, "forbidden is the default: left out"


async def test_on_2026_07_28_tasks_list_and_tasks_result_stay_unknown(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ALICE}"}, timeout=30) as http:
        for method in ("tasks/list", "tasks/result"):
            answer = await modern_request(http, first, method, {"taskId": str(uuid.uuid4())})
            assert answer["error"]["code"] == -32601, (method, answer)
