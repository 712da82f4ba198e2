"""200 concurrent calls with progress over two worker processes: none lost, none mixed up, and the
progress rules hold on every call. (`bench/load.py` runs the 1,000-call version.)

SDK clients in both protocol eras, and the same load read on the raw wire (2025-11-25 sessions),
where the order of progress and result is visible byte for byte.
"""

from __future__ import annotations

import anyio
import httpx
import pytest
from mcp import Client

from tests.conftest import Stack
from tests.support.helpers import ProgressLog, assert_strictly_increasing
from tests.support.rawclient import call_messages, open_session, tool_call, wire_problems

pytestmark = pytest.mark.anyio

CALLS = 200
STEPS = 5


async def test_two_hundred_concurrent_calls_each_get_their_own_progress_and_result(stack: Stack) -> None:
    logs = {f"call-{i:03d}": ProgressLog() for i in range(CALLS)}
    results: dict[str, object] = {}
    with anyio.fail_after(120):
        modern, legacy = Client(stack.http_url, mode="auto"), Client(stack.http_url, mode="legacy")
        async with modern as one, legacy as two, anyio.create_task_group() as tg:
            for i, (tag, log) in enumerate(logs.items()):

                async def call(tag: str = tag, log: ProgressLog = log, client: Client = (one, two)[i % 2]) -> None:
                    arguments = {"tag": tag, "steps": STEPS, "delay": 0.01}
                    results[tag] = await client.call_tool("safe_steps", arguments, progress_callback=log)

                tg.start_soon(call)
    assert len(results) == CALLS
    for tag, result in results.items():
        assert not result.is_error, result.content  # type: ignore[attr-defined]
        assert result.structured_content == {"result": f"{tag} done after attempt 1"}  # type: ignore[attr-defined]
        log = logs[tag]
        await log.wait_for(STEPS, timeout=5)  # callbacks run in tasks of their own
        assert all(
            u.message and (u.message.startswith(f"{tag}:") or u.message.startswith("queued")) for u in log.updates
        )
        assert_strictly_increasing(log.values)
        assert log.updates[-1].progress == STEPS and log.updates[-1].message == f"{tag}: step {STEPS}"


async def test_two_hundred_concurrent_legacy_calls_on_the_wire(stack: Stack) -> None:
    problems: list[str] = []
    with anyio.fail_after(120):
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=CALLS + 10)) as http:
            sessions = [await open_session(http, stack.http_url) for _ in range(4)]

            async def call(i: int) -> None:
                body = tool_call(i + 1, "tagged", {"tag": f"w{i}", "steps": STEPS}, f"w{i}")
                problems.extend(
                    wire_problems(f"w{i}", await call_messages(http, stack.http_url, sessions[i % 4], body), STEPS)
                )

            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    tg.start_soon(call, i)
    assert not problems, problems[:10]
