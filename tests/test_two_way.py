"""Two-way jobs end to end: a job asks its caller and waits for the answer on its worker.

A stack of this module's own (the session's Redis): one worker, and two server replicas that
share `MCP_JOBS_REQUEST_STATE_KEYS`, so a 2026-07-28 call's answers can go to either. The input
timeout is short, so a question left unanswered ends its job quickly. The clients are real: the
Python SDK's `Client` in both eras over HTTP and over stdio, and raw 2026-07-28 requests where
the wire itself is what is checked (sealed state, replicas, replays).
"""

from __future__ import annotations

import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
import redis
from mcp import Client, StdioServerParameters
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ListRootsResult,
    LoggingMessageNotificationParams,
    Root,
    TextContent,
)
from pydantic import FileUrl

from mcp_jobs._events import Keys
from mcp_jobs.server.dev_redis import free_port
from tests.support.processes import REPO, ManagedProcess, start_http_server, start_worker, wait_until
from tests.support.rawclient import (
    ELICITATION,
    accept,
    modern_request,
    question_of,
    round_trip,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

INPUT_TIMEOUT = 4.0


@dataclass
class TwoWayStack:
    env: dict[str, str]
    keys: Keys
    urls: tuple[str, str]
    redis_url: str

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def runs(self, tag: str) -> int:
        return int(self.redis().get(f"{self.keys.namespace}:test:runs:{tag}") or 0)

    def snapshot(self, job_id: str) -> dict[str, str]:
        return dict(self.redis().hgetall(self.keys.job(job_id)))

    def waiting_job(self) -> str:
        """The one job of this stack that waits for an answer now."""
        found = [
            job_id
            for key in self.redis().scan_iter(self.keys.job("*"))
            if (job_id := self.keys.job_id_of(key)) and self.redis().hget(key, "state") == "input_required"
        ]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module")
def two_way(stack_env: dict[str, str]) -> Iterator[TwoWayStack]:
    env = stack_env | {
        # A database of its own: the broker's queues are not namespaced, and the session's workers
        # must not take these jobs.
        "MCP_JOBS_REDIS_URL": stack_env["MCP_JOBS_REDIS_URL"].rsplit("/", 1)[0] + "/4",
        "MCP_JOBS_NAMESPACE": f"two-way-{uuid.uuid4().hex[:8]}",
        "MCP_JOBS_INPUT_TIMEOUT": str(INPUT_TIMEOUT),
        "MCP_JOBS_REQUEST_STATE_KEYS": secrets.token_hex(32),
    }
    worker = start_worker(env, f"two-way-{uuid.uuid4().hex[:6]}", concurrency=8, pool="threads")
    ports = free_port(), free_port()
    servers: list[ManagedProcess] = []
    try:
        servers = [start_http_server(env, port) for port in ports]
        urls = (f"http://127.0.0.1:{ports[0]}/mcp", f"http://127.0.0.1:{ports[1]}/mcp")
        yield TwoWayStack(env, Keys(env["MCP_JOBS_NAMESPACE"]), urls, env["MCP_JOBS_REDIS_URL"])
    finally:
        for server in servers:
            server.stop()
        worker.stop()


def answering(go: bool = True, colour: str = "teal") -> Any:
    """An elicitation callback that answers the `interview` job's two questions."""

    async def answer(_: Any, params: ElicitRequestParams) -> ElicitResult:
        if "Go ahead" in params.message:
            return ElicitResult(action="accept", content={"ok": go})
        return ElicitResult(action="accept", content={"colour": colour})

    return answer


@asynccontextmanager
async def sdk_client(stack: TwoWayStack, transport: str, **options: Any) -> AsyncIterator[Client]:
    if transport == "stdio":
        target: Any = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mcp_jobs.server.cli", "serve", "--transport", "stdio"],
            env=stack.env,
            cwd=str(REPO),
        )
        mode = "auto"
    else:
        target, mode = stack.urls[0], transport.removeprefix("http-")
    async with Client(target, mode=mode, **options) as client:
        yield client


@pytest.mark.parametrize("transport", ["http-auto", "http-legacy", "stdio"])
async def test_a_job_asks_its_caller_and_goes_on_with_the_answers(two_way: TwoWayStack, transport: str) -> None:
    tag = f"sdk-{transport}-{uuid.uuid4().hex[:6]}"
    steps: list[tuple[float, str | None]] = []
    logs: list[LoggingMessageNotificationParams] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append((progress, message))

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with sdk_client(two_way, transport, elicitation_callback=answering(), logging_callback=on_log) as client:
        result = await client.call_tool("interview", {"tag": tag}, progress_callback=on_progress)
    assert not result.is_error, result.content
    assert result.structured_content == {"runs": 1, "colour": "teal"}
    assert two_way.runs(tag) == 1, "the job ran more than once"
    # (The SDK client's 2026-07-28 retries carry no progress token of their own, so it hears the
    # first round's progress; test_progress_goes_on_with_each_rounds_own_token covers the wire.)
    assert "gathered the data" in [message for _, message in steps], steps
    if transport == "http-legacy":  # 2025-11-25 sends every level until the session sets one
        assert any(log.data == f"{tag}: gathering" for log in logs), logs


