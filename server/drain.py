"""The HTTP server's drain on SIGTERM/SIGINT: uvicorn, with calls in flight given time to finish.

One thing works against it: sse-starlette, which the SDK's 2025-11-25 transport answers with,
ends every open event stream as soon as uvicorn is told to stop, so a session's calls in flight
would lose their results at the first SIGTERM (the 2026-07-28 streams do not go through it).
The drain turns that off and ends those streams itself once the calls have had their answers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_jobs.server.app import Runtime
from mcp_jobs.server.collector import freeze_start_up_heap
from mcp_jobs.server.processes import READY

logger = logging.getLogger("mcp_jobs")

ANSWER_TIME = 2.0
"""Seconds the calls handed off (or cancelled) at the end of the grace get to send that result;
uvicorn's own graceful timeout (`shutdown_grace` + 2 s) ends what is left after it."""


class OpenRequests:
    """ASGI middleware that knows when no request but a GET (a session's event stream, which
    waits for nothing) is in progress: a call's POST ends once its result is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._open = 0
        self._none = asyncio.Event()
        self._none.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "GET":
            await self._app(scope, receive, send)
            return
        self._open += 1
        self._none.clear()
        try:
            await self._app(scope, receive, send)
        finally:
            self._open -= 1
            if not self._open:
                self._none.set()

    async def ended(self, within: float) -> bool:
        """Whether every such request ended within `within` seconds."""
        try:
            await asyncio.wait_for(self._none.wait(), within)
        except TimeoutError:
            return False
        return True


class DrainingServer(uvicorn.Server):
    """uvicorn, plus a drain on SIGTERM/SIGINT: new calls are refused at once, calls in flight get
    `shutdown_grace` seconds to finish, then the rest are handed off (or cancelled, each with a
    result that says so) before the server stops. As a child of `--processes N` it tells its
    `supervisor` once it serves, and drains as on SIGTERM if the supervisor goes away."""

    def __init__(
        self, config: uvicorn.Config, runtime: Runtime, requests: OpenRequests, supervisor: socket.socket | None = None
    ) -> None:
        """`requests`: the app of `config`, or what it wraps."""
        super().__init__(config)
        AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]  # the drain ends them
        self._requests = requests
        self._runtime = runtime
        self._supervisor = supervisor
        self._draining: asyncio.Task[None] | None = None

    async def main_loop(self) -> None:
        if self._runtime.settings.gc_freeze:
            freeze_start_up_heap()
        if self._supervisor is not None:
            self._supervisor.sendall(READY)
            asyncio.get_running_loop().add_reader(self._supervisor.fileno(), self._supervisor_gone)
        await super().main_loop()

    def _supervisor_gone(self) -> None:
        assert self._supervisor is not None
        asyncio.get_running_loop().remove_reader(self._supervisor.fileno())
        logger.warning("the supervising process is gone: shutting down")
        self.handle_exit(signal.SIGTERM, None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is None:
            try:
                self._draining = asyncio.get_running_loop().create_task(self._drain())
            except RuntimeError:
                pass  # no loop yet: nothing in flight
        super().handle_exit(sig, frame)

    async def _drain(self) -> None:
        try:
            await self._end_calls()
        finally:
            AppStatus.should_exit = True  # now sse-starlette may end the event streams still open

    async def _end_calls(self) -> None:
        grace = self._runtime.settings.shutdown_grace
        try:
            dispatcher = self._runtime.dispatcher
        except RuntimeError:
            return
        dispatcher.close()
        logger.info("shutting down: refusing new calls; %g s for calls in flight to finish", grace)
        if not await self._requests.ended(within=grace):
            logger.info("shutting down: handing off (or cancelling) the calls still in flight")
        dispatcher.drain()  # also a call whose client went away, whose request is no longer open
        await self._requests.ended(within=ANSWER_TIME)
