"""Real clients that declare the Tasks extension, against the real stack (issue 21, items 1 and 2).

- The MCP Inspector CLI (npm `@modelcontextprotocol/inspector`, pinned in `tests/inspector/`
  with the Node 22 it needs) declares the extension in its `initialize` capabilities on
  2025-11-25, its default era: there a call streams, unless the tool requires a task, which it
  then runs on that revision's own tasks wire; on 2026-07-28 it opts each request in, and the
  call is a task.
- FastMCP's client with fastmcp-tasks (in a virtualenv of its own under build/: it pins its own
  `mcp`) opts every call in and polls `tasks/get` without an `Mcp-Name` header: answered by
  default, refused with `MCP_JOBS_STRICT_TASK_NAMES`. A header naming another task is refused
  either way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_jobs.server.dev_redis import free_port
from tests.conftest import Stack
from tests.support.helpers import job_keys
from tests.support.processes import REPO, ManagedProcess, start_http_server
from tests.support.rawclient import modern_request
from tests.support.venvs import pinned_venv

pytestmark = pytest.mark.timeout(900)

INSPECTOR_DIR = REPO / "tests" / "inspector"
INSPECTOR = INSPECTOR_DIR / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
NODE = INSPECTOR_DIR / "node_modules" / "node" / "bin" / "node"

FASTMCP_PINS = ["fastmcp==4.1.4", "fastmcp-tasks==4.1.4", "mcp==2.3.0"]
FASTMCP_VENV = REPO / "build" / "fastmcp-client"
FASTMCP_CLIENT = REPO / "tests" / "fastmcp_client" / "call.py"

HEADER_ERROR = "The Mcp-Name header must name the task"


@pytest.fixture(scope="session")
def inspector() -> list[str]:
    """The command that runs the Inspector CLI: Node 22 from npm (the machine's Node may be older)."""
    if not (INSPECTOR / "index.js").exists() or not NODE.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the MCP Inspector tests (.ci/run installs it)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=INSPECTOR_DIR, check=True, timeout=300)
    return [str(NODE), str(INSPECTOR / "index.js"), "--cli"]


@pytest.fixture(scope="session")
def fastmcp_python() -> Path:
    """FastMCP's client with tasks, in a virtualenv of its own (created on first use)."""
    return pinned_venv(FASTMCP_VENV, FASTMCP_PINS)


@pytest.fixture(scope="module")
def strict_url(stack: Stack) -> Iterator[str]:
    """A server beside the stack's (same Redis and workers) that refuses a missing `Mcp-Name`."""
    port = free_port()
    server = start_http_server(stack.env | {"MCP_JOBS_STRICT_TASK_NAMES": "true"}, port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.stop()


def run_inspector(
    inspector: list[str], url: str, era: str | None, tool: str, arguments: dict[str, Any], home: Path
) -> dict[str, Any]:
    """One `tools/call` by the Inspector CLI, in `era` (None: its default, 2025-11-25); its JSON
    output (a result, or an error on stderr)."""
    command = [*inspector, url, *(["--protocol-era", era] if era else []), "--method", "tools/call"]
    command += ["--tool-name", tool, "--tool-args-json", json.dumps(arguments), "--format", "json"]
    env = os.environ | {"HOME": str(home)}  # its catalog and stored state go to the test's folder
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)
    return dict(json.loads(done.stdout if done.returncode == 0 else done.stderr))


def run_fastmcp(python: Path, url: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(python), str(FASTMCP_CLIENT), url, json.dumps(calls)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout))


def record_of(stack: Stack, label: str) -> dict[str, str]:
    """The snapshot of the job whose result names `label` (each test's labels are unique)."""
    with stack.redis() as client:
        for key in client.scan_iter(match=stack.keys.job("*"), count=1000):
            if client.type(key) == "hash" and label in (client.hget(key, "result") or ""):
                return dict(client.hgetall(key))
    raise AssertionError(f"no job's result names {label}")


def assert_no_server_errors(server: ManagedProcess, since: int) -> None:
    logged = server.lines[since:]
    assert not [line for line in logged if "Traceback" in line or "invalid result" in line], "\n".join(logged)


