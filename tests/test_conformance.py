"""The official MCP conformance suite against the real stack, at both protocol versions.

npm `@modelcontextprotocol/conformance` (pinned in `tests/conformance/package.json`, with the
Node 22 its CLI needs) runs every server scenario against the session's server, whose fixture
tools (`mcp_jobs.conformance`) run as real jobs on the real workers. The checked-in baseline,
`tests/conformance/expected-failures.yml`, lists what mcp-jobs does not implement and why; the
suite fails the run on any other failure or warning, and on a listed one that starts passing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Stack

SUITE_DIR = Path(__file__).parent / "conformance"
CLI = SUITE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE = SUITE_DIR / "node_modules" / "node" / "bin" / "node"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def suite() -> list[str]:
    """The command that runs the suite: Node 22 from npm (the machine's Node may be older)."""
    if not CLI.exists() or not NODE.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the conformance suite (.ci/run installs it)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SUITE_DIR, check=True, timeout=300)
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v22."), version
    return [str(NODE), str(CLI)]


RUNS = {
    # Every scenario of the suite applicable at each protocol version.
    "2025-11-25": (
        ["--suite", "all", "--spec-version", "2025-11-25"],
        ["tools-call-with-progress", "tools-call-mixed-content", "json-schema-2020-12"],
    ),
    "2026-07-28": (
        ["--suite", "all", "--spec-version", "2026-07-28"],
        ["tools-call-with-progress", "tools-call-audio", "http-custom-header-server-validation", "caching"],
    ),
    # The suite's pending set, which holds the Tasks extension's scenarios (run at 2026-07-28).
    "tasks and pending": (
        ["--suite", "pending"],
        ["tasks-lifecycle", "tasks-capability-negotiation", "tasks-request-headers", "tasks-required-task-error"],
    ),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_the_conformance_suite_passes_but_for_the_baseline(
    suite: list[str], stack: Stack, tmp_path: Path, run: str
) -> None:
    selection, must_pass = RUNS[run]
    baseline = str(SUITE_DIR / "expected-failures.yml")
    command = [
        *suite,
        "server",
        "--url",
        stack.http_url,
        *selection,
        "--expected-failures",
        baseline,
        "-o",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=500, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "Baseline check passed" in output, output[-3000:]
    for scenario in must_pass:
        assert f"✓ {scenario}:" in output, f"{scenario} did not pass:\n{output[-3000:]}"
