"""Fan-out, end to end: one call split into parts that run on several real worker processes,
with one strictly increasing progress; a failing part (fail fast, or collected); a cancel
half-way that stops the parts not yet started; parts whose worker is killed run again."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import anyio
import pytest
import redis
from mcp import Client

from mcp_jobs import RecordingProgress
from mcp_jobs._events import Keys
from mcp_jobs.server.dev_redis import free_port
from tests.conftest import Stack
from tests.jobs import fan
from tests.support.helpers import (
    ProgressLog,
    assert_strictly_increasing,
    cancel_once_it_reports,
    job_id_of_key,
    job_keys,
    wait_for_state,
)
from tests.support.processes import start_http_server, start_worker, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.cluster
async def test_one_call_runs_its_parts_on_several_workers_with_one_progress(stack: Stack) -> None:
    log = ProgressLog()
    async with Client(stack.http_url) as client:
        result = await client.call_tool("fan", {"parts": 8, "delay": 0.3}, progress_callback=log)
    assert not result.is_error, result.content
    outcome = result.structured_content
    assert outcome is not None and outcome["order"] == list(range(8)), "results in the items' order"
    assert len(outcome["pids"]) >= 2, f"parts ran in one process only: {outcome['pids']}"
    assert_strictly_increasing(log.values)
    assert log.values[-1] == 8 and log.updates[-1].total == 8
    done = sorted(u.message for u in log.updates if u.message and " done: item " in u.message)
    assert len(done) >= 2 and all(m.startswith("part ") for m in done), log.updates


@pytest.mark.cluster
async def test_a_failing_part_fails_the_call_fast_and_names_the_part(stack: Stack) -> None:
    async with Client(stack.http_url) as client:
        result = await client.call_tool("fan", {"parts": 6, "delay": 0.05, "fail": 3})
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and "Part 4 (item 3) failed: part 3 refused" in text, text


@pytest.mark.cluster
async def test_failing_parts_can_be_collected_instead(stack: Stack) -> None:
    async with Client(stack.http_url) as client:
        result = await client.call_tool("fan", {"parts": 6, "delay": 0.05, "fail": 3, "fail_fast": False})
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["failed"] == [3] and result.structured_content["order"] == [0, 1, 2, 4, 5]


@pytest.mark.cluster
async def test_cancelling_the_call_cancels_the_parts_not_yet_started(stack: Stack) -> None:
    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    log = ProgressLog()
    async with Client(stack.http_url) as client:
        await cancel_once_it_reports(client, "fan", {"parts": 40, "delay": 0.2}, log, at=3)
    (key,) = job_keys(redis, stack.keys) - before
    job_id = job_id_of_key(key)
    assert await wait_for_state(redis, key, {"cancelled"}, timeout=10) == "cancelled"
    broker = stack.broker()
    wait_until(lambda: broker.llen("celery") == 0, timeout=20, what="the queued parts to be taken (and skipped)")
    parts = redis.hgetall(stack.keys.parts(job_id))
    done = [field for field in parts if field.startswith("done:")]
    with anyio.fail_after(10):
        while any(redis.exists(stack.keys.alive(f"{job_id}:part:0:{n}")) for n in range(40)):
            await anyio.sleep(0.05)  # parts already running finish their item
    assert parts.get("cancel") == "1"
    assert len(redis.hgetall(stack.keys.parts(job_id))) - len(parts) <= 8, "only running parts could still finish"
    assert len(done) < 40, "the rest never ran"


def test_the_recording_double_runs_parts_inline_with_the_same_rules() -> None:
    progress = RecordingProgress()
    assert fan(progress, parts=3, delay=0)["order"] == [0, 1, 2]
    assert [u.progress for u in progress.updates] == [0, 1, 2, 3]
    collected = fan(RecordingProgress(), parts=3, delay=0, fail=1, fail_fast=False)
    assert collected["failed"] == [1]


@pytest.mark.cluster
async def test_the_examples_fan_out_through_real_workers(stack: Stack) -> None:
    async with Client(stack.http_url) as client:
        primes = await client.call_tool("count_primes", {"limit": 2_000_000, "chunks": 8})
        compared = await client.call_tool("compare_documents", {"left": "redis.txt", "right": "mcp.txt"})
    assert primes.structured_content == {"limit": 2_000_000, "primes": 148_933, "largest": 1_999_993}
    assert compared.structured_content is not None and compared.structured_content["left"]["document"] == "redis.txt"


def test_only_part_functions_of_the_job_modules_can_be_named_on_the_broker() -> None:
    from mcp_jobs import JobError
    from mcp_jobs.fanout import resolve

    assert resolve("tests.jobs:pid_part", ["tests.jobs"]).__name__ == "pid_part"
    for ref in ["tests.jobs:os.system", "tests.jobs:JobError", "os:system", "tests.jobs:job"]:
        with pytest.raises(JobError):
            resolve(ref, ["tests.jobs"])


@pytest.mark.cluster
async def test_a_job_can_fan_out_twice(stack: Stack) -> None:
    async with Client(stack.http_url) as client:
        result = await client.call_tool("fan_twice", {"n": 4})
    assert result.structured_content == {"squares": [0, 1, 4, 9], "second": [0, 1, 2, 3]}, result.content


async def test_parts_whose_worker_is_killed_run_again(stack: Stack) -> None:
    """A worker killed outright (no warm shutdown, no goodbye) while it runs two parts: their
    liveness lapses, the parent claims them again and runs them, and the call returns every part.
    Its own Redis database, so the session's workers (same broker queues) cannot take part."""
    env = stack.env | {
        "MCP_JOBS_REDIS_URL": stack.redis_url.rsplit("/", 1)[0] + "/2",
        "MCP_JOBS_NAMESPACE": f"fan-kill-{uuid.uuid4().hex[:6]}",
        "MCP_JOBS_WORKER_LOST_AFTER": "2",
        "MCP_JOBS_HEARTBEAT_INTERVAL": "0.5",
    }
    keys = Keys(env["MCP_JOBS_NAMESPACE"])
    client = redis.Redis.from_url(env["MCP_JOBS_REDIS_URL"], decode_responses=True)
    parent_worker = start_worker(env, f"fan-parent-{uuid.uuid4().hex[:6]}", concurrency=1)
    port = free_port()
    server = start_http_server(env, port)
    doomed = None
    outcome: dict[str, object] = {}
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp") as mcp, anyio.create_task_group() as tg:

            async def call() -> None:
                outcome["result"] = await mcp.call_tool("fan", {"parts": 4, "delay": 4.0})

            tg.start_soon(call)
            # The parent (the only slot of its worker) claims part 0; then a second worker joins.
            await anyio.to_thread.run_sync(lambda: wait_until(lambda: _claims(client, keys), 30, "the parent's claim"))
            doomed = start_worker(env, f"fan-doomed-{uuid.uuid4().hex[:6]}", concurrency=2)
            await anyio.to_thread.run_sync(
                lambda: wait_until(
                    lambda: len(set(_claims(client, keys).values())) >= 2, 30, "the second worker's claims"
                )
            )
            claims = _claims(client, keys)
            claimed_by_doomed = [part for part, by in claims.items() if by != claims["0"]]
            os.killpg(doomed.pid, signal.SIGKILL)
    finally:
        server.stop()
        parent_worker.stop()
        if doomed is not None:
            doomed.stop()
    result = outcome["result"]
    assert not result.is_error, result.content  # type: ignore[attr-defined]
    assert result.structured_content["order"] == [0, 1, 2, 3]  # type: ignore[attr-defined]
    assert claimed_by_doomed, "the killed worker had claimed parts"
    assert len(result.structured_content["pids"]) == 1, "every part ended up run by the parent's process"  # type: ignore[attr-defined]


