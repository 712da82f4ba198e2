"""Session-wide real infrastructure: a Redis-compatible server on a free port, Celery worker
processes and the MCP server over HTTP, all started here and stopped at the end. Nothing relies
on a service that happens to run on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import pytest
import redis
from mcp import Client, StdioServerParameters

from mcp_jobs._events import Keys
from mcp_jobs.server.dev_redis import RedisProcess, free_port
from tests.support.cluster import cluster_set
from tests.support.processes import REPO, ManagedProcess, start_http_server, start_worker

TEST_JOB_MODULES = "mcp_jobs.examples,tests.jobs,bench.jobs,mcp_jobs.conformance"
PROGRESS_RATE = 20.0


@dataclass
class Stack:
    """What the end-to-end tests talk to."""

    redis_url: str
    env: dict[str, str]
    keys: Keys
    http_url: str
    workers: list[ManagedProcess]
    server: ManagedProcess
    cluster: bool = False
    """The jobs live on a Redis Cluster (`redis_url` is one of its nodes)."""

    @property
    def worker(self) -> ManagedProcess:
        return self.workers[0]

    def redis(self) -> redis.Redis:
        """A client of the jobs' Redis (a cluster client on a cluster)."""
        if self.cluster:
            return cast("redis.Redis", redis.RedisCluster.from_url(self.redis_url, decode_responses=True))
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def broker(self) -> redis.Redis:
        """A client of the Redis that holds the broker's queues (the jobs' own, but on a cluster)."""
        return redis.Redis.from_url(self.env.get("MCP_JOBS_BROKER_URL") or self.redis_url, decode_responses=True)


TOPOLOGIES = ("standalone", "cluster")
"""Where the session's stack keeps its jobs: one Redis, or a Redis Cluster of three masters (the
broker then a database of the session's Redis). Tests marked `cluster` run on both."""

CLUSTER_BROKER_DB = 12
"""The session Redis's database that is the broker of the cluster stack."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster(only=False): also (only) run against a Redis Cluster stack (see TOPOLOGIES)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of the session stack names its topology, so one stack per topology serves them all."""
    if "topology" in metafunc.fixturenames:  # the session `stack` (a module's own stack needs none)
        marker = metafunc.definition.get_closest_marker("cluster")
        topologies = TOPOLOGIES[:1] if marker is None else TOPOLOGIES[1:] if marker.kwargs.get("only") else TOPOLOGIES
        metafunc.parametrize("topology", topologies, indirect=True, scope="session")


@pytest.fixture(scope="session")
def topology(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", TOPOLOGIES[0]))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess(prefer_path=True) as server:
        yield server


@pytest.fixture(scope="session")
def stack_env(redis_server: RedisProcess) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MCP_JOBS_", "OTEL_"))  # the developer's own settings must not leak in
    }
    env |= {
        "MCP_JOBS_REDIS_URL": redis_server.url,
        "MCP_JOBS_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
        "MCP_JOBS_JOB_MODULES": TEST_JOB_MODULES,
        "MCP_JOBS_PROGRESS_RATE": str(PROGRESS_RATE),
        "MCP_JOBS_SNAPSHOT_POLL_INTERVAL": "1.0",
        "MCP_JOBS_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    return env


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str], redis_server: RedisProcess, topology: str) -> Iterator[Stack]:
    with ExitStack() as resources:
        env, cluster = stack_env, topology == "cluster"
        if cluster:
            nodes = resources.enter_context(cluster_set(3))
            env = stack_env | {
                "MCP_JOBS_REDIS_URL": nodes.url,
                "MCP_JOBS_REDIS_CLUSTER": "true",
                "MCP_JOBS_BROKER_URL": redis_server.url.rsplit("/", 1)[0] + f"/{CLUSTER_BROKER_DB}",
                "MCP_JOBS_NAMESPACE": f"cluster-{uuid.uuid4().hex[:8]}",
            }
        workers = [start_worker(env, f"w{i}-{uuid.uuid4().hex[:6]}") for i in range(2)]
        for worker in workers:
            resources.callback(worker.stop)
        port = free_port()
        server = start_http_server(env, port)
        resources.callback(server.stop)
        yield Stack(
            redis_url=env["MCP_JOBS_REDIS_URL"],
            env=env,
            keys=Keys(env["MCP_JOBS_NAMESPACE"]),
            http_url=f"http://127.0.0.1:{port}/mcp",
            workers=workers,
            server=server,
            cluster=cluster,
        )


Connect = Callable[..., AbstractAsyncContextManager[Client]]

TRANSPORTS = ["http-auto", "http-legacy", "stdio"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(stack: Stack, transport: str) -> Connect:
    """Open a real MCP client over the parametrized transport."""

    @asynccontextmanager
    async def open_client(**options: Any) -> AsyncIterator[Client]:
        if transport == "stdio":
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "mcp_jobs.server.cli", "serve", "--transport", "stdio"],
                env=stack.env,
                cwd=str(REPO),
            )
            target: Any = params
            mode = "auto"
        else:
            target = stack.http_url
            mode = transport.removeprefix("http-")
        async with Client(target, mode=mode, **options) as client:
            yield client

    return open_client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


TS_CLIENT_DIR = REPO / "tests" / "ts_client"
"""The official TypeScript clients (MCP SDK, and ext-tasks for the Tasks extension), from the lock file."""


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with the TypeScript clients' npm dependencies installed (from the lock file)."""
    binary, npm = shutil.which("node"), shutil.which("npm")
    assert binary and npm, "Node.js and npm are needed for the TypeScript client tests (.ci/run installs them)"
    modules = TS_CLIENT_DIR / "node_modules" / "@modelcontextprotocol"
    if not all((modules / package).exists() for package in ("sdk", "client", "ext-tasks")):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TS_CLIENT_DIR, check=True, timeout=300)
    return binary
