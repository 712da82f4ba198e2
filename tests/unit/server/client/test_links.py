"""How `mcp-jobs call` shows a result's resource links, and what `--save-artifacts` adds to
`--json-output`: stdout stays the result (valid JSON when it is JSON), the links never lost."""

from __future__ import annotations

import io
import json
from pathlib import Path

import mcp_types as types
import pytest
from rich.console import Console

from mcp_jobs.server.client.arguments import Target
from mcp_jobs.server.client.artifacts import ArtifactReport, FailedArtifact, SavedArtifact
from mcp_jobs.server.client.command import (
    EXIT_OK,
    EXIT_TOOL_ERROR,
    CallRequest,
    _block_text,
    _show_result,
)
from mcp_jobs.server.client.view import format_size

REPORT = types.ResourceLink(
    name="report.csv", uri="mcp-jobs://jobs/j1/artifacts/report.csv", mime_type="text/csv", size=20 * 1024 * 1024
)


def consoles() -> tuple[Console, Console, io.StringIO]:
    """stdout as to a pipe (what `click.echo` writes, read with capsys); stderr into a buffer."""
    err = io.StringIO()
    return Console(file=io.StringIO(), width=200), Console(file=err, width=200), err


def request(json_output: bool) -> CallRequest:
    return CallRequest(Target(url="http://x/mcp"), "make", {}, [], False, json_output, "off")


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (2048, "2.0 KiB"), (20 * 1024 * 1024, "20.0 MiB"), (3 * 1024**3, "3.0 GiB")],
)
def test_sizes_are_shown_in_binary_units(size: int, shown: str) -> None:
    assert format_size(size) == shown


def test_a_link_is_one_line_with_what_the_server_said_of_it() -> None:
    assert _block_text(REPORT) == "link: report.csv mcp-jobs://jobs/j1/artifacts/report.csv (text/csv, 20.0 MiB)"
    bare = types.ResourceLink(name="x", uri="file:///x")
    assert _block_text(bare) == "link: x file:///x"


def test_beside_structured_content_the_links_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    out_console, err_console, err = consoles()
    result = types.CallToolResult(content=[REPORT], structured_content={"rows": 3})
    assert _show_result(request(False), result, out_console, err_console, "", None) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"rows": 3}, "stdout is the JSON alone"
    assert "link: report.csv mcp-jobs://jobs/j1/artifacts/report.csv (text/csv, 20.0 MiB)" in err.getvalue()


def test_json_output_gains_what_was_saved_and_a_failure_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_console, err_console, _ = consoles()
    result = types.CallToolResult(content=[REPORT, types.ResourceLink(name="gone", uri="mcp-jobs://gone")])
    report = ArtifactReport(
        saved=[SavedArtifact(REPORT.uri, "report.csv", tmp_path / "report.csv", 20 * 1024 * 1024, REPORT.size)],
        failed=[FailedArtifact("mcp-jobs://gone", "gone", "Resource not found (JSON-RPC error -32002)")],
    )
    assert _show_result(request(True), result, out_console, err_console, "", report) == EXIT_TOOL_ERROR
    shown = json.loads(capsys.readouterr().out)
    assert [block["name"] for block in shown["content"]] == ["report.csv", "gone"], "the links are in the result"
    assert shown["savedArtifacts"] == [
        {"uri": REPORT.uri, "name": "report.csv", "path": str(tmp_path / "report.csv"), "bytes": 20 * 1024 * 1024}
    ]
    assert shown["failedArtifacts"] == [
        {"uri": "mcp-jobs://gone", "name": "gone", "error": "Resource not found (JSON-RPC error -32002)"}
    ]
