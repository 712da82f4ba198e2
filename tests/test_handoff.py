"""The handoff, end to end: a call still running after its job's `handoff_after` returns and
leaves the job running; `job_status`, `job_result` and `job_cancel` follow it."""

from __future__ import annotations

import uuid

import anyio
import pytest
from mcp import Client

from tests.conftest import Connect, Stack
from tests.support.helpers import ProgressLog, job_id_of, wait_for_state

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]


async def test_a_long_call_is_handed_off_and_followed_to_its_result(connect: Connect, stack: Stack) -> None:
    log = ProgressLog()
    async with connect() as client:
        handed = await client.call_tool("long_haul", {"steps": 25, "delay": 0.1}, progress_callback=log)
        text = handed.content[0].text  # type: ignore[union-attr]
        assert handed.is_error and "goes on in the background" in text and "not a failure" in text, text
        job_id = job_id_of(handed)
        assert job_id in text and log.values, "progress flowed until the handoff"
        status = await client.call_tool("job_status", {"job_id": job_id})
        assert status.structured_content is not None
        assert status.structured_content["state"] == "running" and status.structured_content["job"] == "long_haul"
        assert status.structured_content["status"].startswith("[")
        result = await client.call_tool("job_result", {"job_id": job_id, "wait": 20})
    assert not result.is_error and result.structured_content == {"result": 25}


async def test_a_short_call_is_not_handed_off(stack: Stack) -> None:
    async with Client(stack.http_url) as client:
        result = await client.call_tool("long_haul", {"steps": 2, "delay": 0.05})
    assert not result.is_error and result.structured_content == {"result": 2}


async def test_a_handed_off_job_can_be_cancelled_and_unknown_ids_are_refused(stack: Stack) -> None:
    async with Client(stack.http_url) as client:
        handed = await client.call_tool("long_haul", {"steps": 200, "delay": 0.1})
        job_id = job_id_of(handed)
        waited = await client.call_tool("job_result", {"job_id": job_id, "wait": 0.2})
        assert waited.is_error and "still running" in waited.content[0].text  # type: ignore[union-attr]
        cancelled = await client.call_tool("job_cancel", {"job_id": job_id})
        assert not cancelled.is_error
        redis = stack.redis()
        assert await wait_for_state(redis, stack.keys.job(job_id), {"cancelled"}, timeout=5) == "cancelled"
        with anyio.fail_after(10):
            final = await client.call_tool("job_result", {"job_id": job_id})
        unknown = await client.call_tool("job_status", {"job_id": str(uuid.uuid4())})
        # Not job ids at all: refused before Redis is asked (a liveness key is a string, not a hash).
        not_ids = [await client.call_tool("job_status", {"job_id": bad}) for bad in ("not-a-job", f"{job_id}:alive")]
    assert final.is_error and "cancelled" in final.content[0].text  # type: ignore[union-attr]
    assert unknown.is_error and "No job with id" in unknown.content[0].text  # type: ignore[union-attr]
    for refused in not_ids:
        text = refused.content[0].text  # type: ignore[union-attr]
        assert refused.is_error and "job_id" in text and "WRONGTYPE" not in text, text
    assert "WRONGTYPE" not in stack.server.output(20_000)
