"""Real processes for the tests: a Celery worker and the MCP server, with their output kept.

Readiness is awaited on events (a log line seen, an HTTP check answering), never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mcp_jobs.server.dev_redis import free_port

REPO = Path(__file__).resolve().parents[2]


def sigint_ignored(args: list[str]) -> list[str]:
    """`args` run with SIGINT ignored, as a non-interactive shell starts a background job (CI's
    runner does): a command must stop on Ctrl-C by handlers of its own, not by KeyboardInterrupt."""
    return ["bash", "-c", 'trap "" INT; exec "$@"', args[0], *args]


class ManagedProcess:
    """A child process whose combined output is captured line by line and can be waited on."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        self.name = name
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, name=f"{name}-output", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, pattern: str, timeout: float, nth: int = 1) -> str:
        """The `nth` output line matching `pattern`, waiting up to `timeout` seconds for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = matched = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line):
                        matched += 1
                        if matched == nth:
                            return line
                seen = len(self.lines)
                if self.process.poll() is not None and seen == len(self.lines):
                    raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.output()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no line matching {pattern!r} in {timeout} s:\n{self.output()}")
                self._changed.wait(remaining)

    def output(self, last: int = 60) -> str:
        return "\n".join(self.lines[-last:])

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def start_worker(
    env: dict[str, str], name: str, concurrency: int = 2, queues: str | None = None, pool: str = "prefork"
) -> ManagedProcess:
    args = ["worker", "--loglevel", "INFO", "--concurrency", str(concurrency), "-n", f"{name}@%h", "--pool", pool]
    args += ["--without-mingle", "--without-gossip"]
    if queues:
        args += ["-Q", queues]
    worker = ManagedProcess(f"worker {name}", python_module("mcp_jobs.server.cli", *args), env)
    worker.wait_for_line(r"ready\.", timeout=60)
    return worker


def start_http_server(
    env: dict[str, str], port: int, command: list[str] | None = None, cwd: Path = REPO
) -> ManagedProcess:
    """The HTTP server (by default from this checkout; `command` runs another `mcp-jobs`)."""
    args = [*(command or python_module("mcp_jobs.server.cli")), "serve", "--port", str(port)]
    server = ManagedProcess("server", args, env, cwd)
    wait_until(lambda: _healthy(port), timeout=60, what="server health check", process=server)
    return server


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, process: ManagedProcess | None = None) -> None:
    """Poll `check` until it holds, failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None and process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.output()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def replica_stack(env: dict[str, str], database: int, name: str, replicas: int = 2) -> Iterator[list[str]]:
    """A worker (a thread pool) and `replicas` server processes on a Redis database and namespace
    of their own; yields the servers' URLs. The database matters: the broker's queues are not
    namespaced, so the session's workers (or another module's) would take these jobs."""
    env = env | {
        "MCP_JOBS_REDIS_URL": env["MCP_JOBS_REDIS_URL"].rsplit("/", 1)[0] + f"/{database}",
        "MCP_JOBS_NAMESPACE": f"{name}-{uuid.uuid4().hex[:8]}",
    }
    worker = start_worker(env, f"{name}-{uuid.uuid4().hex[:6]}", concurrency=4, pool="threads")
    servers: list[ManagedProcess] = []
    urls = []
    try:
        for _ in range(replicas):
            port = free_port()
            url = f"http://127.0.0.1:{port}/mcp"
            servers.append(start_http_server(env | {"MCP_JOBS_PUBLIC_URL": url}, port))
            urls.append(url)
        yield urls
    finally:
        for server in servers:
            server.stop()
        worker.stop()
