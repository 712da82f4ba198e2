"""How a job gets on the broker: with its first snapshot, in one script, when the broker is the
snapshots' Redis; through Celery's `send_task` otherwise. Both with real workers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from mcp import Client

from mcp_jobs._events import JobState
from mcp_jobs.server.app import Runtime
from mcp_jobs.server.dev_redis import free_port
from mcp_jobs.server.enqueue import TaskMessages, arguments_repr
from mcp_jobs.server.snapshots import AsyncJobStore
from mcp_jobs.settings import Settings
from tests.conftest import Stack
from tests.support.processes import start_http_server, start_worker

pytestmark = pytest.mark.anyio


def _without_delivery_tag(raw: bytes | str) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(raw)
    assert envelope["properties"].pop("delivery_tag"), "kombu tags every message"
    return envelope


async def test_the_message_is_the_one_send_task_would_queue(stack: Stack) -> None:
    settings = Settings(redis_url=stack.redis_url, namespace=stack.keys.namespace, job_modules=[])
    celery = Runtime(settings, jobs={}).celery
    queue, job_id = f"nobody-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    arguments = {"text": "same", "token": "s3cret-value", "items": [1, 2.5, None]}
    client = stack.redis()
    argsrepr = arguments_repr(job_id, arguments)
    celery.send_task("mcp_jobs.echo", args=(job_id, arguments), task_id=job_id, queue=queue, argsrepr=argsrepr)
    (queued,) = client.lrange(queue, 0, -1)

    message = await TaskMessages(celery).message("mcp_jobs.echo", job_id, arguments, queue)

    assert message is not None and message.key == queue
    envelope, sent = _without_delivery_tag(message.payload), _without_delivery_tag(queued)
    assert sent["properties"].pop("argsrepr") == argsrepr, "send_task copies its options into the properties"
    assert envelope == sent
    assert envelope["headers"]["argsrepr"] == f"('{job_id}', {{'text': ..., 'token': ..., 'items': ...}})"
    assert "s3cret" not in json.dumps(envelope["headers"]), "Flower and worker logs see names, not values"
    client.delete(queue)


async def test_the_first_write_queues_the_job_and_only_once(stack: Stack) -> None:
    settings = Settings(redis_url=stack.redis_url, namespace=stack.keys.namespace, job_modules=[])
    runtime = Runtime(settings, jobs={})
    queue, job_id = f"nobody-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    message = await TaskMessages(runtime.celery).message("mcp_jobs.echo", job_id, {}, queue)
    async with runtime.running():
        store: AsyncJobStore = runtime.dispatcher.store
        created = await store.write(job_id, JobState.QUEUED, extra={"job": "echo"}, enqueue=message)
        # A write the script refuses (the job is no longer queued) pushes nothing.
        await store.write(job_id, JobState.CANCELLED)
        refused = await store.write(job_id, JobState.QUEUED, expect=JobState.QUEUED, enqueue=message)
    client = stack.redis()
    assert created.seq == 1 and refused.seq == 0
    assert client.llen(queue) == 1, "queued with the snapshot, and not again by a refused write"
    client.delete(queue)


async def test_a_broker_of_its_own_gets_jobs_through_send_task(stack: Stack) -> None:
    """A second Redis database as the broker: the server must queue there (through Celery), not
    on the snapshots' Redis, or this call never reaches the worker that consumes the broker."""
    broker = stack.redis_url.rsplit("/", 1)[0] + "/1"
    env = stack.env | {"MCP_JOBS_BROKER_URL": broker, "MCP_JOBS_NAMESPACE": f"own-broker-{uuid.uuid4().hex[:6]}"}
    worker = start_worker(env, f"own-broker-{uuid.uuid4().hex[:6]}", concurrency=1)
    port = free_port()
    server = start_http_server(env, port)
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("echo", {"text": "via send_task", "number": 2, "item": {"name": "n"}})
        assert not result.is_error, result
        assert result.structured_content is not None and result.structured_content["text"] == "via send_task"
    finally:
        server.stop()
        worker.stop()
