"""How one job's snapshot becomes a row of the views (`mcp-jobs jobs`, the jobs page), and one
job's snapshot and step list its detail (`mcp-jobs jobs JOB_ID`, the page's job panel)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from mcp_jobs._events import Keys
from mcp_jobs.server.ops.view import _row, detail_of, read_job


def snapshot(**fields: str) -> dict[str, str]:
    return {"job": "interview", "state": "running", "seq": "3", "created_at": "100.0", **fields}


def test_a_job_waiting_for_an_answer_shows_its_question_and_its_heartbeat() -> None:
    row = _row("j1", snapshot(state="input_required", message="waiting for an answer: Go ahead?"), True, 200.0)
    assert row is not None
    assert (row.state, row.message, row.heartbeat) == ("input_required", "waiting for an answer: Go ahead?", True)


def test_the_last_log_line_is_shown_and_a_malformed_one_is_not() -> None:
    line = {"level": "warning", "data": "disk almost full", "logger": None}
    row = _row("j1", snapshot(log=json.dumps(line)), True, 200.0)
    assert row is not None and row.last_log == "warning: disk almost full"
    structured = _row("j1", snapshot(log=json.dumps({"level": "info", "data": {"rows": 3}})), True, 200.0)
    assert structured is not None and structured.last_log == 'info: {"rows": 3}'
    for bad in ("not json", "[]", json.dumps({"data": "no level"})):
        row = _row("j1", snapshot(log=bad), True, 200.0)
        assert row is not None and row.last_log is None


JOB_ID = "0b6f3c9e-1d2a-4c5b-8e7f-9a0b1c2d3e4f"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def steps(*pairs: tuple[float, str], attempt: int = 1) -> list[str]:
    """A step list as the write script stores it: `(at, message)` pairs, oldest first."""
    return [
        json.dumps({"attempt": attempt, "at": at, "progress": None, "total": 3, "message": message})
        for at, message in pairs
    ]


def ended(**fields: str) -> dict[str, str]:
    return snapshot(
        **{
            "job": "staged",
            "state": "succeeded",
            "updated_at": "110.0",
            "started_at": "102.0",
            "attempt": "1",
            "caller": "alice",
            "worker": "w1@host",
            "steps": "4",
            "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
            **fields,
        }
    )


STAGES = steps((102.0, "started"), (102.5, "fetching"), (103.0, "parsing"), (109.0, "writing"))


def test_an_ended_jobs_detail_has_its_waits_its_trace_and_its_timeline() -> None:
    detail = detail_of(JOB_ID, ended(), False, STAGES, 200.0)
    assert detail is not None
    assert (detail.started_at, detail.ended_at, detail.run_time) == (102.0, 110.0, 8.0)
    assert detail.job.queue_wait == 2.0 and detail.trace_id == TRACE
    assert [step.message for step in detail.steps] == ["started", "fetching", "parsing", "writing"]
    assert [step.duration for step in detail.steps] == [0.5, 0.5, 6.0, 1.0]
    assert [step.slowest for step in detail.steps] == [False, False, True, False]
    assert not detail.trimmed and detail.first_number == 1


def test_the_json_numbers_the_steps_gives_offsets_and_links_the_trace() -> None:
    detail = detail_of(JOB_ID, ended(), False, STAGES, 200.0)
    assert detail is not None
    data = detail.as_json(hosts=False, trace_url="https://traces.example/t/{trace_id}?q={x}")
    assert data["trace_link"] == f"https://traces.example/t/{TRACE}?q={{x}}", "replaced, not formatted"
    assert [(step["number"], step["offset"]) for step in data["steps"]] == [(1, 0.0), (2, 0.5), (3, 1.0), (4, 7.0)]
    assert data["job"]["worker"] is None and data["job"]["fraction"] is None
    assert (data["steps_shown"], data["steps_total"], data["queue_wait"], data["run_time"]) == (4, 4, 2.0, 8.0)
    assert "result" not in data["job"]
    json.dumps(data, allow_nan=False)
    plain = detail.as_json()
    assert plain["trace_link"] is None and plain["job"]["worker"] == "w1@host"


def test_a_trimmed_timeline_counts_what_it_lost() -> None:
    kept = steps(*((100.0 + i, f"item {i}") for i in range(6, 106)))
    detail = detail_of(JOB_ID, ended(steps="106", updated_at="206.0"), False, kept, 300.0)
    assert detail is not None and detail.trimmed and detail.steps_total == 106 and len(detail.steps) == 100
    data = detail.as_json()
    assert data["steps"][0]["number"] == 7 and data["steps"][-1]["number"] == 106


def test_a_running_jobs_last_step_has_no_duration_yet() -> None:
    fields = ended(state="running")
    del fields["updated_at"]
    detail = detail_of(JOB_ID, fields, True, STAGES[:3], 104.0)
    assert detail is not None and detail.ended_at is None and detail.run_time == 2.0
    assert detail.steps[-1].duration is None and detail.job.heartbeat is True


def test_a_queued_job_has_no_steps_and_no_run_time() -> None:
    detail = detail_of(JOB_ID, snapshot(state="queued", traceparent="garbage"), False, [], 130.0)
    assert detail is not None and detail.steps == [] and detail.steps_total == 0
    assert detail.run_time is None and detail.job.queue_wait == 30.0 and detail.trace_id is None


def test_a_job_id_is_checked_before_any_key_is_built() -> None:
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # never reached
    for bad in ("not-a-job", JOB_ID + ":alive", "*", JOB_ID.upper()):
        with pytest.raises(ValueError, match="not a job id"):
            asyncio.run(read_job(unreachable, Keys("ns"), bad, 0.0))
