"""A minimal raw HTTP MCP client (2025-11-25 sessions) for reading exactly what is on the wire."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import httpx

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def open_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Initialize a 2025-11-25 session; return the headers its requests carry."""
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    response = await http.post(url, json=init, headers=HEADERS)
    response.raise_for_status()
    headers = HEADERS | {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


def tool_call(request_id: int, tool: str, arguments: dict[str, Any], token: str | int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def call_messages(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any]
) -> list[dict[str, Any]]:
    """POST one request and return every JSON-RPC message of its SSE stream, in wire order."""
    messages = []
    async with http.stream("POST", url, json=body, headers=headers) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:") and line[5:].strip():
                messages.append(json.loads(line[5:]))
    return messages


def progress_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["params"] for m in messages if m.get("method") == "notifications/progress"]


MODERN = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"


async def modern_request(
    http: httpx.AsyncClient,
    url: str,
    method: str,
    params: dict[str, Any],
    *,
    tasks: bool = True,
    name: str | None = None,
    request_id: int = 1,
    token: str | None = None,
    can: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One stateless 2026-07-28 request (what a Tasks-aware client sends); returns the JSON-RPC
    response, whether the server answered with JSON or SSE. `tasks`: opt in to the extension;
    `name`: the `Mcp-Name` header (default: the tool name or task id); `can`: more client
    capabilities (`{"elicitation": {}}`)."""
    capabilities: dict[str, Any] = ({"extensions": {TASKS: {}}} if tasks else {}) | (can or {})
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    headers = HEADERS | {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    routed = name if name is not None else params.get("name", params.get("taskId"))
    if routed is not None:
        headers["Mcp-Name"] = str(routed)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}
    response = await http.post(url, json=body, headers=headers)
    if response.status_code in (401, 403):
        return {"status": response.status_code, "www-authenticate": response.headers.get("www-authenticate", "")}
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [
            json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()
        ]
        return next(e for e in events if e.get("id") == request_id)
    return dict(response.json())


def wire_problems(tag: str, messages: list[dict[str, object]], steps: int) -> list[str]:
    """What is wrong with one `tagged` call's stream: the result must be its own and come last, after
    the final progress; progress must carry only its own token and strictly increase."""
    progress = progress_of(messages)  # type: ignore[arg-type]
    values = [p["progress"] for p in progress]
    problems = []
    last = messages[-1] if messages else {}
    if "result" not in last or last["result"].get("structuredContent") != {"result": tag}:  # type: ignore[union-attr]
        problems.append(f"{tag}: the stream does not end with this call's result")
    if not values or values[-1] != steps or {p["progressToken"] for p in progress} != {tag}:
        problems.append(f"{tag}: final progress missing or foreign on the wire ({values})")
    if any(b <= a for a, b in itertools.pairwise(values)):
        problems.append(f"{tag}: progress not strictly increasing on the wire {values}")
    return problems


def listen_request(
    request_id: int, notifications: dict[str, Any], token: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of a 2026-07-28 `subscriptions/listen` request for `notifications`."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "subscriptions/listen",
        "params": {"notifications": notifications, "_meta": meta},
    }
    headers = HEADERS | {"MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return body, headers


ELICITATION = {"elicitation": {}}


async def round_trip(
    http: httpx.AsyncClient,
    url: str,
    tag: str,
    *,
    state: str | None = None,
    answers: dict[str, Any] | None = None,
    progress: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One 2026-07-28 `tools/call` of `interview`; with `progress`, with a token of its own, whose
    notifications are collected there."""
    params: dict[str, Any] = {"name": "interview", "arguments": {"tag": tag}}
    if state is not None:
        params["requestState"] = state
    if answers is not None:
        params["inputResponses"] = answers
    if progress is None:
        return await modern_request(http, url, "tools/call", params, tasks=False, can=ELICITATION)
    token = uuid.uuid4().hex
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": ELICITATION,
        "progressToken": token,
    }
    headers = HEADERS | {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "interview"}
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {**params, "_meta": meta}}
    response = await http.post(url, json=body, headers=headers)
    # SSE once something was sent before the result; plain JSON when the result came first.
    messages = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    messages = messages or [response.json()]
    progress.extend(p | {"round": token} for p in progress_of(messages) if p["progressToken"] == token)
    return messages[-1]


def question_of(response: dict[str, Any]) -> tuple[str, str]:
    """The key and the sealed state of the one question an `InputRequiredResult` asks."""
    result = response["result"]
    assert result["resultType"] == "input_required", response
    (key,) = result["inputRequests"]
    return key, result["requestState"]


def accept(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}
