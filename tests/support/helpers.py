"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import mcp_types as types
import redis
import redis.asyncio as aioredis
from mcp import Client
from redis.asyncio.cluster import RedisCluster

from mcp_jobs._events import Keys
from mcp_jobs.server.ops.view import scan_pattern


@dataclass
class Update:
    progress: float
    total: float | None
    message: str | None
    at: float


@dataclass
class ProgressLog:
    """A progress callback that records every update and lets a test wait for one."""

    updates: list[Update] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append(Update(progress, total, message, time.monotonic()))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, minimum: float, timeout: float = 20.0) -> Update:
        """The first update whose progress is at least `minimum`."""
        with anyio.fail_after(timeout):
            while True:
                for update in self.updates:
                    if update.progress >= minimum:
                        return update
                await self._changed.wait()

    @property
    def values(self) -> list[float]:
        return [u.progress for u in self.updates]


def assert_strictly_increasing(values: list[float]) -> None:
    assert all(b > a for a, b in itertools.pairwise(values)), values


def job_keys(client: redis.Redis, keys: Keys) -> set[str]:
    """Every job snapshot key of the namespace (not the liveness keys)."""
    return {key for key in client.scan_iter(match=keys.job("*")) if keys.job_id_of(key) is not None}


def job_id_of_key(key: str) -> str:
    """The job id in a snapshot key (`<ns>:job:{<job id>}`)."""
    return key.rpartition(":")[2].strip("{}")


async def wait_for_state(client: redis.Redis, key: str, states: set[str], timeout: float) -> str:
    """Wait until the snapshot at `key` is in one of `states`; return the state."""
    with anyio.fail_after(timeout):
        while True:
            state = client.hget(key, "state")
            if state in states:
                return state
            await anyio.sleep(0.02)


def job_id_of(result: types.CallToolResult) -> str:
    from mcp_jobs._contract import JOB_ID_META_KEY

    assert result.meta is not None and JOB_ID_META_KEY in result.meta, result.meta
    return str(result.meta[JOB_ID_META_KEY])


async def cancel_once_it_reports(
    client: Client, tool: str, arguments: dict[str, Any], log: ProgressLog, at: float
) -> None:
    """Call `tool` and cancel the call (as a caller would) once its progress reached `at`."""
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            await client.call_tool(tool, arguments, progress_callback=log)

        tg.start_soon(call)
        await log.wait_for(at)
        tg.cancel_scope.cancel()


@asynccontextmanager
async def async_redis(url: str, cluster: bool = False) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis client (of the cluster `url` belongs to, with `cluster`), closed on exit."""
    client = cast("aioredis.Redis", RedisCluster.from_url(url)) if cluster else aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


@contextmanager
def namespace_of_its_own(client: redis.Redis, namespace: str) -> Iterator[Keys]:
    """A namespace for one test; its keys are deleted afterwards (glob characters and all)."""
    keys = Keys(namespace)
    try:
        yield keys
    finally:
        for key in client.scan_iter(match=scan_pattern(keys, "*")):
            client.delete(key)
        client.close()


class Arrivals:
    """JSON-RPC messages of a stream as they arrive, and a wait for the one a test expects
    (woken at each arrival, never by a clock)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._arrived = anyio.Event()

    def add(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self._arrived.set()
        self._arrived = anyio.Event()

    async def until(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while not condition():
                await self._arrived.wait()

    def params_of(self, method: str) -> list[dict[str, Any]]:
        return [m["params"] for m in self.messages if m.get("method") == method]
