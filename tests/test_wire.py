"""The bytes on the wire, read with a plain HTTP client (2025-11-25 session over Streamable HTTP):
the caller's own progress token comes back exactly, all progress precedes the result and nothing
follows it, and the Host/Origin checks are on.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Stack

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _sse_messages(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data:") and line[5:].strip():
            yield json.loads(line[5:])


@pytest.fixture
def session(stack: Stack) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    with httpx.Client(base_url=stack.http_url.removesuffix("/mcp"), timeout=30) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        }
        with http.stream("POST", "/mcp", json=init, headers=HEADERS) as response:
            assert response.status_code == 200
            session_id = response.headers["mcp-session-id"]
            assert next(_sse_messages(response))["result"]["protocolVersion"] == "2025-11-25"
        headers = HEADERS | {"mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
        ack = http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        assert ack.status_code == 202
        yield http, headers


@pytest.mark.parametrize("token", ["tök-🙂-1", 7, "007"])
def test_progress_token_is_echoed_exactly_and_nothing_follows_the_result(
    session: tuple[httpx.Client, dict[str, str]], token: str | int
) -> None:
    http, headers = session
    call = {
        "jsonrpc": "2.0",
        "id": 41,
        "method": "tools/call",
        "params": {"name": "burst", "arguments": {"steps": 30, "interval": 0.01}, "_meta": {"progressToken": token}},
    }
    with http.stream("POST", "/mcp", json=call, headers=headers) as response:
        messages = list(_sse_messages(response))  # the stream ends after the response
    kinds = ["result" if "id" in m else m["method"] for m in messages]
    assert kinds[-1] == "result" and kinds.count("result") == 1, kinds
    progress = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    assert progress, kinds
    assert all(p["progressToken"] == token and type(p["progressToken"]) is type(token) for p in progress)
    values = [p["progress"] for p in progress]
    assert all(b > a for a, b in itertools.pairwise(values)) and values[-1] == 30
    assert messages[-1]["result"]["structuredContent"] == {"result": 30}


def test_foreign_host_and_origin_are_refused(stack: Stack) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    with httpx.Client(timeout=10) as http:
        rebinding = http.post(stack.http_url, json=body, headers=HEADERS | {"Host": "evil.example:80"})
        cross_site = http.post(stack.http_url, json=body, headers=HEADERS | {"Origin": "https://evil.example"})
    assert rebinding.status_code == 421
    assert cross_site.status_code == 403


def test_malformed_requests_get_errors_and_the_server_stays_up(stack: Stack) -> None:
    with httpx.Client(timeout=10) as http:
        broken = http.post(stack.http_url, content=b"{not json", headers=HEADERS)
        assert broken.status_code == 400
        assert http.get(stack.http_url.removesuffix("/mcp") + "/healthz").status_code == 200
