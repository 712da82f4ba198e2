"""Bad data from either side, against the real stack: careless job code fails loudly in its job
and never breaks a call; what the server reads from Redis is re-validated; what a caller can make
the server send is capped; a call that ends any way but with its job's outcome cancels the job.
"""

from __future__ import annotations

import json
import math
import socket
import time
import uuid
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from mcp_jobs import Settings
from mcp_jobs._events import JobEvent
from mcp_jobs.registry import load_jobs
from mcp_jobs.server.app import Runtime
from mcp_jobs.server.dispatch import Listeners
from mcp_jobs.server.gate import ProgressUpdate
from tests.conftest import TEST_JOB_MODULES, Stack
from tests.jobs import MISTAKES
from tests.support.helpers import ProgressLog, assert_strictly_increasing, job_id_of, job_keys, wait_for_state
from tests.support.rawclient import call_messages, open_session, tool_call

pytestmark = pytest.mark.anyio

EXPECTED_ERROR = {
    "nan": "unexpected ValueError",
    "inf": "unexpected ValueError",
    "string": "unexpected TypeError",
    "bool": "unexpected TypeError",
    "number-message": "unexpected TypeError",
    "huge-message": "unexpected ValueError",
    "nan-result": "cannot be sent as JSON: Out of range float values are not JSON compliant",
    "object-result": "cannot be sent as JSON: Unable to serialize unknown type",
}


@pytest.mark.parametrize("mistake", MISTAKES)
async def test_a_careless_job_fails_loudly_and_the_call_ends_cleanly(stack: Stack, mistake: str) -> None:
    log = ProgressLog()
    async with Client(stack.http_url) as client:
        result = await client.call_tool("careless", {"mistake": mistake}, progress_callback=log)
        after = await client.call_tool("echo", {"text": "still up", "number": 1, "item": {"name": "x"}})
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and EXPECTED_ERROR[mistake] in text, text
    assert log.values and all(math.isfinite(v) for v in log.values), log.values
    assert_strictly_increasing(log.values)
    assert all(u.message is None or len(u.message) <= 1000 for u in log.updates)
    job_id = job_id_from_error(text)
    assert stack.redis().hget(stack.keys.job(job_id), "state") == "failed", "the job ended, nothing left running"
    assert not after.is_error, "the server stays up"


def job_id_from_error(text: str) -> str:
    return text.rsplit("job id ", 1)[1].split(")")[0]


def test_the_settings_cap_what_a_job_may_send() -> None:
    settings = Settings(_env_file=None, max_message_chars=50)  # type: ignore[call-arg]
    assert settings.max_message_chars == 50 and Settings(_env_file=None).max_message_chars == 1000  # type: ignore[call-arg]


FORGED = [
    '{{"seq":{seq},"attempt":1,"state":"running","progress":NaN,"message":"nan"}}',
    '{{"seq":{seq},"attempt":1,"state":"running","progress":Infinity}}',
    '{{"seq":{seq},"attempt":1,"state":"running","progress":"abc"}}',
    '{{"seq":{seq},"attempt":1,"state":"running","progress":true}}',
    '{{"seq":{seq},"attempt":1,"state":"running","progress":5,"message":12345}}',
    '{{"seq":{seq},"attempt":1,"state":"exploded","progress":5}}',
    '{{"seq":"x{seq}","attempt":1,"state":"running","progress":5}}',
    "[{seq}]",
    "not json {seq}",
]


async def test_malformed_events_on_a_jobs_channel_never_reach_the_client(stack: Stack) -> None:
    tag = f"forged-{uuid.uuid4().hex[:8]}"
    redis = stack.redis()
    messages: list[dict[str, Any]] = []

    async def forge() -> None:
        with anyio.fail_after(20):
            while not (
                keys := [k for k in job_keys(redis, stack.keys) if (redis.hget(k, "message") or "").startswith(tag)]
            ):
                await anyio.sleep(0.02)
        seq = int(redis.hget(keys[0], "seq") or 0)
        reply_to = redis.hget(keys[0], "reply_to")
        assert reply_to, "the job names the reply channel of the server that follows it"
        for template in FORGED:
            forged = f"{keys[0]}\n{template.format(seq=seq + 1)}"
            assert redis.publish(reply_to, forged) == 1, "the server listens on its reply channel"

    async with httpx.AsyncClient(timeout=60) as http:
        headers = await open_session(http, stack.http_url)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(forge)
            body = tool_call(1, "unsafe_steps", {"tag": tag, "steps": 6, "delay": 0.15}, token="tok")
            messages = await call_messages(http, stack.http_url, headers, body)
    notes = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    values = [n["progress"] for n in notes]
    assert values and all(isinstance(v, int | float) and math.isfinite(v) for v in values), notes
    assert_strictly_increasing(values)
    assert all(isinstance(n.get("message", ""), str) for n in notes), notes
    assert messages[-1]["result"]["structuredContent"] == {"result": f"{tag} done"}


