"""FastMCP's client with tasks turned on, as its documentation has users do it (run by
tests/test_real_task_clients.py in a virtualenv of its own: FastMCP pins its own `mcp`).

    python call.py URL '[{"tool": "slow_compute", "arguments": {"seconds": 0}}, ...]'

Makes the calls in order on one `Client` and prints one JSON list: per call, the text of its
content, `isError` and the progress values its progress handler saw, or the error that ended it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import fastmcp_tasks  # noqa: F401  (importing it is what turns on the client's task support)
from fastmcp import Client


async def main(url: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    outcomes: list[dict[str, Any]] = []
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(url, progress_handler=on_progress) as client:
        for call in calls:
            seen.clear()
            try:
                result = await client.call_tool(call["tool"], call["arguments"], raise_on_error=False)
            except Exception as exc:  # the test asserts on whatever ended the call
                outcomes.append({"error": f"{type(exc).__name__}: {exc}", "progress": list(seen)})
                continue
            texts = [block.text for block in result.content if block.type == "text"]
            outcomes.append({"text": "".join(texts), "is_error": result.is_error, "progress": list(seen)})
    return outcomes


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))))
