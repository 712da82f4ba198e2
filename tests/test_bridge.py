"""End to end: real Redis, real Celery worker processes, the real server, a real MCP client.

Every test runs over Streamable HTTP in both protocol eras (2026-07-28 via `mode="auto"`,
2025-11-25 via `mode="legacy"`) and over stdio.
"""

from __future__ import annotations

import base64
import time

import mcp_types as types
import pytest

from tests.conftest import PROGRESS_RATE, Connect, Stack
from tests.support.helpers import (
    ProgressLog,
    assert_strictly_increasing,
    cancel_once_it_reports,
    job_id_of,
    job_id_of_key,
    job_keys,
    wait_for_state,
)

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]


async def test_progress_and_result(connect: Connect) -> None:
    log = ProgressLog()
    async with connect() as client:
        result = await client.call_tool("sleep_steps", {"steps": 3, "delay": 0.15}, progress_callback=log)
    assert not result.is_error, result.content
    assert result.structured_content == {"steps": 3, "slept_seconds": pytest.approx(0.45)}
    assert isinstance(result.content[0], types.TextContent) and '"steps": 3' in result.content[0].text
    assert [(u.progress, u.total, u.message) for u in log.updates] == [
        (0, 3, "starting 3 steps"),
        (1, 3, "step 1/3 done"),
        (2, 3, "step 2/3 done"),
        (3, 3, "step 3/3 done"),
    ]
    job_id_of(result)


async def test_same_result_without_progress_token_and_no_notifications(connect: Connect) -> None:
    seen: list[object] = []

    async def record(message: object) -> None:
        if isinstance(message, types.ProgressNotification):
            seen.append(message)

    arguments = {"texts": ["alpha beta", "beta gamma gamma", ""], "top": 2}
    async with connect(message_handler=record) as client:
        quiet = await client.call_tool("process_documents", arguments)
        log = ProgressLog()
        loud = await client.call_tool("process_documents", arguments, progress_callback=log)
        await log.wait_for(4)
    assert not quiet.is_error, quiet.content
    assert quiet.structured_content == loud.structured_content
    assert quiet.structured_content == {
        "documents": 2,
        "skipped": ["text[2]: 0 words, fewer than 1"],
        "words": 5,
        "unique_terms": 3,
        "top_terms": [{"term": "beta", "count": 2}, {"term": "gamma", "count": 2}],
        "characters": 26,
    }
    # Every notification belongs to the one call that sent a progress token.
    tokens = {n.params.progress_token for n in seen}  # type: ignore[attr-defined]
    assert len(tokens) == 1 and len(seen) >= 1, seen


async def test_arguments_survive_the_trip(connect: Connect) -> None:
    arguments = {"text": "héllo ✓", "number": 2**40, "item": {"name": "x", "tags": ["a", "b"]}, "maybe": 0.5}
    async with connect() as client:
        result = await client.call_tool("echo", arguments)
        async_result = await client.call_tool("async_steps", {"steps": 2})
    assert result.structured_content == arguments
    assert async_result.structured_content == {"result": 20}


async def test_invalid_arguments_are_rejected_before_anything_is_queued(connect: Connect, stack: Stack) -> None:
    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    broker = stack.broker()
    queued_before = broker.llen("celery")
    async with connect() as client:
        for arguments in ({"steps": 0}, {"steps": "many"}, {"delay": -1}, {"steps": 10**9}):
            result = await client.call_tool("sleep_steps", arguments)
            assert result.is_error, arguments
            text = result.content[0].text  # type: ignore[union-attr]
            assert "validation error" in text and "sleep_steps" in text
        missing = await client.call_tool("search_logs", {})
        assert missing.is_error and "query" in missing.content[0].text  # type: ignore[union-attr]
        ok = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
    assert not ok.is_error
    assert job_keys(redis, stack.keys) - before == {stack.keys.job(job_id_of(ok))}
    assert broker.llen("celery") == queued_before