def _claims(client: redis.Redis, keys: Keys) -> dict[str, str]:
    """Part index -> who claimed it, for the one fanned-out job of the namespace."""
    for key in client.scan_iter(match=keys.parts("*", 0)):
        fields = client.hgetall(key)
        return {f.removeprefix("claim:"): json.loads(v)["by"] for f, v in fields.items() if f.startswith("claim:")}
    return {}


async def test_part_messages_carry_no_data_and_inspect_shows_none(stack: Stack) -> None:
    """Items stay in Redis: a part's broker message (and so `celery inspect`, Flower) names the
    job, the map and the index only."""
    from mcp_jobs import Settings
    from mcp_jobs.producer import create_producer_app

    settings = Settings(_env_file=None, redis_url=stack.redis_url)  # type: ignore[call-arg]
    app = create_producer_app(settings)
    async with anyio.create_task_group() as tg, Client(stack.http_url) as client:

        async def call() -> None:
            await client.call_tool("fan", {"parts": 6, "delay": 1.0})

        tg.start_soon(call)
        seen: list[dict[str, object]] = []
        with anyio.fail_after(30):
            while not seen:
                active = await anyio.to_thread.run_sync(lambda: app.control.inspect(timeout=1.0).active() or {})
                seen = [t for tasks in active.values() for t in tasks if t.get("name") == "mcp_jobs.part"]
        tg.cancel_scope.cancel()
    for task in seen:
        assert len(task["args"]) == 3, task  # type: ignore[arg-type]
        assert "delay" not in json.dumps(task), "no item (each holds a delay) in what inspect shows"


