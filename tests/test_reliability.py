"""Nothing is lost to pub/sub's at-most-once delivery, and one connection serves every call.

These tests drive the server's `Dispatcher` in-process against the real Redis (and the real
worker where a job must run), so they can drop or delay messages deliberately.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError

from mcp_jobs._events import JobState
from mcp_jobs._store import JobStore
from mcp_jobs.server.app import REDIS_CLIENT_NAME, Runtime
from mcp_jobs.server.dispatch import Listeners
from mcp_jobs.server.gate import ProgressUpdate
from mcp_jobs.settings import Settings
from tests.conftest import TEST_JOB_MODULES, Stack
from tests.support.helpers import assert_strictly_increasing, job_id_of_key, wait_for_state
from tests.support.processes import wait_until

pytestmark = pytest.mark.anyio


def _settings(stack: Stack, poll: float) -> Settings:
    return Settings(
        redis_url=stack.redis_url,
        namespace=stack.keys.namespace,
        job_modules=TEST_JOB_MODULES.split(","),
        snapshot_poll_interval=poll,
        progress_rate=1000,
    )


@pytest.fixture
async def runtime(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    poll = getattr(request, "param", 30.0)
    rt = Runtime(_settings(stack, poll))
    async with rt.running():
        yield rt


@pytest.fixture
def store(stack: Stack) -> JobStore:
    return JobStore(redis.Redis.from_url(stack.redis_url), stack.keys, ttl=600)


def test_snapshot_and_event_are_written_together(stack: Stack, store: JobStore) -> None:
    job_id = str(uuid.uuid4())
    client = stack.redis()
    pubsub = client.pubsub()
    pubsub.subscribe(stack.keys.job(job_id))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    first = store.write(job_id, JobState.RUNNING, progress=1, total=4, message="one")
    event = json.loads(pubsub.get_message(timeout=5)["data"])
    snapshot = client.hgetall(stack.keys.job(job_id))
    assert abs(event.pop("at") - float(snapshot["updated_at"])) < 1e-6, "the worker's time, in both"
    assert event == {"seq": first.seq, "state": "running", "attempt": 0, "progress": 1, "total": 4, "message": "one"}
    assert snapshot["seq"] == str(first.seq) and snapshot["message"] == "one" and float(snapshot["progress"]) == 1
    assert store.write(job_id, JobState.SUCCEEDED, result={"ok": []}).seq == first.seq + 1
    done = json.loads(pubsub.get_message(timeout=5)["data"])
    assert done["state"] == "succeeded" and done["result"] == {"ok": []}, "a small result rides along"
    assert json.loads(client.hget(stack.keys.job(job_id), "result")) == {"ok": []}
    late = store.write(job_id, JobState.RUNNING, progress=9)
    assert late.seq == 0, "nothing may follow a terminal state"
    assert pubsub.get_message(timeout=0.3) is None
    assert client.hget(stack.keys.job(job_id), "state") == "succeeded"
    assert 0 < client.ttl(stack.keys.job(job_id)) <= 600


def test_the_reply_channel_gets_every_write_after_the_one_that_names_it(stack: Stack, store: JobStore) -> None:
    job_id, reply_to = str(uuid.uuid4()), stack.keys.replies(uuid.uuid4().hex)
    client = stack.redis()
    pubsub = client.pubsub()
    pubsub.subscribe(reply_to)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    store.write(job_id, JobState.QUEUED, extra={"job": "echo", "reply_to": reply_to})
    running = store.write(job_id, JobState.RUNNING, progress=1)
    store.write(job_id, JobState.SUCCEEDED, result=1)
    messages = [pubsub.get_message(timeout=5) for _ in range(2)]
    assert pubsub.get_message(timeout=0.3) is None, "the creating write is not echoed to its creator"
    keys, events = zip(*(m["data"].split("\n", 1) for m in messages if m), strict=True)
    assert keys == (stack.keys.job(job_id),) * 2
    assert [json.loads(e)["seq"] for e in events] == [running.seq, running.seq + 1]
    pubsub.close()


async def test_a_job_that_finished_before_anyone_listened_still_returns(
    stack: Stack, runtime: Runtime, store: JobStore
) -> None:
    job_id = str(uuid.uuid4())
    store.write(job_id, JobState.QUEUED, extra={"job": "echo"})
    arguments = {"text": "early", "number": 1, "item": {"name": "n"}}
    runtime.celery.send_task("mcp_jobs.echo", args=(job_id, arguments), task_id=job_id)
    await wait_for_state(stack.redis(), stack.keys.job(job_id), {"succeeded"}, timeout=20)
    with anyio.fail_after(2):  # far below the 30 s safety poll: the snapshot is read on subscribe
        result = await runtime.dispatcher.follow(job_id, Listeners())
    assert result["text"] == "early"


async def _follow_in_background(runtime: Runtime, job_id: str, tg: anyio.abc.TaskGroup) -> dict[str, object]:
    outcome: dict[str, object] = {}
    sent: list[ProgressUpdate] = []

    async def send(update: ProgressUpdate) -> None:
        sent.append(update)

    async def follow() -> None:
        try:
            outcome["result"] = await runtime.dispatcher.follow(job_id, Listeners(send))
        except ToolError as exc:
            outcome["error"] = str(exc)
        outcome["sent"] = sent

    tg.start_soon(follow)
    # Until a follower runs, the follow has not read its first snapshot: a write made before
    # that would be seen in it, not as the later change a test makes it to be.
    with anyio.fail_after(5):
        while not runtime.dispatcher._followers:
            await anyio.sleep(0.01)
    return outcome


async def test_a_sequence_gap_triggers_a_snapshot_read(stack: Stack, runtime: Runtime, store: JobStore) -> None:
    client = stack.redis()
    key = stack.keys.job(str(uuid.uuid4()))
    job_id = job_id_of_key(key)
    store.write(job_id, JobState.QUEUED, extra={"job": "echo"})
    async with anyio.create_task_group() as tg:
        outcome = await _follow_in_background(runtime, job_id, tg)
        # The job finishes, but its events are lost: only a later-numbered event gets through.
        client.hset(key, mapping={"state": "succeeded", "seq": 5, "result": json.dumps({"via": "snapshot"})})
        client.publish(key, json.dumps({"seq": 4, "state": "running", "progress": 3}))
        with anyio.fail_after(3):  # far below the 30 s safety poll
            while "sent" not in outcome:
                await anyio.sleep(0.01)
    assert outcome["result"] == {"via": "snapshot"}


@pytest.mark.parametrize("runtime", [0.3], indirect=True)
async def test_a_lost_final_event_is_caught_by_the_safety_poll(stack: Stack, runtime: Runtime, store: JobStore) -> None:
    client = stack.redis()
    job_id = str(uuid.uuid4())
    key = stack.keys.job(job_id)
    store.write(job_id, JobState.QUEUED, extra={"job": "echo"})
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        outcome = await _follow_in_background(runtime, job_id, tg)
        store.write(job_id, JobState.RUNNING, progress=1, message="working")
        client.hset(key, mapping={"state": "failed", "seq": 9, "error": "disk full on worker-3"})
    assert time.monotonic() - started < 3
    assert outcome["error"] == "disk full on worker-3"
    assert [u.progress for u in outcome["sent"]] == [1]  # type: ignore[union-attr]


@pytest.mark.parametrize("runtime", [0.2], indirect=True)
async def test_a_snapshot_ahead_of_the_events_still_delivers_the_last_progress(
    stack: Stack, runtime: Runtime, store: JobStore
) -> None:
    """A poll can find a job finished while its last progress events are still on the way: the
    call must still show the job's last progress before the result."""
    job_id = str(uuid.uuid4())
    store.write(job_id, JobState.QUEUED, extra={"job": "echo"})
    async with anyio.create_task_group() as tg:
        outcome = await _follow_in_background(runtime, job_id, tg)
        store.write(job_id, JobState.RUNNING, progress=1, total=5, message="step 1")
        # Steps 2-5 and the result land in the snapshot, their events not (yet) delivered.
        stack.redis().hset(
            stack.keys.job(job_id),
            mapping={"state": "succeeded", "seq": 20, "progress": 5, "total": 5, "message": "step 5", "result": "7"},
        )
    assert outcome["result"] == 7
    assert [(u.progress, u.total, u.message) for u in outcome["sent"]][-1] == (5, 5, "step 5")  # type: ignore[union-attr]