@pytest.mark.parametrize(("era", "as_task"), [(None, False), ("modern", True)], ids=["default-era", "modern"])
def test_the_inspector_calls_a_tool_with_progress_in_both_eras(
    inspector: list[str], stack: Stack, tmp_path: Path, era: str | None, as_task: bool
) -> None:
    label = f"inspector-{era or 'default'}-{uuid.uuid4().hex}"
    since = len(stack.server.lines)
    answer = run_inspector(inspector, stack.http_url, era, "slow_compute", {"seconds": 2, "label": label}, tmp_path)
    assert "result" in answer, answer
    assert answer["result"]["content"] == [{"type": "text", "text": f"{label} computed for 2 s"}]
    assert answer["result"]["isError"] is False
    assert (record_of(stack, label).get("task") == "1") is as_task, "a task only on 2026-07-28"
    assert_no_server_errors(stack.server, since)


def test_the_inspector_runs_a_tool_that_needs_a_task_as_a_2025_11_25_task(
    inspector: list[str], stack: Stack, tmp_path: Path
) -> None:
    # The Inspector speaks 2025-11-25's tasks: it reads the server's `tasks` capability and the
    # tool's `execution.taskSupport` ("required"), calls with `params.task` and waits on
    # `tasks/result`, which gives the job's own error.
    since = len(stack.server.lines)
    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    answer = run_inspector(inspector, stack.http_url, None, "failing_job", {}, tmp_path)
    assert answer["error"]["message"] == "failing_job failed on purpose", answer
    started = [redis.hgetall(key) for key in job_keys(redis, stack.keys) - before]
    assert [(record["job"], record.get("task")) for record in started] == [("failing_job", "1")], started
    assert_no_server_errors(stack.server, since)


def test_fastmcp_with_tasks_sees_progress_live_and_a_long_job_becomes_a_task(
    fastmcp_python: Path, stack: Stack
) -> None:
    short, long = f"fastmcp-short-{uuid.uuid4().hex}", f"fastmcp-long-{uuid.uuid4().hex}"
    calls = [
        {"tool": "slow_compute", "arguments": {"seconds": 0, "label": short}},
        {"tool": "slow_compute", "arguments": {"seconds": 3, "label": long}},
        # Past its threshold (1 s), this one is answered with a task handle, which FastMCP resolves.
        {"tool": "patient_steps", "arguments": {"steps": 10, "delay": 0.25}},
    ]
    outcomes = run_fastmcp(fastmcp_python, stack.http_url, calls)
    texts = [{key: value for key, value in outcome.items() if key != "progress"} for outcome in outcomes]
    assert texts == [
        {"text": f"{short} computed for 0 s", "is_error": False},
        {"text": f"{long} computed for 3 s", "is_error": False},
        {"text": "10", "is_error": False},
    ]
    # It sends a progress token with its opt-in, so the calls stream until they become tasks.
    assert outcomes[1]["progress"][-1] == 3, outcomes[1]
    assert outcomes[2]["progress"] and outcomes[2]["progress"][-1] < 10, outcomes[2]
    assert record_of(stack, short)["task"] == record_of(stack, long)["task"] == "1", "both are task records"


def test_strict_task_names_refuse_fastmcp_s_missing_header(fastmcp_python: Path, strict_url: str) -> None:
    # A job past its threshold becomes a task, whose polling (without Mcp-Name) strict mode refuses.
    call = {"tool": "patient_steps", "arguments": {"steps": 10, "delay": 0.25}}
    (outcome,) = run_fastmcp(fastmcp_python, strict_url, [call])
    assert HEADER_ERROR in outcome.get("error", ""), outcome


@pytest.mark.anyio
async def test_a_header_naming_another_task_is_refused_in_both_modes(stack: Stack, strict_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for url in (stack.http_url, strict_url):
            call = {"name": "slow_compute", "arguments": {"seconds": 0}}
            created = await modern_request(http, url, "tools/call", call)
            task_id = created["result"]["taskId"]
            misrouted = await modern_request(http, url, "tasks/get", {"taskId": task_id}, name=str(uuid.uuid4()))
            assert misrouted["error"]["code"] == -32020, (url, misrouted)
            assert HEADER_ERROR in misrouted["error"]["message"]
