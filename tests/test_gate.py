"""The progress gate's rules, with a hand-driven clock."""

from __future__ import annotations

from server.gate import ProgressGate, ProgressUpdate


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


def test_close_discards_pending() -> None:
    gate = ProgressGate(min_interval=10)
    gate.offer(ProgressUpdate(1))
    gate.close()
    assert gate.due(0) is None and gate.drain(0) is None
