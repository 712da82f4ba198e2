"""Results as resources end to end: a job's big file goes by link and is read back from another
replica; a job's status is a resource only its caller can read; subscriptions push its changes.

A stack of this module's own (its own Redis database on the session's server): one worker and
two server replicas with authentication, so that two callers (alice and bob) are told apart.
The clients are the Python SDK's, in both protocol eras, and raw 2026-07-28 requests where the
wire itself is checked (a `subscriptions/listen` stream).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import BlobResourceContents, ResourceLink, ResourceTemplateReference, TextResourceContents

from mcp_jobs.server.auth import hash_token
from tests.support.processes import replica_stack
from tests.support.rawclient import HEADERS, MODERN, listen_request, modern_request

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(180),
    # resources/subscribe is the 2025-11-25 way, and tested as such.
    pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed"),
]

ALICE, BOB = "alice-resources-" + "a" * 20, "bob-resources-" + "b" * 20
TOKENS = [
    {"sha256": hash_token(ALICE), "caller": "alice", "scopes": []},
    {"sha256": hash_token(BOB), "caller": "bob", "scopes": []},
]
MEGABYTES = 20


@pytest.fixture(scope="module")
def replicas(stack_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Two authenticated server replicas and a worker on a Redis database of this module's own."""
    with replica_stack(
        stack_env | {"MCP_JOBS_AUTH_TOKENS": json.dumps(TOKENS), "MCP_JOBS_PROGRESS_RATE": "50"}, 5, "resources"
    ) as (first, second):
        yield first, second


@asynccontextmanager
async def client_of(url: str, token: str, mode: str = "auto", **options: Any) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300))
    # On 2025-11-25 every answer is an SSE event, which the SDK caps at 1 MiB by default: reading
    # a big file back needs a bigger cap (the README says so).
    transport = streamable_http_client(url, http_client=http, max_sse_event_size=64 * 1024 * 1024)
    async with http, Client(transport, mode=mode, **options) as client:
        yield client


