"""`mcp-jobs serve --processes N`: N server processes on one listening socket.

One server process is one event loop on one core. To use more cores of a host, the parent binds
the socket once and starts N children, each a whole `serve` (its own runtime, Redis connections,
reply channel and SIGTERM drain) on the inherited socket; the kernel hands each new connection
to one of them. They share nothing but Redis, as replicas do, and a directory of UNIX sockets
over which a request for a 2025-11-25 session reaches the process that holds it
(`session_routing.py`).

Why not uvicorn's own `workers=N`: it wants an import string and runs its own server class, so
the drain (`DrainingServer`) would not run in its workers.

The parent only supervises. It forwards SIGTERM and SIGINT (each child drains; a second SIGINT
forces them, as it does one uvicorn), restarts a child that dies after it started serving, and
stops them all if one fails to start. Each child holds one end of a socket pair to the parent:
it writes `ready` on it once it serves, and takes its closing (the parent gone, even by SIGKILL)
for a SIGTERM, so no child outlives its parent. Prometheus metrics are kept in
prometheus-client's multiprocess mode, so a scrape of any process reports all of them; and the
processes share one `requestState` key unless keys are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from prometheus_client import multiprocess

from mcp_jobs.server.session_routing import socket_path
from mcp_jobs.settings import Settings

logger = logging.getLogger("mcp_jobs")

RESTART_DELAY = 0.5
"""Seconds before a child that died quickly (within `RESTART_QUICK`) is started again; doubles
while it keeps doing so, up to `RESTART_DELAY_MAX`."""
RESTART_QUICK = 10.0
RESTART_DELAY_MAX = 30.0

READY = b"R"
"""What a child writes to the parent once it serves."""
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess mode: each process keeps its values in files there."""


@dataclass(frozen=True)
class ChildSpec:
    """What a child process is told on its command line: who it is and what it inherited."""

    index: int
    processes: int
    listen_fd: int
    control_fd: int
    peers: Path

    def encode(self) -> str:
        return f"{self.index},{self.processes},{self.listen_fd},{self.control_fd},{self.peers}"

    @classmethod
    def decode(cls, text: str) -> ChildSpec:
        index, processes, listen_fd, control_fd, peers = text.split(",", 4)
        return cls(int(index), int(processes), int(listen_fd), int(control_fd), Path(peers))

    def sockets(self) -> list[socket.socket]:
        """The shared listening socket, and this process's own UNIX socket for forwarded requests."""
        path = socket_path(self.peers, self.index)
        path.unlink(missing_ok=True)  # left by the process this one replaces
        own = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        own.bind(str(path))
        return [socket.socket(fileno=self.listen_fd), own]

    def control(self) -> socket.socket:
        return socket.socket(fileno=self.control_fd)


