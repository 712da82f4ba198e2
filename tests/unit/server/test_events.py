"""The events channel's messages: what a server or a worker publishes, and what is refused."""

from __future__ import annotations

import pytest
from mcp.server.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged

from mcp_jobs.server.events import decode, encode


@pytest.mark.parametrize(
    "event", [ToolsListChanged(), PromptsListChanged(), ResourcesListChanged(), ResourceUpdated(uri="test://x")]
)
def test_an_event_goes_through_the_channel_unchanged(event: object) -> None:
    assert decode(encode(event)) == event  # type: ignore[arg-type]


def test_what_a_worker_publishes_is_read() -> None:
    assert decode('{"method": "notifications/tools/list_changed", "params": {}}') == ToolsListChanged()


@pytest.mark.parametrize("raw", ["", "not json", "[]", '{"method": "tools/call"}', '{"params": {}}'])
def test_anything_else_is_ignored(raw: str) -> None:
    assert decode(raw) is None