@pytest.mark.parametrize("transport", ["http-auto", "http-legacy", "stdio"])
async def test_the_callers_model_and_roots_answer_with_a_question_in_one_round(
    two_way: TwoWayStack, transport: str
) -> None:
    async def sample(_: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        prompt = params.messages[0].content
        assert isinstance(prompt, TextContent) and prompt.text == "Generate a greeting"
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="Howdy"), model="test")

    async def roots(_: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=FileUrl("file:///srv/project"))])

    async def name(_: Any, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={"name": "Ada"})

    options = {"elicitation_callback": name, "sampling_callback": sample, "list_roots_callback": roots}
    async with sdk_client(two_way, transport, **options) as client:
        result = await client.call_tool("test_input_required_result_multiple_inputs", {})
    assert not result.is_error, result.content
    assert result.content[0].text == "Howdy Ada (roots: file:///srv/project)"  # type: ignore[union-attr]


@pytest.mark.parametrize("transport", ["http-auto", "http-legacy"])
async def test_a_declined_question_ends_the_call_with_the_jobs_error(two_way: TwoWayStack, transport: str) -> None:
    async with sdk_client(two_way, transport, elicitation_callback=answering(go=False)) as client:
        result = await client.call_tool("interview", {"tag": f"no-{uuid.uuid4().hex[:6]}"})
    assert result.is_error
    assert "stopped: the user said no" in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("transport", ["http-auto", "http-legacy"])
async def test_a_question_the_client_cannot_answer_is_never_sent(two_way: TwoWayStack, transport: str) -> None:
    async with sdk_client(two_way, transport) as client:  # no elicitation callback: not declared
        result = await client.call_tool("interview", {"tag": f"mute-{uuid.uuid4().hex[:6]}"})
    assert result.is_error
    assert "cannot answer elicitation requests" in result.content[0].text  # type: ignore[union-attr]


async def test_a_multi_round_call_runs_its_job_once_and_any_replica_takes_the_answers(two_way: TwoWayStack) -> None:
    tag = f"replicas-{uuid.uuid4().hex[:6]}"
    first, second = two_way.urls
    async with httpx.AsyncClient(timeout=30) as http:
        key, state = question_of(await round_trip(http, first, tag))
        assert two_way.runs(tag) == 1
        job_id = two_way.waiting_job()
        snapshot = two_way.snapshot(job_id)
        assert snapshot["progress"] == "1.0", "the work before the question is in the snapshot"
        assert snapshot["message"] == "waiting for an answer: Go ahead?"
        # Round 2 goes to the other replica, round 3 back to the first.
        key, state = question_of(await round_trip(http, second, tag, state=state, answers={key: accept(ok=True)}))
        done = await round_trip(http, first, tag, state=state, answers={key: accept(colour="plum")})
    assert done["result"]["structuredContent"] == {"runs": 1, "colour": "plum"}, done
    assert two_way.runs(tag) == 1, "the job ran more than once"


async def test_progress_goes_on_with_each_rounds_own_token(two_way: TwoWayStack) -> None:
    tag = f"tokens-{uuid.uuid4().hex[:6]}"
    url = two_way.urls[0]
    rounds: list[list[dict[str, Any]]] = [[], [], []]
    async with httpx.AsyncClient(timeout=30) as http:
        key, state = question_of(await round_trip(http, url, tag, progress=rounds[0]))
        answer = {key: accept(ok=True)}
        key, state = question_of(await round_trip(http, url, tag, state=state, answers=answer, progress=rounds[1]))
        answer = {key: accept(colour="jade")}
        done = await round_trip(http, url, tag, state=state, answers=answer, progress=rounds[2])
    assert done["result"]["structuredContent"]["colour"] == "jade"
    # Each round's stream carries the job's progress from where the answer left it, on its own
    # token (the gate may coalesce the steps of one instant; the last round's job may be done
    # before that call attaches, when its result is all there is to send).
    values = [[p["progress"] for p in notes] for notes in rounds]
    assert values[0][-1] == 1.0 and values[1][-1] == 2.0, values
    assert set(values[0]) <= {0.0, 1.0} and set(values[1]) <= {1.0, 2.0} and set(values[2]) <= {2.0, 3.0}, values
    assert rounds[0][-1]["message"] == "gathered the data" and rounds[1][-1]["message"] != "done", rounds


