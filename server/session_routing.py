"""2025-11-25 sessions across the processes of one `serve --processes N`.

The SDK keeps a 2025-11-25 session in the memory of the process that opened it. The processes of
one server share one listening socket, so a client's next connection can land on any of them.
This middleware makes that invisible: the session id a client is given names the process that
holds the session (`<index>.<the SDK's id>`), and a request for another process's session is
passed, streaming both ways, to that process over its own UNIX socket. Nothing is shared but
the socket directory, and nothing is looked up: the id itself says where the session lives.

2026-07-28 requests carry no session and are served by whichever process they land on, as
replicas serve them; so are a session's first request (its `initialize`) and every request on
a connection that stays with the process that holds it, which is most of them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

SESSION_HEADER = b"mcp-session-id"

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"})
"""Headers of one connection, not of the request or response, so never passed on (RFC 9110 §7.6.1)."""

OWN_HEADERS = HOP_BY_HOP | {b"date", b"server"}
"""Of the owner's response, what uvicorn sets again on the way out."""

FORWARD_TIMEOUT = httpx2.Timeout(connect=5.0, read=None, write=30.0, pool=5.0)
"""No read timeout: a session's GET stream and a long call's response stay open for as long as
the call runs; the process that holds the session ends them."""


def socket_path(peers: Path, index: int) -> Path:
    """The UNIX socket process `index` serves forwarded requests on."""
    return peers / f"{index}.sock"


class SessionRouting:
    """ASGI middleware of one of `processes` server processes: tags the session ids it hands out
    with its `index`, and passes requests for another process's session to that process."""

    def __init__(self, app: ASGIApp, index: int, processes: int, peers: Path) -> None:
        self._app = app
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # uvicorn logs each request already
        self._tag = f"{index}.".encode()
        self._owners = {f"{other}.".encode(): _client(peers, other) for other in range(processes) if other != index}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        session = next((value for name, value in scope["headers"] if name == SESSION_HEADER), None)
        if session is not None:
            tag, dot, _ = session.partition(b".")
            owner = self._owners.get(tag + dot)
            if owner is not None:
                await _forward(owner, scope, receive, send)
                return
            if tag + dot == self._tag:  # ours: the SDK knows it by its own id
                headers = [(n, v[len(self._tag) :] if n == SESSION_HEADER else v) for n, v in scope["headers"]]
                scope = {**scope, "headers": headers}
        await self._app(scope, receive, self._tagging(send))

    def _tagging(self, send: Send) -> Send:
        """`send`, with the session id of a response tagged with this process's index."""

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (n, self._tag + v if n == SESSION_HEADER else v) for n, v in message.get("headers", [])
                    ],
                }
            await send(message)

        return tagged


def _client(peers: Path, index: int) -> httpx2.AsyncClient:
    """A client of process `index`'s socket: no connection limit (every forwarded GET stream and
    long call holds one), and none of httpx's default headers, so the owner sees the request as
    the client sent it."""
    transport = httpx2.AsyncHTTPTransport(
        uds=str(socket_path(peers, index)), limits=httpx2.Limits(max_connections=None, max_keepalive_connections=20)
    )
    client = httpx2.AsyncClient(transport=transport, timeout=FORWARD_TIMEOUT)
    client.headers.clear()
    return client


async def _forward(client: httpx2.AsyncClient, scope: Scope, receive: Receive, send: Send) -> None:
    """Pass one request to the process that holds its session and stream its answer back, until
    the answer ends or the client goes away (then the owner's stream is closed too: a session's
    GET stream left open there would refuse the client's next one)."""
    path = scope["raw_path"] if scope.get("raw_path") else scope["path"].encode()
    query = b"?" + scope["query_string"] if scope.get("query_string") else b""
    headers = [(n, v) for n, v in scope["headers"] if n not in HOP_BY_HOP]
    request = client.build_request(
        scope["method"], "http://session-owner" + (path + query).decode("latin-1"), headers=headers,
        content=_body(receive),
    )  # fmt: skip
    try:
        response = await client.send(request, stream=True)
    except httpx2.ConnectError as exc:  # that process is restarting or gone: its sessions are gone with it
        logger.warning("session owner unreachable (%s): answering 404 Session not found", exc)
        await _error(scope, receive, send, 404, INVALID_REQUEST, "Session not found")
        return
    except httpx2.TransportError as exc:
        logger.warning("session owner did not answer (%r): answering 503", exc)
        await _error(scope, receive, send, 503, INTERNAL_ERROR, "The server process holding this session is busy")
        return
    try:
        async with anyio.create_task_group() as relay:
            relay.start_soon(_cancel_on_disconnect, receive, relay.cancel_scope)
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(n, v) for n, v in response.headers.raw if n.lower() not in OWN_HEADERS],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            relay.cancel_scope.cancel()
    except httpx2.TransportError as exc:  # the owner went away mid-answer: the client's stream ends
        logger.warning("session owner lost mid-answer (%s): ending the stream", exc)
    finally:
        await response.aclose()


async def _cancel_on_disconnect(receive: Receive, relay: anyio.CancelScope) -> None:
    """End the relay when the client disconnects (the request body is all read by now, so the
    next message can only be the disconnect; uvicorn's `send` alone would not say so)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    relay.cancel()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _error(scope: Scope, receive: Receive, send: Send, status: int, code: int, message: str) -> None:
    """A JSON-RPC error as the SDK answers one (`Session not found` for a session it does not hold:
    a restarted process lost its sessions)."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    await JSONResponse(body, status_code=status)(scope, receive, send)
