"""The progress gate's rules, with a hand-driven clock."""

from __future__ import annotations

import itertools

from mcp_jobs.server.gate import ProgressGate, ProgressUpdate


def test_first_update_goes_at_once_then_one_per_interval() -> None:
    gate = ProgressGate(min_interval=0.1)
    assert gate.offer(ProgressUpdate(1, 10, "a"))
    assert gate.due(0.0) == ProgressUpdate(1, 10, "a")
    assert gate.offer(ProgressUpdate(2, 10, "b"))
    assert gate.due(0.05) is None
    assert gate.next_due() == 0.1
    assert gate.offer(ProgressUpdate(3, 10, "c"))
    assert gate.due(0.1) == ProgressUpdate(3, 10, "c"), "coalesced to the latest"
    assert gate.due(0.5) is None, "nothing pending"


def test_values_that_do_not_increase_are_dropped() -> None:
    gate = ProgressGate(min_interval=0)
    sent = []
    for value in [1, 1, 3, 2, 3, 4]:
        if gate.offer(ProgressUpdate(value)):
            sent.append(gate.due(float(value)))
    assert [u.progress for u in sent if u] == [1, 3, 4]


def test_drain_flushes_the_pending_update_then_nothing_more() -> None:
    gate = ProgressGate(min_interval=10)
    gate.offer(ProgressUpdate(1))
    assert gate.due(0) is not None
    gate.offer(ProgressUpdate(2, message="last"))
    assert gate.due(1) is None
    assert gate.drain(1) == ProgressUpdate(2, message="last")
    assert not gate.offer(ProgressUpdate(3))
    assert gate.due(100) is None and gate.next_due() is None
    assert gate.drain(100) is None


def test_notices_keep_values_rising_without_losing_the_jobs_messages() -> None:
    gate = ProgressGate(min_interval=0)
    queued = gate.notice("queued", 0)
    assert queued is not None and queued.progress == 0 and queued.message == "queued"
    gate.offer(ProgressUpdate(0, 3, "starting"))
    first = gate.due(1)
    assert first is not None and first.progress > 0 and first.message == "starting", "nudged, not dropped"
    gate.offer(ProgressUpdate(1, 3, "step 1"))
    assert gate.due(2) == ProgressUpdate(1, 3, "step 1"), "values above the client's are the job's own"
    alive = gate.notice("still running", 3)
    assert alive is not None and 1 < alive.progress < 1.001 and alive.total == 3


def test_a_restarted_job_counts_afresh_but_the_client_only_sees_increases() -> None:
    gate = ProgressGate(min_interval=0)
    sent = []
    for value in [1, 2, 3]:
        gate.offer(ProgressUpdate(value, 4, f"a{value}"))
        sent.append(gate.due(value))
    gate.restart()
    for value in [0, 1, 2, 3, 4]:
        assert gate.offer(ProgressUpdate(value, 4, f"b{value}"))
        sent.append(gate.due(10 + value))
    values = [u.progress for u in sent if u]
    assert all(b > a for a, b in itertools.pairwise(values)), values
    assert [u.message for u in sent if u][3:] == ["b0", "b1", "b2", "b3", "b4"]
    assert values[-1] == 4


def test_a_notice_waits_behind_a_pending_update() -> None:
    gate = ProgressGate(min_interval=10)
    gate.offer(ProgressUpdate(1))
    gate.due(0)
    gate.offer(ProgressUpdate(2))
    assert gate.notice("still running", 1) is None
    gate.drain(2)
    assert gate.notice("after the end", 3) is None