def pattern(size: int) -> bytes:
    """What `make_file` (tests/jobs.py) writes."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_big_file_goes_by_link_and_reads_back_identical_from_another_replica(
    replicas: tuple[str, str], mode: str
) -> None:
    first, second = replicas
    async with client_of(first, ALICE, mode) as alice:
        result = await alice.call_tool("make_file", {"megabytes": MEGABYTES, "name": "big.bin"})
    assert not result.is_error, result.content
    size = len(result.model_dump_json(by_alias=True))
    assert size < 4096, f"the result is {size} bytes: the file went inline"
    (link,) = [block for block in result.content if isinstance(block, ResourceLink)]
    expected = MEGABYTES * 1024 * 1024
    assert (link.name, link.mime_type, link.size) == ("big.bin", "application/octet-stream", expected)
    async with client_of(second, ALICE, mode) as alice_elsewhere:
        read = await alice_elsewhere.read_resource(str(link.uri))
        (content,) = read.contents
        assert isinstance(content, BlobResourceContents)
        data = base64.b64decode(content.blob)
        assert hashlib.sha256(data).digest() == hashlib.sha256(pattern(expected)).digest()
        # The job's own resource says what it made, and its result.
        job_uri = str(link.uri).rsplit("/artifacts/", 1)[0]
        (status_content,) = (await alice_elsewhere.read_resource(job_uri)).contents
    assert isinstance(status_content, TextResourceContents)
    status = json.loads(status_content.text)
    assert status["state"] == "succeeded" and status["tool"] == "make_file"
    assert status["artifacts"] == [json.loads(link.model_dump_json(by_alias=True, exclude_none=True))]


@pytest.mark.parametrize(("mode", "code"), [("auto", -32602), ("legacy", -32002)])
async def test_another_caller_reads_and_subscribes_to_nothing_of_it(
    replicas: tuple[str, str], mode: str, code: int
) -> None:
    first, second = replicas
    async with client_of(first, ALICE) as alice:
        result = await alice.call_tool("make_file", {"megabytes": 0.01, "name": "secret.txt"})
    (link,) = [block for block in result.content if isinstance(block, ResourceLink)]
    job_uri = str(link.uri).rsplit("/artifacts/", 1)[0]
    missing = "mcp-jobs://jobs/" + str(uuid.uuid4())
    async with client_of(second, BOB, mode) as bob:
        for uri in (str(link.uri), job_uri, missing, job_uri + "/artifacts/other.txt"):
            with pytest.raises(MCPError) as refused:
                await bob.read_resource(uri)
            assert refused.value.error.code == code, uri
            assert (refused.value.error.data or {}).get("uri") == uri
        if mode == "legacy":
            with pytest.raises(MCPError) as refused:
                await bob.subscribe_resource(job_uri)
            assert refused.value.error.code == code
        listed = [str(resource.uri) for resource in (await bob.list_resources()).resources]
    assert job_uri not in listed
    async with client_of(second, ALICE, mode) as alice:
        mine = [str(resource.uri) for resource in (await alice.list_resources()).resources]
    assert job_uri in mine and "test://static-text" in mine


async def start_task(http: httpx.AsyncClient, url: str, steps: int, delay: float) -> str:
    call = {"name": "sleep_steps", "arguments": {"steps": steps, "delay": delay}}
    created = await modern_request(http, url, "tools/call", call, token=ALICE)
    return str(created["result"]["taskId"])


async def test_a_2025_subscription_sees_each_change_and_the_end(replicas: tuple[str, str]) -> None:
    first, second = replicas
    send, receive = anyio.create_memory_object_stream[str](100)

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            await send.send(str(message.params.uri))

    async with httpx.AsyncClient(timeout=30) as http:
        task_id = await start_task(http, first, steps=6, delay=0.3)
    uri = f"mcp-jobs://jobs/{task_id}"
    updates, states = [], []
    async with client_of(second, ALICE, "legacy", message_handler=on_message) as alice:
        await alice.subscribe_resource(uri)
        with anyio.fail_after(60):
            while not states or states[-1] != "succeeded":
                updates.append(await receive.receive())  # each update: read what changed
                (content,) = (await alice.read_resource(uri)).contents
                assert isinstance(content, TextResourceContents)
                states.append(json.loads(content.text)["state"])
        await alice.unsubscribe_resource(uri)
    assert set(updates) == {uri}
    assert len(updates) >= 6, f"{len(updates)} updates for 6 steps and the end: {states}"
    assert "running" in states, states


async def test_a_2026_listen_stream_pushes_a_jobs_changes(replicas: tuple[str, str]) -> None:
    first, second = replicas
    async with httpx.AsyncClient(timeout=60) as http:
        task_id = await start_task(http, first, steps=5, delay=0.3)
        uri = f"mcp-jobs://jobs/{task_id}"
        meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
        body = {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "subscriptions/listen",
            "params": {"notifications": {"resourceSubscriptions": [uri]}, "_meta": meta},
        }
        headers = HEADERS | {
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "subscriptions/listen",
            "Authorization": f"Bearer {ALICE}",
        }
        frames: list[dict[str, Any]] = []
        with anyio.fail_after(60):
            async with http.stream("POST", second, json=body, headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        frames.append(json.loads(line[5:]))
                        done = await modern_request(http, first, "tasks/get", {"taskId": task_id}, token=ALICE)
                        if done["result"]["status"] == "completed" and len(frames) > 3:
                            break
        # A foreign caller's stream naming the same job is refused as a read would be.
        refused = await modern_request(
            http, second, "subscriptions/listen", {"notifications": {"resourceSubscriptions": [uri]}}, token=BOB
        )
    assert frames[0]["method"] == "notifications/subscriptions/acknowledged", frames[0]
    updated = [f for f in frames[1:] if f.get("method") == "notifications/resources/updated"]
    assert updated and {f["params"]["uri"] for f in updated} == {uri}, frames
    assert all(f["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 9 for f in updated)
    assert refused["error"]["code"] == -32602 and refused["error"]["data"]["uri"] == uri, refused


async def test_the_templates_arguments_complete_to_the_callers_own_jobs_and_files(replicas: tuple[str, str]) -> None:
    first, second = replicas
    async with client_of(first, ALICE) as alice:
        result = await alice.call_tool("make_file", {"megabytes": 0.01, "name": "notes.txt"})
    (link,) = [block for block in result.content if isinstance(block, ResourceLink)]
    job_id = str(link.uri).split("/")[3]
    job_ref = ResourceTemplateReference(uri="mcp-jobs://jobs/{job_id}")
    file_ref = ResourceTemplateReference(uri="mcp-jobs://jobs/{job_id}/artifacts/{name}")
    async with client_of(second, ALICE) as alice, client_of(second, BOB) as bob:
        mine = await alice.complete(job_ref, {"name": "job_id", "value": job_id[:6]})
        theirs = await bob.complete(job_ref, {"name": "job_id", "value": job_id[:6]})
        files = await alice.complete(file_ref, {"name": "name", "value": "no"}, {"job_id": job_id})
        foreign_files = await bob.complete(file_ref, {"name": "name", "value": ""}, {"job_id": job_id})
    assert job_id in mine.completion.values
    assert job_id not in theirs.completion.values
    assert files.completion.values == ["notes.txt"]
    assert foreign_files.completion.values == []


async def test_a_content_result_over_the_inline_cap_goes_by_link_when_the_job_allows_it(
    replicas: tuple[str, str],
) -> None:
    first, second = replicas
    async with client_of(first, ALICE) as alice:
        result = await alice.call_tool("big_report", {"megabytes": 6})  # over the 4 MB inline cap
    assert not result.is_error, result.content
    summary, link = result.content
    assert isinstance(link, ResourceLink) and link.name == "2-usage.csv" and link.mime_type == "text/csv"
    async with client_of(second, ALICE) as alice:
        (content,) = (await alice.read_resource(str(link.uri))).contents
    assert isinstance(content, TextResourceContents)
    rows = 6 * 1024 * 1024 // 16
    assert len(content.text) == rows * 15 and content.text.startswith("0000000,000000\n")
    assert getattr(summary, "text", None) == f"{rows} rows"


async def test_a_server_wide_event_reaches_the_listen_streams_of_every_replica(replicas: tuple[str, str]) -> None:
    first, second = replicas
    body, headers = listen_request(11, {"toolsListChanged": True}, token=BOB)
    frames: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=60) as http:
        with anyio.fail_after(60):
            async with http.stream("POST", second, json=body, headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if not (line.startswith("data:") and line[5:].strip()):
                        continue
                    frames.append(json.loads(line[5:]))
                    if len(frames) == 1:  # acknowledged: now a job on the other replica announces a change
                        call = {"name": "test_trigger_tool_change", "arguments": {}}
                        done = await modern_request(http, first, "tools/call", call, token=ALICE, tasks=False)
                        assert done["result"]["structuredContent"] == {"result": "announced: tools/list_changed"}
                    elif frames[-1].get("method") == "notifications/tools/list_changed":
                        break
    assert frames[0]["method"] == "notifications/subscriptions/acknowledged"
    assert frames[-1]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 11