async def test_job_error_reaches_the_model(connect: Connect, stack: Stack) -> None:
    async with connect() as client:
        result = await client.call_tool("fail_politely", {"reason": "the folder /data/in is empty"})
        after = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
    assert result.is_error
    assert "the folder /data/in is empty" in result.content[0].text  # type: ignore[union-attr]
    # A failed call names its job as a successful one does (for `mcp-jobs jobs JOB_ID`).
    assert stack.redis().hget(stack.keys.job(job_id_of(result)), "state") == "failed"
    assert not after.is_error, "the server must keep serving after a failed job"


async def test_unexpected_error_names_type_and_job_but_hides_text(connect: Connect, stack: Stack) -> None:
    async with connect() as client:
        result = await client.call_tool("crash", {"secret": "hunter2-token"})
        after = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error
    assert "KeyError" in text and "crash" in text and "hunter2-token" not in text
    redis = stack.redis()
    failed = [k for k in job_keys(redis, stack.keys) if redis.hget(k, "job") == "crash"]
    assert any(job_id_of_key(k) in text for k in failed), text
    assert any("KeyError: 'hunter2-token'" in w.output(500) for w in stack.workers), (
        "the traceback is in the worker log"
    )
    assert not after.is_error


async def test_progress_is_rate_limited_and_ends_with_the_latest_state(connect: Connect) -> None:
    log = ProgressLog()
    steps = 60
    async with connect() as client:
        started = time.monotonic()
        result = await client.call_tool("burst", {"steps": steps, "interval": 0.02}, progress_callback=log)
        elapsed = time.monotonic() - started
    assert result.structured_content == {"result": steps}
    assert_strictly_increasing(log.values)
    assert log.values[-1] == steps, "the latest state must be delivered before the result"
    assert log.updates[-1].message == f"item {steps}/{steps}"
    # One notification per 1/rate seconds at most, plus the final flush.
    assert len(log.updates) <= elapsed * PROGRESS_RATE + 2, (len(log.updates), elapsed)
    assert len(log.updates) < steps, "updates were not coalesced"


async def test_non_increasing_progress_is_dropped(connect: Connect) -> None:
    log = ProgressLog()
    values = [1, 3, 2, 3, 5, 4, 6]
    async with connect() as client:
        result = await client.call_tool("wobbly", {"values": values, "interval": 0.08}, progress_callback=log)
    assert result.structured_content == {"result": values}
    assert_strictly_increasing(log.values)
    assert set(log.values) <= {1, 3, 5, 6} and log.values[-1] == 6


async def test_cancelling_the_call_stops_the_job(connect: Connect, stack: Stack) -> None:
    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    log = ProgressLog()
    async with connect() as client:
        await cancel_once_it_reports(client, "sleep_steps", {"steps": 100, "delay": 0.1}, log, at=2)
        cancelled_at = time.monotonic()
        (key,) = job_keys(redis, stack.keys) - before
        state = await wait_for_state(redis, key, {"cancelled", "succeeded", "failed"}, timeout=10)
        took = time.monotonic() - cancelled_at
        after = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
    assert state == "cancelled"
    assert took < 3.0, f"the job took {took:.2f} s to stop"
    assert float(redis.hget(key, "progress") or 0) < 100
    assert not after.is_error, "the connection and server keep working after a cancel"


async def test_a_job_returns_an_image_and_a_file_beside_its_text(connect: Connect) -> None:
    async with connect() as client:
        result = await client.call_tool("log_report", {"query": "isr4431"})
    assert not result.is_error, result.content
    text, image, csv = result.content
    assert isinstance(text, types.TextContent) and "severity 2: 2" in text.text
    assert isinstance(image, types.ImageContent) and image.mime_type == "image/png"
    assert base64.b64decode(image.data).startswith(b"\x89PNG\r\n\x1a\n")
    assert isinstance(csv, types.EmbeddedResource) and csv.resource.mime_type == "text/csv"
    assert csv.resource.text.splitlines()[0] == "level,file,count"  # type: ignore[union-attr]
    assert result.structured_content is None