def test_snapshots_and_events_are_parsed_strictly() -> None:
    good = {"state": "running", "seq": "3", "progress": "1.5", "total": "", "message": "hi", "attempt": "1"}
    assert JobEvent.from_snapshot(good) == JobEvent(
        seq=3, state=JobEvent.from_snapshot(good).state, progress=1.5, message="hi", attempt=1
    )  # type: ignore[union-attr]
    for field, value in [("progress", "nan"), ("total", "inf"), ("state", "exploded"), ("result", "NaN"), ("seq", "x")]:
        with pytest.raises(ValueError):
            JobEvent.from_snapshot(good | {field: value})
    for template in FORGED:
        with pytest.raises(ValueError):
            JobEvent.from_message(template.format(seq=1))


async def test_an_oversized_progress_token_is_refused_before_anything_is_queued(stack: Stack) -> None:
    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, stack.http_url)
        body = tool_call(1, "sleep_steps", {"steps": 1, "delay": 0}, token="t" * 300)
        messages = await call_messages(http, stack.http_url, headers, body)
        fine = await call_messages(
            http, stack.http_url, headers, tool_call(2, "sleep_steps", {"steps": 1, "delay": 0}, token="t" * 200)
        )
    assert messages[-1]["error"]["code"] == -32602, messages
    assert "progressToken is 302 bytes" in messages[-1]["error"]["message"]
    assert "result" in fine[-1] and not fine[-1]["result"].get("isError"), fine
    assert len(job_keys(redis, stack.keys) - before) == 1, "only the call with a fine token made a job"


async def test_a_call_that_fails_in_the_server_cancels_its_job(stack: Stack) -> None:
    """Not a cancellation, not the job's outcome: a bug on the server's side of the call (here, a
    progress sender that raises). The job must not run on with nobody waiting for it."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        redis_url=stack.redis_url,
        namespace=stack.env["MCP_JOBS_NAMESPACE"],
        job_modules=TEST_JOB_MODULES.split(","),
    )
    jobs = load_jobs(settings.job_modules)
    runtime = Runtime(settings, jobs)
    sent: list[ProgressUpdate] = []

    async def broken_send(update: ProgressUpdate) -> None:
        sent.append(update)
        if update.progress >= 1:
            raise RuntimeError("a bug in the server")

    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    async with runtime.running():
        with pytest.raises(RuntimeError, match="a bug in the server"):
            await runtime.dispatcher.run(jobs["sleep_steps"], {"steps": 100, "delay": 0.1}, Listeners(broken_send))
    (key,) = job_keys(redis, stack.keys) - before
    assert await wait_for_state(redis, key, {"cancelled"}, timeout=10) == "cancelled"
    assert int(float(redis.hget(key, "progress") or 0)) < 20, "stopped early, not run to the end"


async def test_results_keep_their_job_id(stack: Stack) -> None:
    async with Client(stack.http_url) as client:
        result = await client.call_tool("careless", {"mistake": "none"})
    assert not result.is_error and result.structured_content == {"x": 1}
    job_id_of(result)
    assert json.loads(result.content[0].text) == {"x": 1}  # type: ignore[union-attr]


def test_a_large_request_head_is_read_however_its_bytes_arrive(stack: Stack) -> None:
    """A 40 KB head (a big access token, say) sent in 1 KB pieces, as a slow link delivers it:
    h11's own 16 KB limit refused it (400) when it came in pieces and took it when it came in
    one read; the server reads heads up to 64 KB whichever way (`MAX_REQUEST_HEAD`)."""
    port = int(stack.http_url.rsplit(":", 1)[1].split("/")[0])
    head = (f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: {'a' * 40_000}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(head), 1024):
            conn.sendall(head[start : start + 1024])
            time.sleep(0.002)  # shapes the input into separate reads; it waits for nothing
        status_line = conn.makefile("rb").readline()
    assert status_line.startswith(b"HTTP/1.1 200"), status_line
