"""`notifications/tasks` on 2026-07-28 listen streams, end to end: a task created through one
replica, its stream held by the other, fed through Redis. Raw HTTP, so the frames themselves are
checked: the acknowledgement's `taskIds`, the subscription id on every frame, the statuses in
order, the result inline, and no progress.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from tests.support.helpers import Arrivals
from tests.support.processes import replica_stack
from tests.support.rawclient import HEADERS, MODERN, TASKS, modern_request

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


@pytest.fixture(scope="module")
def replicas(stack_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    with replica_stack(stack_env | {"MCP_JOBS_PROGRESS_RATE": "20"}, 7, "task-listen") as (first, second):
        yield first, second


class Frames(Arrivals):
    """A listen stream's frames."""

    def tasks(self) -> list[dict[str, Any]]:
        return self.params_of("notifications/tasks")


@asynccontextmanager
async def listen(http: httpx.AsyncClient, url: str, task_ids: list[str]) -> AsyncIterator[Frames]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    body = {
        "jsonrpc": "2.0", "id": 77, "method": "subscriptions/listen",
        "params": {"notifications": {"taskIds": task_ids}, "_meta": meta},
    }  # fmt: skip
    headers = HEADERS | {"MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"}
    frames = Frames()

    async def read() -> None:
        async with http.stream("POST", url, json=body, headers=headers) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:") and line[5:].strip():
                    frames.add(json.loads(line[5:]))

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        yield frames
        group.cancel_scope.cancel()


async def create(http: httpx.AsyncClient, url: str, steps: int, delay: float) -> str:
    answer = await modern_request(
        http, url, "tools/call", {"name": "sleep_steps", "arguments": {"steps": steps, "delay": delay}}
    )
    assert answer["result"]["resultType"] == "task", answer
    return str(answer["result"]["taskId"])


async def test_a_tasks_changes_are_pushed_to_a_stream_on_the_other_replica(replicas: tuple[str, str]) -> None:
    first, second = replicas
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as http:
        task_id = await create(http, first, steps=6, delay=0.3)
        unknown = str(uuid.uuid4())
        async with listen(http, second, [task_id, unknown]) as frames:
            await frames.until(lambda: any(t["status"] == "completed" for t in frames.tasks()))
        ack = frames.messages[0]
        assert ack["method"] == "notifications/subscriptions/acknowledged", frames.messages
        assert ack["params"]["notifications"]["taskIds"] == [task_id], "only the caller's own, existing task"
        assert all(m["params"]["_meta"][SUBSCRIPTION_ID] == 77 for m in frames.messages if "method" in m)
        assert not [
            m for m in frames.messages if m.get("method") in ("notifications/progress", "notifications/message")
        ]
        pushed = frames.tasks()
        assert {t["taskId"] for t in pushed} == {task_id}
        statuses = [t["status"] for t in pushed]
        assert statuses[-1] == "completed" and set(statuses[:-1]) == {"working"}, statuses
        assert len({t["statusMessage"] for t in pushed if t["status"] == "working"}) >= 2, "the steps, as they went"
        assert pushed[-1]["result"]["structuredContent"] == {"steps": 6, "slept_seconds": pytest.approx(1.8)}
        got = await modern_request(http, first, "tasks/get", {"taskId": task_id})
        as_read = {key: value for key, value in got["result"].items() if key not in ("_meta", "resultType")}
        assert as_read == {key: value for key, value in pushed[-1].items() if key != "_meta"}, "what tasks/get gives"


async def test_a_cancel_through_one_replica_is_pushed_by_the_other(replicas: tuple[str, str]) -> None:
    first, second = replicas
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as http:
        task_id = await create(http, first, steps=300, delay=0.1)
        async with listen(http, second, [task_id]) as frames:
            await frames.until(lambda: any(t["status"] == "working" for t in frames.tasks()))
            cancel = await modern_request(http, first, "tasks/cancel", {"taskId": task_id})
            assert "result" in cancel, cancel
            await frames.until(lambda: frames.tasks()[-1]["status"] == "cancelled")


async def test_task_notifications_need_the_extension(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    async with httpx.AsyncClient(timeout=30) as http:
        task_id = await create(http, first, steps=1, delay=0.05)
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        }
        body = {
            "jsonrpc": "2.0", "id": 5, "method": "subscriptions/listen",
            "params": {"notifications": {"taskIds": [task_id]}, "_meta": meta},
        }  # fmt: skip
        headers = HEADERS | {"MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"}
        response = await http.post(first, json=body, headers=headers)
        text = response.text
        answer = (
            next(json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:"))
            if "data:" in text
            else response.json()
        )
        assert answer["error"]["code"] == -32021, answer
        assert TASKS in answer["error"]["data"]["requiredCapabilities"]["extensions"]
