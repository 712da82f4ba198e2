"""The step timeline's arithmetic, and the server's `StepClock` agreeing with it."""

from __future__ import annotations

import json

import pytest

from mcp_jobs._timeline import StepClock, parse_entries, step_entry, timeline


def entry(at: float, message: str, attempt: int = 1) -> dict[str, object]:
    return {"attempt": attempt, **json.loads(step_entry(at, None, None, message))}


def test_each_step_lasts_until_the_next_and_the_last_until_the_end() -> None:
    steps = timeline([entry(10, "started"), entry(10.5, "fetching"), entry(13, "parsing")], ended_at=13.25, now=99)
    assert [(s.message, s.duration) for s in steps] == [("started", 0.5), ("fetching", 2.5), ("parsing", 0.25)]
    assert [s.slowest for s in steps] == [False, True, False]


def test_a_running_jobs_last_step_has_no_duration_but_can_be_the_slowest() -> None:
    steps = timeline([entry(10, "started"), entry(11, "waiting")], ended_at=None, now=20)
    assert steps[-1].duration is None and steps[-1].slowest
    assert steps[0].duration == 1 and not steps[0].slowest


def test_one_step_is_not_marked_and_equals_mark_the_first() -> None:
    assert not timeline([entry(1, "started")], ended_at=2, now=3)[0].slowest
    steps = timeline([entry(0, "a"), entry(1, "b"), entry(2, "c")], ended_at=2, now=9)
    assert [s.slowest for s in steps] == [True, False, False]


def test_clock_skew_never_gives_a_negative_duration() -> None:
    steps = timeline([entry(5, "a"), entry(4, "b")], ended_at=3, now=9)
    assert [s.duration for s in steps] == [0.0, 0.0]


def test_stored_entries_that_are_not_steps_are_skipped() -> None:
    raw = [
        step_entry(1.5, 2, 4, "ok"),
        b"not json",
        "[1]",
        '{"at": "soon"}',
        '{"at": NaN}',
        b'{"at": 2, "message": "b"}',
    ]
    entries = parse_entries(raw)
    assert [e["message"] for e in entries] == ["ok", "b"]
    (first, second) = timeline(entries, ended_at=3, now=3)
    assert (first.progress, first.total, first.attempt) == (2.0, 4.0, 1) and second.duration == 1


def test_step_entries_are_strict_json() -> None:
    with pytest.raises(ValueError):
        step_entry(float("nan"), None, None, "x")


def test_the_servers_clock_gives_the_timelines_durations() -> None:
    """Fed the same events (a step per new message; reports under one message, a log line, a
    question), `StepClock` closes the same steps the stored timeline shows."""
    events = [
        (10.0, "started"),
        (10.2, None),  # set_total: no message
        (10.4, "fetching"),
        (10.9, "fetching"),  # a report under the same message: the same step
        (11.0, None),  # a log line
        (12.0, "waiting for an answer: ok?"),
        (15.0, "writing"),
    ]
    clock = StepClock()
    for at, message in events:
        clock.seen(at, message, running=True)
    clock.ended(15.5)
    stored = [entry(at, message) for at, message in events if message is not None]
    deduplicated = [e for i, e in enumerate(stored) if i == 0 or e["message"] != stored[i - 1]["message"]]
    expected = [s.duration for s in timeline(deduplicated, ended_at=15.5, now=16)]
    assert clock.durations == pytest.approx(expected) and clock.began == 10.0
    assert clock.durations == pytest.approx([0.4, 1.6, 3.0, 0.5])


def test_the_clock_ignores_a_queued_job() -> None:
    clock = StepClock()
    clock.seen(1.0, "queued", running=False)
    clock.ended(2.0)
    assert clock.began is None and clock.durations == []