async def test_the_listener_reconnects_and_catches_up(stack: Stack, runtime: Runtime) -> None:
    admin = stack.redis()
    sent: list[ProgressUpdate] = []
    first = anyio.Event()

    async def send(update: ProgressUpdate) -> None:
        sent.append(update)
        first.set()

    spec = runtime.jobs["sleep_steps"]
    async with anyio.create_task_group() as tg:
        outcome: dict[str, object] = {}

        async def run() -> None:
            outcome["result"] = await runtime.dispatcher.run(spec, {"steps": 8, "delay": 0.15}, Listeners(send))

        tg.start_soon(run)
        with anyio.fail_after(20):
            await first.wait()
        killed = admin.client_kill_filter(_type="pubsub")
        assert killed >= 1
    _job_id, result = outcome["result"]  # type: ignore[misc]
    assert result == {"steps": 8, "slept_seconds": pytest.approx(1.2)}
    assert_strictly_increasing([u.progress for u in sent])
    assert sent[-1].progress == 8


async def test_one_pubsub_connection_serves_every_call(stack: Stack) -> None:
    """Calls in flight need no subscription of their own: the jobs a server creates publish to its
    reply channel, on the one pub/sub connection it has."""
    admin = stack.redis()
    calls = 40

    def replying_jobs_in_flight() -> int:
        jobs = (key for key in admin.scan_iter(stack.keys.job("*")) if admin.type(key) == "hash")
        states = (admin.hmget(key, "state", "reply_to") for key in jobs)
        return sum(1 for state, reply_to in states if state in ("queued", "running") and reply_to)

    async with Client(stack.http_url, mode="legacy") as client, anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(client.call_tool, "sleep_steps", {"steps": 1, "delay": 0.5})
        await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: replying_jobs_in_flight() >= calls // 2, timeout=30, what="calls in flight")
        )
        job_channels = admin.pubsub_channels(stack.keys.job("*"))
        reply_channels = admin.pubsub_channels(stack.keys.replies("*"))
        server_pubsubs = [c for c in admin.client_list(_type="pubsub") if c["name"] == REDIS_CLIENT_NAME]
        server_connections = [c for c in admin.client_list() if c["name"] == REDIS_CLIENT_NAME]
    assert job_channels == [], "no subscription per call"
    assert len(reply_channels) >= 1
    assert len(server_pubsubs) == 1, server_pubsubs
    assert len(server_connections) <= 51
