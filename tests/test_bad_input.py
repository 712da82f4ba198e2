"""Bad input never reaches a worker and never takes the server down.

Property-based: hypothesis generates tool arguments and raw request bodies and sends them to the
real server; every one gets a clear answer, rejected arguments queue nothing, and the server keeps
serving. Plus the documented size limits for arguments, results and request bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp import Client

from tests.conftest import Connect, Stack
from tests.support.helpers import job_keys

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
NAMES = st.sampled_from(["text", "number", "item", "maybe", "query", "levels", "folder", "max_lines", "texts", "top"])
ARGUMENTS = st.dictionaries(NAMES | st.text(max_size=10), JSON, max_size=5)
TEXT = st.text(min_size=1, max_size=30)
VALID = {
    "echo": st.fixed_dictionaries(
        {"text": st.text(max_size=30), "number": st.integers(), "item": st.fixed_dictionaries({"name": TEXT})}
    ),
    "search_logs": st.fixed_dictionaries(
        {"query": TEXT}, optional={"levels": st.lists(st.integers(1, 5), min_size=1, max_size=3)}
    ),
    "process_documents": st.fixed_dictionaries({"texts": st.lists(st.text(max_size=40), min_size=1, max_size=5)}),
}


@st.composite
def tool_calls(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    """A tool and arguments: arbitrary ones, or valid ones with some arbitrary fields mixed in."""
    tool = draw(st.sampled_from(sorted(VALID)))
    if draw(st.booleans()):
        return tool, draw(ARGUMENTS)
    return tool, draw(VALID[tool]) | draw(st.dictionaries(NAMES, JSON, max_size=2))


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.fixture(scope="module")
def client(stack: Stack, portal: BlockingPortal) -> Iterator[Client]:
    with portal.wrap_async_context_manager(Client(stack.http_url, mode="legacy")) as client:
        yield client


@FUZZ
@given(call=tool_calls())
def test_fuzzed_arguments_get_clear_answers_and_rejected_ones_queue_nothing(
    stack: Stack, portal: BlockingPortal, client: Client, call: tuple[str, dict[str, object]]
) -> None:
    tool, arguments = call
    redis = stack.redis()
    before = len(job_keys(redis, stack.keys))
    result = portal.call(client.call_tool, tool, arguments)
    created = len(job_keys(redis, stack.keys)) - before
    if result.is_error:
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith(f"Error executing tool {tool}: ") and len(text) > 40, text
        if "validation error" in text:
            event("rejected before queueing")
            assert created == 0, "rejected arguments must not create or queue a job"
        else:
            event("failed in the job")
    else:
        event("succeeded")
        assert created == 1 and result.structured_content is not None


BODIES = (
    st.binary(max_size=200)
    | JSON.map(lambda value: json.dumps(value).encode())
    | st.fixed_dictionaries(
        {
            "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
            "method": st.sampled_from(["tools/call", "tools/list", "x"]) | st.text(max_size=10),
        },
        optional={"id": JSON, "params": JSON},
    ).map(lambda value: json.dumps(value).encode())
)


@FUZZ
@given(body=BODIES, session=st.booleans())
def test_malformed_requests_get_4xx_or_a_jsonrpc_error(stack: Stack, body: bytes, session: bool) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if session:
        headers |= {"mcp-session-id": "not-a-session", "mcp-protocol-version": "2025-11-25"}
    with httpx.Client(timeout=10) as http:
        response = http.post(stack.http_url, content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json"):
            assert "error" in response.json() or "result" in response.json()
        assert http.get(stack.http_url.removesuffix("/mcp") + "/healthz").status_code == 200


@pytest.mark.anyio
async def test_arguments_and_results_over_the_limits_get_clear_errors(connect: Connect, stack: Stack) -> None:
    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    async with connect() as client:
        too_big = await client.call_tool("echo", {"text": "x" * 1_100_000, "number": 1, "item": {"name": "n"}})
        assert job_keys(redis, stack.keys) == before, "oversized arguments queue nothing"
        huge = await client.call_tool("big_result", {"size": 4_100_000})
        fine = await client.call_tool("big_result", {"size": 1000})
    assert too_big.is_error and "over the 1000000-byte limit" in too_big.content[0].text  # type: ignore[union-attr]
    assert huge.is_error and "over the 4000000-byte result limit" in huge.content[0].text  # type: ignore[union-attr]
    assert fine.structured_content == {"result": "x" * 1000}


def test_request_bodies_over_the_http_limit_are_refused(stack: Stack) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as http:
        response = http.post(stack.http_url, content=b"[" + b"1," * 3_000_000 + b"1]", headers=headers)
        assert response.status_code == 413
        assert http.get(stack.http_url.removesuffix("/mcp") + "/healthz").status_code == 200
