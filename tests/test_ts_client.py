"""The official TypeScript SDK as the client: slow jobs survive its request timeout when it resets
the timeout on progress (thanks to the server's keep-alive notices), and its cancel stops the job
(both against the fault-test stack, whose keep-alive interval is 0.5 s); and it answers a job's
questions (elicitation, sampling, roots) in both protocol eras, over HTTP and stdio, against the
session stack: SDK 1.x (`@modelcontextprotocol/sdk`) on 2025-11-25, where the server asks with
requests on the call's stream, and SDK 2.x (`@modelcontextprotocol/client`) pinned to 2026-07-28,
where the call ends with an input_required result the client answers by calling again.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import TS_CLIENT_DIR as CLIENT_DIR
from tests.conftest import Stack
from tests.support.helpers import job_keys
from tests.test_faults import KEEPALIVE, FaultStack, faults  # noqa: F401 - the fault stack fixture


@pytest.fixture
def fault_stack(faults: FaultStack) -> FaultStack:
    """The fault-test stack with its workers up (named apart so `stack` stays the session stack)."""
    faults.ensure_workers()
    return faults


def ts_call(
    node: str,
    url: str,
    tool: str,
    arguments: dict[str, Any],
    timeout_ms: int,
    reset: bool,
    abort_after: float | None = None,
) -> dict[str, Any]:
    args = [node, "call.mjs", url, tool, json.dumps(arguments), str(timeout_ms), "1" if reset else "0"]
    if abort_after is not None:
        args.append(str(abort_after))
    done = subprocess.run(args, cwd=CLIENT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_slow_silent_job_outlives_the_clients_timeout_through_keepalive(node: str, fault_stack: FaultStack) -> None:
    silent_for = 4
    timeout_ms = int(KEEPALIVE * 1000 * 3)  # well under the job's run time
    kept = ts_call(node, fault_stack.url, "silent", {"seconds": silent_for}, timeout_ms, reset=True)
    assert kept["ok"], kept
    assert kept["result"]["structuredContent"] == {"result": "done quietly"}
    values = [p["progress"] for p in kept["progress"]]
    assert len(values) >= silent_for / KEEPALIVE - 2 and all(b > a for a, b in itertools.pairwise(values)), values
    # The same client without resetting on progress gives up: the timeout is real.
    impatient = ts_call(node, fault_stack.url, "silent", {"seconds": silent_for}, timeout_ms, reset=False)
    assert not impatient["ok"] and "timed out" in impatient["error"].lower(), impatient


def test_the_typescript_clients_cancel_stops_the_job(node: str, fault_stack: FaultStack) -> None:
    client = fault_stack.client()
    before = job_keys(client, fault_stack.keys)
    out = ts_call(
        node,
        fault_stack.url,
        "unsafe_steps",
        {"tag": "ts-cancel", "steps": 50, "delay": 0.1},
        60_000,
        reset=True,
        abort_after=2,
    )
    aborted_at = time.monotonic()
    assert out["aborted"], out
    (key,) = job_keys(client, fault_stack.keys) - before
    deadline = aborted_at + 5
    while client.hget(key, "state") not in {"cancelled", "succeeded", "failed"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.hget(key, "state") == "cancelled"
    assert float(client.hget(key, "progress") or 0) < 50


# ---- a job's questions, answered by the TypeScript SDK (tests/ts_client/ask.mjs) ----

ERAS = {"v1": "2025-11-25", "v2": "2026-07-28"}
"""The protocol version each pinned SDK line speaks here (v1 has no 2026-07-28 mode; v2 is pinned to it)."""
ROOT = "file:///tmp/ts-root"
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
STDIO_SERVER = [sys.executable, "-m", "mcp_jobs.server.cli", "serve", "--transport", "stdio"]
QUESTIONS = [
    {"tool": "test_input_required_result_multi_round", "arguments": {}},
    {"tool": "test_input_required_result_multiple_inputs", "arguments": {}},
    {"tool": "test_elicitation", "arguments": {"message": "hi"}},
]


def ts_ask(
    node: str, stack: Stack, sdk: str, transport: str, capabilities: str, calls: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Run ask.mjs to the end; its connection line, and each call's line by tool name."""
    target = [stack.http_url] if transport == "http" else ["stdio", *STDIO_SERVER]
    args = [node, "ask.mjs", sdk, capabilities, json.dumps(calls), *target]
    done = subprocess.run(args, cwd=CLIENT_DIR, env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, *rest = (json.loads(line) for line in done.stdout.strip().splitlines())
    return first["connected"], {line["tool"]: line for line in rest}


def assert_answered(line: dict[str, Any], text: list[str], methods: list[str]) -> None:
    """The call succeeded with every fragment of `text`, after the handlers answered `methods`."""
    assert line["ok"] and line["error"] is None, line
    assert all(fragment in line["text"] for fragment in text), line
    assert sorted(line["answered"]) == sorted(methods), line


def assert_asked_on_the_stream(line: dict[str, Any], methods: list[str]) -> None:
    """2025-11-25: the server asked with requests of its own, never an input_required result."""
    wire = line["wire"]
    assert sorted(wire["serverRequests"]) == sorted(methods), line
    assert wire["inputRequired"] == [] and wire["resent"] == 0, line


def assert_asked_in_rounds(line: dict[str, Any], rounds: list[list[str]]) -> None:
    """2026-07-28: each round was an input_required result, answered by calling again."""
    wire = line["wire"]
    assert wire["inputRequired"] == rounds and wire["resent"] == len(rounds), line
    assert wire["serverRequests"] == [], line


@pytest.mark.parametrize("transport", ["http", "stdio"])
@pytest.mark.parametrize("sdk", ["v1", "v2"])
def test_the_typescript_client_answers_a_jobs_questions(node: str, stack: Stack, sdk: str, transport: str) -> None:
    """A job that asks (two rounds, three questions at once, a form) gets the TS client's answers in
    each era its SDK speaks, and the wire shows the era's own way of asking (not a fallback)."""
    connected, calls = ts_ask(node, stack, sdk, transport, "all", QUESTIONS)
    assert connected["protocolVersion"] == ERAS[sdk], connected
    two_rounds = calls["test_input_required_result_multi_round"]
    assert_answered(two_rounds, ["Alice likes blue"], ["elicitation/create"] * 2)
    at_once = calls["test_input_required_result_multiple_inputs"]
    assert_answered(at_once, ["Paris", "Alice", ROOT], ["elicitation/create", "sampling/createMessage", "roots/list"])
    form = calls["test_elicitation"]
    assert_answered(form, ["action: accept", '"username": "Alice"'], ["elicitation/create"])
    if sdk == "v1":
        assert_asked_on_the_stream(two_rounds, ["elicitation/create"] * 2)
        assert_asked_on_the_stream(at_once, ["elicitation/create", "sampling/createMessage", "roots/list"])
        assert_asked_on_the_stream(form, ["elicitation/create"])
    else:
        assert_asked_in_rounds(two_rounds, [["step1"], ["step2"]])
        assert_asked_in_rounds(at_once, [["client_roots", "greeting", "user_name"]])
        assert_asked_in_rounds(form, [["answer"]])  # progress.ask's default key


@pytest.mark.parametrize("transport", ["http", "stdio"])
@pytest.mark.parametrize("sdk", ["v1", "v2"])
def test_a_client_that_cannot_answer_gets_a_clear_error_and_no_question(
    node: str, stack: Stack, sdk: str, transport: str
) -> None:
    """A client without the elicitation capability gets -32021 for a job that requires it (not a
    hang on a question it cannot answer), and a job that checks first asks it nothing."""
    calls = [
        {"tool": "test_elicitation", "arguments": {"message": "hi"}},
        {"tool": "test_input_required_result_capabilities", "arguments": {}},
    ]
    connected, lines = ts_ask(node, stack, sdk, transport, "none", calls)
    assert connected["protocolVersion"] == ERAS[sdk], connected
    refused = lines["test_elicitation"]
    assert not refused["ok"] and refused["error"]["code"] == MISSING_REQUIRED_CLIENT_CAPABILITY, refused
    assert [e["code"] for e in refused["wire"]["errors"]] == [MISSING_REQUIRED_CLIENT_CAPABILITY], refused
    assert refused["error"]["data"] == {"requiredCapabilities": {"elicitation": {}}}, refused
    nothing = lines["test_input_required_result_capabilities"]
    assert nothing["ok"] and "The client can answer nothing" in nothing["text"], nothing
    for line in (refused, nothing):
        assert line["answered"] == [] and line["wire"]["serverRequests"] == [] and line["wire"]["inputRequired"] == []