async def test_missing_or_malformed_answers_are_asked_for_again(two_way: TwoWayStack) -> None:
    tag = f"again-{uuid.uuid4().hex[:6]}"
    url = two_way.urls[0]
    async with httpx.AsyncClient(timeout=30) as http:
        key, state = question_of(await round_trip(http, url, tag))
        for answers in ({}, {"other": accept(ok=True)}, {key: accept(ok="not a boolean")}):
            again, state = question_of(await round_trip(http, url, tag, state=state, answers=answers))
            assert again == key
        key, state = question_of(await round_trip(http, url, tag, state=state, answers={key: accept(ok=True)}))
        done = await round_trip(http, url, tag, state=state, answers={key: accept(colour="red")})
    assert done["result"]["structuredContent"]["colour"] == "red"


async def test_a_tampered_or_replayed_state_is_refused_and_the_job_is_unaffected(two_way: TwoWayStack) -> None:
    tag = f"tamper-{uuid.uuid4().hex[:6]}"
    url = two_way.urls[0]
    async with httpx.AsyncClient(timeout=30) as http:
        key, state = question_of(await round_trip(http, url, tag))
        job_id = two_way.waiting_job()
        tampered = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
        refused = await round_trip(http, url, tag, state=tampered, answers={key: accept(ok=True)})
        assert refused["error"]["code"] == -32602, refused
        assert two_way.snapshot(job_id)["state"] == "input_required", "a refused state touched the job"
        # A call with other arguments cannot carry it either (it is bound to the tool and its arguments).
        foreign = await round_trip(http, url, "someone-else", state=state, answers={key: accept(ok=True)})
        assert foreign["error"]["code"] == -32602, foreign
        next_key, next_state = question_of(
            await round_trip(http, url, tag, state=state, answers={key: accept(ok=True)})
        )
        replayed = await round_trip(http, url, tag, state=state, answers={key: accept(ok=False)})
        assert replayed["error"]["code"] == -32602, "a state was accepted twice"
        done = await round_trip(http, url, tag, state=next_state, answers={next_key: accept(colour="gold")})
    assert done["result"]["structuredContent"] == {"runs": 1, "colour": "gold"}


async def test_an_unanswered_question_ends_its_job_clearly(two_way: TwoWayStack) -> None:
    tag = f"silent-{uuid.uuid4().hex[:6]}"
    url = two_way.urls[0]
    async with httpx.AsyncClient(timeout=30) as http:
        key, state = question_of(await round_trip(http, url, tag))
        job_id = two_way.waiting_job()
        wait_until(lambda: two_way.snapshot(job_id).get("state") == "failed", INPUT_TIMEOUT + 10, "the input timeout")
        snapshot = two_way.snapshot(job_id)
        assert snapshot["error_type"] == "InputTimeout"
        assert f"within {INPUT_TIMEOUT:g} s" in snapshot["error"]
        late = await round_trip(http, url, tag, state=state, answers={key: accept(ok=True)})
    assert late["error"]["code"] == -32602, "an answer after the timeout was taken"


async def test_a_job_waiting_for_an_answer_is_cancelled_within_a_second(two_way: TwoWayStack) -> None:
    asked = anyio.Event()

    async def never_answer(_: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with sdk_client(two_way, "http-legacy", elicitation_callback=never_answer) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "interview", {"tag": f"cancel-{uuid.uuid4().hex[:6]}"})
            with anyio.fail_after(30):
                await asked.wait()
            job_id = two_way.waiting_job()
            assert two_way.redis().exists(two_way.keys.alive(job_id)), "a waiting job keeps its heartbeat"
            group.cancel_scope.cancel()
        cancelled_at = time.monotonic()
    wait_until(lambda: two_way.snapshot(job_id).get("state") == "cancelled", 10, "the job to be cancelled")
    assert time.monotonic() - cancelled_at < 2.5, "the waiting job took too long to stop"


async def test_a_task_waiting_for_an_answer_is_cancelled_within_a_second(two_way: TwoWayStack) -> None:
    url = two_way.urls[0]
    async with httpx.AsyncClient(timeout=30) as http:
        created = await modern_request(
            http, url, "tools/call", {"name": "confirm_delete", "arguments": {"filename": "x"}}, can=ELICITATION
        )
        task_id = created["result"]["taskId"]

        async def status() -> dict[str, Any]:
            return dict((await modern_request(http, url, "tasks/get", {"taskId": task_id}))["result"])

        with anyio.fail_after(30):
            while (task := await status())["status"] != "input_required":
                await anyio.sleep(0.05)
        (key,) = task["inputRequests"]
        assert task["inputRequests"][key]["method"] == "elicitation/create"
        await modern_request(http, url, "tasks/cancel", {"taskId": task_id})
        cancelled_at = time.monotonic()
        wait_until(lambda: two_way.snapshot(task_id).get("state") == "cancelled", 10, "the task's job to stop")
        assert time.monotonic() - cancelled_at < 2.5, "the waiting job took too long to stop"
        assert (await status())["status"] == "cancelled"
