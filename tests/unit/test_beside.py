"""`beside`: a handler awaited with followers running until it ends, its error raised as itself."""

from __future__ import annotations

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from mcp_jobs.server.beside import beside

pytestmark = pytest.mark.anyio


async def test_the_bodys_error_is_raised_as_itself_not_grouped() -> None:
    async def follower() -> None:
        await anyio.sleep_forever()

    async def refuse() -> None:
        raise MCPError(-32021, "missing capability")

    with pytest.raises(MCPError) as raised:
        await beside([follower], refuse)
    assert raised.value.error.code == -32021


async def test_followers_run_beside_the_body_and_are_cancelled_when_it_ends() -> None:
    started, cancelled = anyio.Event(), anyio.Event()

    async def follower() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async def body() -> str:
        await started.wait()
        return "done"

    with anyio.fail_after(5):
        assert await beside([follower], body) == "done"
    assert cancelled.is_set()
