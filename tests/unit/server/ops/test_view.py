"""How one job's snapshot becomes a row of the views (`mcp-jobs jobs`, the jobs page)."""

from __future__ import annotations

import json

from mcp_jobs.server.ops.view import _row


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