class Supervisor:
    """Runs `processes` children of `serve` on one socket until told to stop; see the module."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self._settings = settings
        self._processes = processes
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._ready: set[int] = set()
        self._stopping = asyncio.Event()
        self._failed = 0
        self._peers = Path()
        self._listener: socket.socket | None = None

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or a child failing to start (its exit code, or 1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig)
        config = uvicorn.Config(None, host=self._settings.host, port=self._settings.port)  # type: ignore[arg-type]
        listener = config.bind_socket()  # uvicorn's own: SO_REUSEADDR, inheritable, logs the address
        listener.listen(config.backlog)  # connections wait in the queue while the children start
        self._listener = listener
        port = listener.getsockname()[1]
        with tempfile.TemporaryDirectory(prefix="mcp-jobs-") as peers, listener:
            self._peers = Path(peers)
            env = self._child_env(self._peers, port)
            await asyncio.gather(*(self._keep(i, listener, env) for i in range(self._processes)))
        return self._failed

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop every child: the first signal asks them to drain, a second SIGINT forces them.
        The supervisor's own copy of the socket closes at once, so that once the children have
        closed theirs a new connection is refused, not left waiting for nobody."""
        forced = self._stopping.is_set() and sig == signal.SIGINT
        self._stopping.set()
        for child in self._children.values():
            if child.returncode is None:
                child.send_signal(signal.SIGINT if forced else signal.SIGTERM)
        if self._listener is not None:
            self._listener.close()

    async def _keep(self, index: int, listener: socket.socket, env: dict[str, str]) -> None:
        """Run child `index`, and again each time it dies (after `RESTART_DELAY`, doubling while
        it keeps dying within `RESTART_QUICK` of starting). Only the first start failing stops
        them all: that is a server that cannot start, where a later one is a passing trouble."""
        first, quick_deaths = True, 0
        while not self._stopping.is_set():
            began = time.monotonic()
            started, code, pid = await self._run_child(index, listener, env)
            if self._stopping.is_set():
                return
            if first and not started:
                logger.error("server process %d failed to start (exit code %s): stopping", index, code)
                self._failed = self._failed or (128 - code if code < 0 else code) or 1
                self.stop()
                return
            first = False
            quick_deaths = quick_deaths + 1 if time.monotonic() - began < RESTART_QUICK else 0
            delay = min(RESTART_DELAY * 2 ** max(quick_deaths - 1, 0), RESTART_DELAY_MAX) if quick_deaths else 0.0
            logger.error(
                "server process %d (pid %d) exited with code %s: starting another%s",
                index, pid, code, f" in {delay:g} s" if delay else "",
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_child(self, index: int, listener: socket.socket, env: dict[str, str]) -> tuple[bool, int, int]:
        """Start child `index` and wait for it to end: whether it got to serve, its exit code, its pid."""
        ours, theirs = socket.socketpair()
        spec = ChildSpec(index, self._processes, listener.fileno(), theirs.fileno(), self._peers)
        command = [sys.executable, "-m", "mcp_jobs.server.cli", "serve", "--child", spec.encode()]
        with ours:
            try:
                child = await asyncio.create_subprocess_exec(
                    *command, env=env, pass_fds=(listener.fileno(), theirs.fileno())
                )
            finally:
                theirs.close()
            self._children[index] = child
            if self._stopping.is_set():  # a signal came while it was being started
                child.send_signal(signal.SIGTERM)
            ours.setblocking(False)
            started = await asyncio.get_running_loop().sock_recv(ours, len(READY)) == READY
            if started:
                self._started(index)
            code = await child.wait()
        self._ready.discard(index)
        self._child_ended(child.pid, env)
        return started, code, child.pid

    def _started(self, index: int) -> None:
        self._ready.add(index)
        if len(self._ready) == self._processes:
            pids = ", ".join(str(self._children[i].pid) for i in sorted(self._children))
            print(
                f"mcp-jobs: {self._processes} server processes ready (pids {pids}; sessions forwarded over {self._peers})",
                file=sys.stderr,
                flush=True,
            )

    def _child_env(self, peers: Path, port: int) -> dict[str, str]:
        """The environment of every child: this one, with the settings given on the command line,
        a fresh directory for prometheus-client's multiprocess mode (one left by an earlier run
        would add its values to this one's), and, unless configured, one `requestState` key for
        all of them (the answer to a job's question may reach any of the processes)."""
        env = dict(os.environ)
        env |= {"MCP_JOBS_HOST": self._settings.host, "MCP_JOBS_PORT": str(port)}
        env["MCP_JOBS_JOB_MODULES"] = ",".join(self._settings.job_modules)
        directory = peers / "metrics"
        directory.mkdir()
        env[METRICS_DIR_VARIABLE] = str(directory)
        if not self._settings.request_state_keys:
            env["MCP_JOBS_REQUEST_STATE_KEYS"] = secrets.token_hex(32)
        return env

    @staticmethod
    def _child_ended(pid: int, env: dict[str, str]) -> None:
        """Its calls in flight no longer count (its counters do: they are totals)."""
        multiprocess.mark_process_dead(pid, env[METRICS_DIR_VARIABLE])  # type: ignore[no-untyped-call]
