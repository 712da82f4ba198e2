"""A job's watch holds a bounded number of events: past it, they collapse into one snapshot read."""

from __future__ import annotations

import pytest

from mcp_jobs._events import JobEvent, JobState
from mcp_jobs.server.listener import RESYNC, JobWatch

pytestmark = pytest.mark.anyio


async def test_a_full_watch_collapses_into_one_resync() -> None:
    watch = JobWatch("ch", capacity=3)
    for seq in range(1, 4):
        watch.put(JobEvent(seq=seq, state=JobState.RUNNING, progress=seq))
    assert [(await watch.next(0.1)).seq for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
    for seq in range(4, 10):  # a fast job, a slow reader
        watch.put(JobEvent(seq=seq, state=JobState.RUNNING, progress=seq))
    items = [await watch.next(0.05) for _ in range(4)]
    assert RESYNC in items and len([i for i in items if i is not None]) <= 3, items
    assert items[-1] is None, "nothing beyond the capacity was kept"
