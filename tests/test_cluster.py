"""What only a Redis Cluster shows: a job's keys on one slot, its events on its own sharded
channel, jobs spread over the masters, questions answered across it, and the settings that
select it. The bridge's own suites (`test_bridge.py`, `test_tasks.py`, `test_handoff.py`, the
fan-out and view tests, the per-caller limit) run on the cluster stack too: see `conftest.py`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx
import pytest
import redis
from mcp import Client
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult
from pydantic import ValidationError
from redis.crc import key_slot

from mcp_jobs.server.dev_redis import free_port
from mcp_jobs.settings import Settings
from tests.conftest import Connect, Stack
from tests.support.cluster import ClusterSet, cluster_set
from tests.support.helpers import ProgressLog, job_id_of, job_keys
from tests.support.processes import start_http_server, start_worker, wait_until
from tests.support.rawclient import listen_request, modern_request

pytestmark = [pytest.mark.anyio, pytest.mark.cluster(only=True)]


async def test_a_jobs_keys_share_one_slot_and_its_events_go_on_its_sharded_channel(stack: Stack) -> None:
    """While a call runs, its job's channel is a shard channel (`PUBSUB SHARDNUMSUB` on the node
    of the job's slot), not a classic one; every key the job leaves shares that slot; and calls'
    jobs land on more than one master."""
    admin = stack.redis()
    log = ProgressLog()
    async with anyio.create_task_group() as tg, Client(stack.http_url) as client:
        before = job_keys(admin, stack.keys)

        async def call() -> None:
            await client.call_tool("sleep_steps", {"steps": 30, "delay": 0.1}, progress_callback=log)

        tg.start_soon(call)
        await log.wait_for(1)
        (key,) = job_keys(admin, stack.keys) - before
        owner = admin.get_node_from_key(key)
        sharded = _node(owner.port).pubsub_shardnumsub(key)
        classic = [_node(node.port).pubsub_numsub(key) for node in admin.get_primaries()]
        tg.cancel_scope.cancel()
    assert dict(sharded).get(key) == 1, sharded
    assert not any(dict(reply).get(key) for reply in classic), classic
    job_id = key.rpartition("{")[2].rstrip("}")
    related = [k for k in admin.scan_iter(match=f"*{job_id}*") if "part" not in k]
    assert {key, stack.keys.steps(job_id)} <= set(related), related
    assert {key_slot(k.encode()) for k in related} == {key_slot(key.encode())}, related

    async with Client(stack.http_url) as client:
        ids = [job_id_of(await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})) for _ in range(8)]
    masters = {admin.get_node_from_key(stack.keys.job(job_id)).name for job_id in ids}
    assert len(masters) > 1, "eight jobs all on one master: keys are not spread by job id"


@pytest.mark.parametrize("transport", ["http-auto", "http-legacy"])
async def test_a_job_asks_its_caller_and_goes_on_with_the_answers(connect: Connect, stack: Stack) -> None:
    """Both protocol eras: the job's questions travel as its own events, the answers are stored
    on its slot by the answer script, and the worker wakes on its inbox."""

    async def answer(_: object, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(
            action="accept", content={"ok": True} if "Go ahead" in params.message else {"colour": "teal"}
        )

    tag = f"cluster-{uuid.uuid4().hex[:6]}"
    async with connect(elicitation_callback=answer) as client:
        result = await client.call_tool("interview", {"tag": tag})
    assert not result.is_error, result.content
    assert result.structured_content == {"runs": 1, "colour": "teal"}


async def test_a_server_wide_event_from_a_worker_reaches_a_listen_stream(stack: Stack) -> None:
    """The events channel is sharded too: a job announces a tool list change (`SPUBLISH` from
    the worker) and a 2026-07-28 `subscriptions/listen` stream on the server hears it."""
    body, headers = listen_request(11, {"toolsListChanged": True})
    frames: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=60) as http:
        with anyio.fail_after(60):
            async with http.stream("POST", stack.http_url, json=body, headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if not (line.startswith("data:") and line[5:].strip()):
                        continue
                    frames.append(json.loads(line[5:]))
                    if len(frames) == 1:  # acknowledged: now a job announces a change
                        call = {"name": "test_trigger_tool_change", "arguments": {}}
                        done = await modern_request(http, stack.http_url, "tools/call", call, tasks=False)
                        assert done["result"]["structuredContent"] == {"result": "announced: tools/list_changed"}
                    elif frames[-1].get("method") == "notifications/tools/list_changed":
                        break
    assert frames[0]["method"] == "notifications/subscriptions/acknowledged"
    assert frames[-1]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 11


async def test_with_the_cluster_gone_calls_end_at_the_outage_limit(stack_env: dict[str, str]) -> None:
    """Every master killed (SIGKILL) while calls run on both eras: they end once the cluster has
    been unreachable for `MCP_JOBS_REDIS_OUTAGE_LIMIT`, saying so, instead of hanging."""
    with cluster_stack(stack_env, "cluster-outage", masters=3, MCP_JOBS_REDIS_OUTAGE_LIMIT="3") as (nodes, url):
        async with calls_running(url, count=4, steps=600) as (_, results):
            for node in nodes.nodes:
                assert node.process is not None
                node.process.kill()
            lost = time.monotonic()
        ended = time.monotonic() - lost
    for result in results.values():
        assert result.is_error and "Redis is unreachable" in str(result.content), result
    assert ended < 30, ended


async def test_calls_in_flight_go_on_with_live_progress_across_a_failover(stack_env: dict[str, str]) -> None:
    """A master with a replica: `CLUSTER FAILOVER` promotes the replica while calls run on both
    eras. The old master unsubscribes their channels; redis-py moves them to the new master, whose
    connection the listener's supervisor reads; the calls end with their results, their progress
    still arriving as events (a snapshot poll would bring one a second), and a new call works."""
    with cluster_stack(stack_env, "cluster-failover", masters=1, replicas=1) as (nodes, url):
        async with calls_running(url, count=2, steps=100) as (logs, results):
            promoted = _node(nodes.replicas[0].port)
            promoted.execute_command("CLUSTER", "FAILOVER")
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: promoted.info("replication")["role"] == "master", 30, "the promotion")
            )
            after = [len(log.updates) for log in logs]
        assert all(not result.is_error for result in results.values()), results
        # Events bring each of the ~70 steps left (PROGRESS_RATE allows 20/s); snapshot polls,
        # one a second of silence, would bring fewer than 10.
        assert all(len(log.updates) - seen >= 20 for log, seen in zip(logs, after, strict=True)), (after, logs)
        async with Client(url, mode="auto") as client:
            with anyio.fail_after(30):
                fresh = await client.call_tool("sleep_steps", {"steps": 2, "delay": 0})
        assert not fresh.is_error, fresh


@asynccontextmanager
async def calls_running(
    url: str, count: int, steps: int
) -> AsyncIterator[tuple[list[ProgressLog], dict[int, CallToolResult]]]:
    """`count` `sleep_steps` calls (0.1 s a step) in flight, the eras taking turns, each past its
    second step; yields their progress logs and their results (filled as they end), and returns
    once every call has ended."""
    logs = [ProgressLog() for _ in range(count)]
    results: dict[int, CallToolResult] = {}
    async with Client(url, mode="auto") as modern, Client(url, mode="legacy") as legacy:

        async def call(index: int) -> None:
            client = modern if index % 2 else legacy
            arguments = {"steps": steps, "delay": 0.1}
            results[index] = await client.call_tool("sleep_steps", arguments, progress_callback=logs[index])

        async with anyio.create_task_group() as calls:
            for index in range(count):
                calls.start_soon(call, index)
            with anyio.fail_after(60):
                for log in logs:
                    await log.wait_for(2)
            yield logs, results


OWN_BROKER_DB = 14
"""The session Redis's database that is the broker of the clusters these tests start themselves
(one at a time)."""


@contextmanager
def cluster_stack(
    stack_env: dict[str, str], name: str, masters: int, replicas: int = 0, **settings: str
) -> Iterator[tuple[ClusterSet, str]]:
    """A cluster of the test's own, with a worker and a server on it; yields it and the MCP URL."""
    database = stack_env["MCP_JOBS_REDIS_URL"].rsplit("/", 1)[0]
    with ExitStack() as resources:
        nodes = resources.enter_context(cluster_set(masters, replicas))
        env = stack_env | {
            "MCP_JOBS_REDIS_URL": nodes.url,
            "MCP_JOBS_REDIS_CLUSTER": "true",
            "MCP_JOBS_BROKER_URL": f"{database}/{OWN_BROKER_DB}",
            "MCP_JOBS_NAMESPACE": f"{name}-{uuid.uuid4().hex[:6]}",
            **settings,
        }
        worker = start_worker(env, f"{name}-{uuid.uuid4().hex[:6]}", concurrency=4, pool="threads")
        resources.callback(worker.stop)
        port = free_port()
        resources.callback(start_http_server(env, port).stop)
        yield nodes, f"http://127.0.0.1:{port}/mcp"


def test_a_cluster_needs_a_broker_of_its_own_and_excludes_sentinels() -> None:
    with pytest.raises(ValidationError, match="MCP_JOBS_BROKER_URL"):
        Settings(_env_file=None, redis_cluster=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            redis_cluster=True,
            redis_sentinels=["127.0.0.1:26379"],
            broker_url="redis://127.0.0.1:6380/0",
        )
    chosen = Settings(_env_file=None, redis_cluster=True, broker_url="redis://broker:6379/0")  # type: ignore[call-arg]
    assert not chosen.broker_shares_redis and chosen.effective_broker_url == "redis://broker:6379/0"


def _node(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True)
