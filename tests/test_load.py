"""200 concurrent calls with progress over two worker processes: none lost, none mixed up, and the
progress rules hold on every call. (`bench/load.py` runs the 1,000-call version.)"""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from tests.conftest import Stack
from tests.helpers import ProgressLog, assert_strictly_increasing

pytestmark = pytest.mark.anyio

CALLS = 200
STEPS = 5


async def test_two_hundred_concurrent_calls_each_get_their_own_progress_and_result(stack: Stack) -> None:
    logs = {f"call-{i:03d}": ProgressLog() for i in range(CALLS)}
    results: dict[str, object] = {}
    clients = [Client(stack.http_url, mode=mode) for mode in ("legacy", "auto", "legacy", "auto")]
    with anyio.fail_after(120):
        async with clients[0], clients[1], clients[2], clients[3], anyio.create_task_group() as tg:
            for i, (tag, log) in enumerate(logs.items()):

                async def call(tag: str = tag, log: ProgressLog = log, client: Client = clients[i % 4]) -> None:
                    arguments = {"tag": tag, "steps": STEPS, "delay": 0.01}
                    results[tag] = await client.call_tool("safe_steps", arguments, progress_callback=log)

                tg.start_soon(call)
    assert len(results) == CALLS
    for tag, result in results.items():
        assert not result.is_error, result.content  # type: ignore[attr-defined]
        assert result.structured_content == {"result": f"{tag} done after attempt 1"}  # type: ignore[attr-defined]
        log = logs[tag]
        assert log.updates, tag
        assert all(u.message and (u.message.startswith(f"{tag}:") or u.message.startswith("queued")) for u in log.updates)
        assert_strictly_increasing(log.values)
        assert log.updates[-1].progress == STEPS and log.updates[-1].message == f"{tag}: step {STEPS}"
