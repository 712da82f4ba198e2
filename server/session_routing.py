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

import httpx2
from mcp_types import INVALID_REQUEST
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

SESSION_HEADER = b"mcp-session-id"

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"})
"""Headers of one connection, not of the request or response, so never passed on (RFC 9110 §7.6.1)."""

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
        self._owners = {
            f"{other}.".encode(): httpx2.AsyncClient(
                transport=httpx2.AsyncHTTPTransport(uds=str(socket_path(peers, other))), timeout=FORWARD_TIMEOUT
            )
            for other in range(processes)
            if other != index
        }

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


async def _forward(client: httpx2.AsyncClient, scope: Scope, receive: Receive, send: Send) -> None:
    """Pass one request to the process that holds its session and stream its answer back."""
    path = scope["raw_path"] if scope.get("raw_path") else scope["path"].encode()
    query = b"?" + scope["query_string"] if scope.get("query_string") else b""
    headers = [(n, v) for n, v in scope["headers"] if n not in HOP_BY_HOP]
    request = client.build_request(
        scope["method"], "http://session-owner" + (path + query).decode("latin-1"), headers=headers,
        content=_body(receive),
    )  # fmt: skip
    try:
        response = await client.send(request, stream=True)
    except httpx2.TransportError as exc:  # that process is restarting or gone: its sessions are gone with it
        logger.warning("session owner unreachable (%s): answering 404 Session not found", exc)
        await _not_found(scope, receive, send)
        return
    try:
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(n, v) for n, v in response.headers.raw if n.lower() not in HOP_BY_HOP],
            }
        )
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except httpx2.TransportError as exc:  # the owner went away mid-answer: the client's stream ends
        logger.warning("session owner lost mid-answer (%s): ending the stream", exc)
    finally:
        await response.aclose()  # a client gone mid-stream closes the stream at the owner too


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """What the SDK answers for a session it does not hold (a restarted process lost its sessions)."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": "Session not found"}}
    await JSONResponse(body, status_code=404)(scope, receive, send)
