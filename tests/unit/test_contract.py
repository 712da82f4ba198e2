"""The shared contract: the status line's one formatter and one parser, and the task names."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_jobs._contract import (
    PART_TASK,
    QUEUED_STATUS,
    TASK_PREFIX,
    format_status_line,
    parse_status_line,
    status_line,
    task_name,
)
from mcp_jobs._events import JobEvent, JobState


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[3/5] 60% scanning logs", (3.0, 5.0, "scanning logs")),
        ("[2.5/10] 25% half way", (2.5, 10.0, "half way")),
        ("[7] counted", (7.0, None, "counted")),
        ("[3/5] 60%", (3.0, 5.0, None)),
        ("queued, waiting for a worker", (None, None, "queued, waiting for a worker")),
        ("[not a number] x", (None, None, "[not a number] x")),
        (None, (None, None, None)),
    ],
)
def test_status_lines_parse_to_progress(text: str | None, expected: tuple[Any, ...]) -> None:
    assert parse_status_line(text) == expected


def test_the_status_line_reads_as_before() -> None:
    assert format_status_line(3, 5, "scanning logs") == "[3/5] 60% scanning logs"
    assert format_status_line(2.5, 10, None) == "[2.5/10] 25%"
    assert format_status_line(7, None, "counted") == "[7] counted"
    assert format_status_line(None, None, "only words") == "only words"
    assert format_status_line(None, None, None) == "running"
    assert status_line(JobEvent(seq=1, state=JobState.QUEUED)) == QUEUED_STATUS
    assert status_line(JobEvent(seq=4, state=JobState.RUNNING, progress=1, total=4, message="m")) == "[1/4] 25% m"


values = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)
messages = st.text(min_size=1).filter(lambda text: not text[0].isspace())


@given(progress=values, total=values.filter(bool) | st.none(), message=messages | st.none())
def test_a_status_line_parses_back_to_what_was_formatted(
    progress: float, total: float | None, message: str | None
) -> None:
    assert parse_status_line(format_status_line(progress, total, message)) == (progress, total, message)


def test_task_names() -> None:
    assert task_name("count_primes") == TASK_PREFIX + "count_primes" == "mcp_jobs.count_primes"
    assert PART_TASK.startswith(TASK_PREFIX)