def test_a_forged_part_message_runs_nothing(stack: Stack) -> None:
    """A message nobody fanned out (or in the old form naming any function and its argument) is
    refused by a real worker: parts run only functions a job passed to `progress.map`."""
    from mcp_jobs import Settings
    from mcp_jobs.producer import create_producer_app

    settings = Settings(_env_file=None, redis_url=stack.redis_url)  # type: ignore[call-arg]
    app = create_producer_app(settings)
    job_id = str(uuid.uuid4())
    app.send_task("mcp_jobs.part", args=(job_id, 0, 0))
    app.send_task("mcp_jobs.part", args=(job_id, 0, 0, "mcp_jobs.examples:_read_data_file", "/etc/hostname"))
    wait_until(
        lambda: any(
            "no such part was fanned out" in line and job_id in line for w in stack.workers for line in w.lines
        ),
        timeout=30,
        what="the forged part refused",
    )
    wait_until(
        lambda: any("TypeError" in line and "part" in line for w in stack.workers for line in w.lines),
        timeout=30,
        what="the old-form forgery refused by the task's signature",
    )
    hostname = Path("/etc/hostname").read_text().strip()
    assert not stack.redis().keys(f"*{job_id}*"), "nothing was recorded for it"
    assert not any(hostname and f"'{hostname}'" in line for w in stack.workers for line in w.lines)


async def test_queued_parts_do_not_count_as_queued_jobs(stack: Stack) -> None:
    """`MCP_JOBS_MAX_QUEUED_JOBS` counts jobs: one admitted job's parts waiting on the queue do
    not make other calls be refused."""
    port = free_port()
    server = start_http_server(stack.env | {"MCP_JOBS_MAX_QUEUED_JOBS": "3"}, port)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with anyio.create_task_group() as tg, Client(url) as client:

            async def fan_out() -> None:
                await client.call_tool("fan", {"parts": 30, "delay": 0.5})

            tg.start_soon(fan_out)
            keys, sync = stack.keys, stack.redis()
            with anyio.fail_after(30):  # the parts are queued and counted
                while int(sync.get(keys.queued_parts("celery")) or 0) < 10 or sync.llen("celery") < 10:
                    await anyio.sleep(0.05)
            other = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
            tg.cancel_scope.cancel()
    finally:
        server.stop()
    assert not other.is_error, other.content


def test_a_map_over_the_parts_limit_fails_before_anything_is_queued() -> None:
    from typing import Any, cast

    from mcp_jobs import JobError
    from mcp_jobs.fanout import PartsContext, run_map

    sent: list[object] = []
    context = PartsContext(
        store=cast(Any, None),
        keys=Keys("t"),
        send=sent.append,
        heartbeats=cast(Any, None),
        lost_after=10,
        ttl=60,
        modules=["tests.jobs"],
        max_parts=3,
    )
    with pytest.raises(JobError, match=r"4 parts is over the limit of 3 \(MCP_JOBS_MAX_PARTS\)"):
        run_map(RecordingProgress(), context, abs, [1, 2, 3, 4], True, str)
    assert sent == []
