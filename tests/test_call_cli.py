"""`call` and `tools`, the terminal client, end to end: the real command in its own process against
the real stack (server, workers, Redis), over HTTP and stdio, plus its argument parsing.

The command runs as `python -m mcp_jobs.server.cli call ...`, in a process of its own.
"""

from __future__ import annotations

import json
import os
import pty
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import uuid
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from mcp_jobs._contract import JOB_ID_META_KEY
from mcp_jobs.server.auth import hash_token
from mcp_jobs.server.client.answers import Givens, Responder
from mcp_jobs.server.client.arguments import parse_answers, parse_roots
from mcp_jobs.server.client.command import (
    EXIT_CONNECTION,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TOOL_ERROR,
    EXIT_USAGE,
)
from mcp_jobs.server.client.view import ProgressView
from mcp_jobs.server.dev_redis import free_port
from tests import jobs as test_jobs
from tests.conftest import Connect, Stack
from tests.support.helpers import job_keys, wait_for_state
from tests.support.processes import REPO, sigint_ignored, start_http_server

pytestmark = pytest.mark.anyio

CLI = [sys.executable, "-m", "mcp_jobs.server.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def run(stack: Stack, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command, to the end, with stdout and stderr apart."""
    return subprocess.run(
        [*CLI, *args],
        env=(env or stack.env) | {"COLUMNS": "160"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


class LiveCall:
    """The command running in its own process group (as a terminal's foreground job), its stderr
    lines readable as they come, so a test can wait for one and then press Ctrl-C. It starts with
    SIGINT ignored, as everything a non-interactive shell runs in the background does (CI's runner
    among them): Ctrl-C must stop it all the same."""

    def __init__(self, stack: Stack, *args: str) -> None:
        self.process = subprocess.Popen(
            sigint_ignored([*CLI, *args]),
            env=stack.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((m for line in self.lines if (m := regex.search(line))), None) or "<eof>" in self.lines,
                timeout,
            )
            match = next((m for line in self.lines if (m := regex.search(line))), None)
        assert match is not None, f"no line matching {pattern!r} ({'exited' if found else 'timed out'}):\n{self.stderr}"
        return match

    def ctrl_c(self) -> int:
        """SIGINT to the process group, as Ctrl-C in a terminal; the exit code; all stderr read."""
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(30)
        self._reader.join(10)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def stdio_target() -> str:
    return f"stdio:{sys.executable} -m mcp_jobs.server.cli serve --transport stdio"


def test_a_call_shows_each_step_on_stderr_and_only_the_result_on_stdout(stack: Stack) -> None:
    done = run(stack, "call", stack.http_url, "sleep_steps", "--arg", "steps=4", "--arg", "delay=0.05")
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"steps": 4, "slept_seconds": 0.2}, "stdout is the result alone"
    lines = done.stderr.splitlines()
    steps = [line for line in lines if re.match(r"^\[\d/4\] \d+% step \d/4 done  \(\d+\.\d s", line)]
    assert steps[-1].startswith("[4/4] 100% step 4/4 done"), done.stderr
    assert [int(line[1]) for line in steps] == sorted(int(line[1]) for line in steps), "in order"
    assert re.search(rf"sleep_steps done in \d+\.\d s \(job {UUID}\)", done.stderr)


def test_the_bar_when_forced_off_a_terminal_shows_value_total_percentage_message_and_rate(stack: Stack) -> None:
    done = run(
        stack, "call", stack.http_url, "sleep_steps", "--json", '{"steps": 4, "delay": 0.1}', "--progress", "bar"
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["steps"] == 4
    frames = ANSI.sub("", done.stderr).replace("\r", "\n").splitlines()
    last = [frame for frame in frames if "sleep_steps" in frame and "4/4" in frame]
    assert last, done.stderr
    assert "100%" in last[-1] and "step 4/4 done" in last[-1] and re.search(r"\d+(\.\d+)?/s", last[-1]), last[-1]
    assert re.search(r"0:00:0\d", last[-1]), "elapsed time"


async def test_arguments_are_coerced_by_the_schema_and_json_output_is_the_raw_result(stack: Stack) -> None:
    done = run(
        stack, "call", stack.http_url, "echo", "--json-output",
        "--json", '{"text": "overridden", "maybe": 1.5}',
        "--arg", "text=42",  # a string parameter: stays "42"
        "--arg", "number=7",  # an integer
        "--arg", 'item={"name": "box", "tags": ["a"]}',
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    result = json.loads(done.stdout)
    assert result["structuredContent"] == {
        "text": "42", "number": 7, "item": {"name": "box", "tags": ["a"]}, "maybe": 1.5
    }  # fmt: skip
    assert result["isError"] is False
    job_id = result["_meta"][JOB_ID_META_KEY]
    assert await wait_for_state(stack.redis(), stack.keys.job(job_id), {"succeeded"}, timeout=5) == "succeeded"


def test_a_tool_error_exits_1_with_its_message(stack: Stack) -> None:
    done = run(stack, "call", stack.http_url, "fail_politely", "--arg", "reason=the printer is on fire")
    assert done.returncode == EXIT_TOOL_ERROR, done.stderr
    assert "error: " in done.stderr and "the printer is on fire" in done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr


def test_arguments_the_server_refuses_are_a_clean_message(stack: Stack) -> None:
    done = run(stack, "call", stack.http_url, "sleep_steps", "--arg", "steps=many")
    assert done.returncode == EXIT_TOOL_ERROR, done.stderr
    assert "steps" in done.stderr and "valid integer" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["call", "{url}", "no_such_tool"], EXIT_USAGE, r"no tool 'no_such_tool' at .*; it has: .*sleep_steps"),
        (["call", "{url}", "echo", "--arg", "text"], EXIT_USAGE, r"'text' is not key=value"),
        (["call", "{url}", "echo", "--json", "[1, 2]"], EXIT_USAGE, r"must be a JSON object"),
        (["call", "ftp://example.com", "echo"], EXIT_USAGE, r"neither an http\(s\):// URL nor stdio:"),
        (["call", "http://127.0.0.1:{free}/mcp", "echo"], EXIT_CONNECTION, r"cannot talk to .*ConnectError"),
        (["tools", "stdio:/nonexistent/mcp-server"], EXIT_CONNECTION, r"command not found: /nonexistent/mcp-server"),
    ],
)
def test_usage_and_connection_errors_have_their_exit_codes(stack: Stack, args: list[str], code: int, says: str) -> None:
    filled = [arg.format(url=stack.http_url, free=free_port()) for arg in args]
    done = run(stack, *filled)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert re.search(says, done.stderr), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_ctrl_c_cancels_the_call_and_the_job(stack: Stack, transport: str) -> None:
    redis = stack.redis()
    before = job_keys(redis, stack.keys)
    target = stack.http_url if transport == "http" else stdio_target()
    args = ["call", target, "sleep_steps", "--arg", "steps=200", "--arg", "delay=0.05"]
    call = LiveCall(stack, *args)
    try:
        call.wait_for(r"^\[3/200\] ", timeout=60)
        assert call.ctrl_c() == EXIT_INTERRUPTED, call.stderr
    finally:
        call.stop()
    assert "cancelled (Ctrl-C): the call to sleep_steps was cancelled" in call.stderr
    started = job_keys(redis, stack.keys) - before
    assert len(started) == 1, started
    (key,) = started
    assert await wait_for_state(redis, key, {"cancelled", "succeeded"}, timeout=15) == "cancelled"
    assert float(redis.hget(key, "progress") or 0) < 200


TASK_WIRES = {"extension": [], "core": ["--protocol", "2025-11-25"]}
"""`--task` on 2026-07-28 (the Tasks extension) and on 2025-11-25 (that revision's own tasks)."""


@pytest.mark.parametrize("wire", TASK_WIRES)
async def test_a_task_is_followed_to_its_result(stack: Stack, wire: str) -> None:
    # 2026-07-28: the call streams its progress for patient_steps' task_after (1 s), then becomes a
    # task, which is polled to its end (the first tasks/get after the server's pollIntervalMs, 1 s).
    # 2025-11-25: a task at once, whose tasks/result waits for the end while tasks/get is polled.
    args = ["call", stack.http_url, "patient_steps", "--arg", "steps=6", "--arg", "delay=0.5", "--task"]
    done = run(stack, *args, *TASK_WIRES[wire])
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"result": 6}
    created = re.search(rf"task ({UUID}) created", done.stderr)
    assert created, done.stderr
    assert re.search(r"^\[6/6\] 100% step 6/6", done.stderr, re.MULTILINE), done.stderr
    record = stack.redis().hgetall(stack.keys.job(created[1]))
    assert record["task"] == "1" and record["state"] == "succeeded", "run as a task, not a plain call"


async def test_a_2025_11_25_task_over_stdio(stack: Stack) -> None:
    args = ["call", stdio_target(), "patient_steps", "--arg", "steps=3", "--arg", "delay=0.2", "--task"]
    done = run(stack, *args, *TASK_WIRES["core"])
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"result": 3}
    created = re.search(rf"task ({UUID}) created", done.stderr)
    assert created and stack.redis().hget(stack.keys.job(created[1]), "task") == "1", done.stderr


@pytest.mark.parametrize("wire", TASK_WIRES)
async def test_ctrl_c_cancels_a_task_with_tasks_cancel(stack: Stack, wire: str) -> None:
    args = ["call", stack.http_url, "patient_steps", "--arg", "steps=200", "--arg", "delay=0.05", "--task"]
    call = LiveCall(stack, *args, *TASK_WIRES[wire])
    try:
        task_id = call.wait_for(rf"task ({UUID}) created", timeout=60)[1]
        call.wait_for(r"^\[\d+/200\] ", timeout=30)
        assert call.ctrl_c() == EXIT_INTERRUPTED, call.stderr
    finally:
        call.stop()
    assert f"sent tasks/cancel for task {task_id}; the server reports it cancelled" in call.stderr
    assert stack.redis().hget(stack.keys.job(task_id), "state") == "cancelled"


async def test_a_call_over_stdio(stack: Stack) -> None:
    done = run(stack, "call", stdio_target(), "sleep_steps", "--arg", "steps=3", "--arg", "delay=0.05", "--json-output")
    assert done.returncode == EXIT_OK, done.stderr
    result = json.loads(done.stdout)
    assert result["structuredContent"] == {"steps": 3, "slept_seconds": 0.05 * 3}
    assert "[3/3] 100% step 3/3 done" in done.stderr
    key = stack.keys.job(result["_meta"][JOB_ID_META_KEY])
    assert await wait_for_state(stack.redis(), key, {"succeeded"}, timeout=5) == "succeeded"


FOREIGN_SERVER = """
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("foreign")


@app.tool()
async def count(n: int, ctx: Context) -> str:
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"counted {i}")
    return f"counted to {n}"


app.run("stdio")
"""


def test_any_mcp_server_will_do(stack: Stack) -> None:
    """A plain SDK server (not mcp-jobs, no Tasks extension): progress, result, and `--task` falls
    back to the plain call, saying so."""
    target = "stdio:" + shlex.join([sys.executable, "-c", FOREIGN_SERVER])
    done = run(stack, "call", target, "count", "--arg", "n=3", "--task")
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"result": "counted to 3"}
    assert re.search(r"^\[3/3\] 100% counted 3  \(", done.stderr, re.MULTILINE), done.stderr
    assert "the server answered without a task" in done.stderr
    assert "(job " not in done.stderr


def test_tools_lists_the_tools_with_their_arguments(stack: Stack) -> None:
    table = run(stack, "tools", stack.http_url)
    assert table.returncode == EXIT_OK, table.stderr
    row = next(line for line in table.stdout.splitlines() if "sleep_steps" in line)
    assert "steps: integer [1..10000] = 5" in row, table.stdout
    assert "reason*: string" in table.stdout, "required arguments are marked"
    raw = run(stack, "tools", stdio_target(), "--json-output")
    assert raw.returncode == EXIT_OK, raw.stderr
    listed = {tool["name"]: tool for tool in json.loads(raw.stdout)["tools"]}
    assert {"sleep_steps", "fail_politely", "echo"} <= set(listed)
    assert listed["sleep_steps"]["inputSchema"]["properties"]["steps"]["type"] == "integer"


def test_header_carries_a_token_to_a_server_behind_auth(stack: Stack) -> None:
    token = f"call-cli-{uuid.uuid4().hex}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    entry = [{"sha256": hash_token(token), "caller": "cli", "scopes": []}]
    env = stack.env | {"MCP_JOBS_AUTH_TOKENS": json.dumps(entry), "MCP_JOBS_PUBLIC_URL": url}
    server = start_http_server(env, port)
    try:
        refused = run(stack, "call", url, "sleep_steps", "--arg", "steps=1", "--arg", "delay=0")
        allowed = run(
            stack, "call", url, "sleep_steps", "--arg", "steps=1", "--arg", "delay=0",
            "--header", f"Authorization: Bearer {token}",
        )  # fmt: skip
    finally:
        server.stop()
    assert refused.returncode == EXIT_CONNECTION, refused.stderr
    assert "HTTP 401" in refused.stderr and "--header 'Authorization: Bearer <token>'" in refused.stderr
    assert allowed.returncode == EXIT_OK, allowed.stderr
    assert json.loads(allowed.stdout) == {"steps": 1, "slept_seconds": 0.0}


def test_escape_sequences_a_job_echoes_are_shown_not_obeyed(stack: Stack) -> None:
    """A caller's argument, echoed in a job's error, holding an OSC-8 link, a clear-screen and a
    line that looks like a log record: `call`, `jobs` and the worker's log show it escaped."""
    tag = uuid.uuid4().hex[:8]
    hostile = f"{tag} \x1b]8;;https://evil.example\x07click\x1b]8;;\x07 \x1b[2J\x9b31m\r\n1999-01-01 ERROR forged-{tag}"
    done = run(stack, "call", stack.http_url, "fail_politely", "--arg", f"reason={hostile}")
    assert done.returncode == EXIT_TOOL_ERROR, done.stderr
    assert tag in done.stderr and "\\x1b]8;;https://evil.example\\x07click" in done.stderr, done.stderr
    assert not {"\x1b", "\x07", "\x9b", "\r"} & set(done.stderr), repr(done.stderr)

    table = run(stack, "jobs", "--failures-for", "600")
    assert table.returncode == 0, table.stderr
    assert f"forged-{tag}" in table.stdout.replace("\n", ""), table.stdout
    assert not {"\x1b", "\x07", "\x9b", "\r"} & set(table.stdout), repr(table.stdout)

    for worker in stack.workers:
        assert not any(line.startswith(f"1999-01-01 ERROR forged-{tag}") for line in worker.lines), worker.output()
    assert any(f"\\n1999-01-01 ERROR forged-{tag}" in line for w in stack.workers for line in w.lines), [
        w.output(5) for w in stack.workers
    ]


def test_escape_sequences_in_a_jobs_messages_are_shown_not_obeyed(stack: Stack) -> None:
    """A caller's tag in a job's step messages, holding an OSC-8 link and a clear-screen: `call`'s
    progress lines and the `jobs` table show it escaped; the result, as JSON, escapes it in JSON's way."""
    tag = f"{uuid.uuid4().hex[:8]}\x1b]8;;https://e.x\x07L\x1b]8;;\x07\x1b[2J\x9b1m"
    unsafe = {"\x1b", "\x07", "\x9b"}
    call = LiveCall(stack, "call", stack.http_url, "safe_steps", "--arg", f"tag={tag}", "--arg", "steps=200")
    try:
        line = call.wait_for(rf"^\[\d+/200\] .*{tag[:8]}", timeout=60).string
        assert "\\x1b]8;;https://e.x\\x07L" in line and not unsafe & set(line), repr(line)
        table = run(stack, "jobs")
        assert table.returncode == 0 and tag[:8] in table.stdout and "\\x1b" in table.stdout, table.stdout
        assert not unsafe & set(table.stdout), repr(table.stdout)
        assert call.ctrl_c() == EXIT_INTERRUPTED, call.stderr
    finally:
        call.stop()
    done = run(
        stack, "call", stack.http_url, "safe_steps", "--arg", f"tag={tag}", "--arg", "steps=2", "--arg", "delay=0"
    )
    assert done.returncode == EXIT_OK and json.loads(done.stdout) == {"result": f"{tag} done after attempt 1"}
    assert not unsafe & set(done.stdout + done.stderr) and tag[:8] in done.stderr, repr(done.stdout + done.stderr)


# --- the job's questions: answered from the command line, declined, or not offered ---------------


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_answers_on_the_command_line_fill_in_each_round(stack: Stack, transport: str) -> None:
    """Two forms in two rounds (2026-07-28's InputRequiredResult, re-sent with the answers), each
    answered by field name; nothing asked on the terminal (stdin is not one)."""
    target = stack.http_url if transport == "http" else stdio_target()
    done = run(
        stack, "call", target, "test_input_required_result_multi_round",
        "--answer", "name=Alice", "--answer", "color=blue",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"result": "Alice likes blue"}
    assert "answered 'Step 1: What is your name?': name given" in done.stderr, done.stderr
    assert "answered 'Step 2: What is your favorite color?': color given" in done.stderr


def test_an_answers_file_and_json_output_for_scripts(stack: Stack, tmp_path: Path) -> None:
    """`--answers FILE` by question key (a JSON object answers that question), `--answer` over
    it, and `--json-output` carrying the result."""
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"step1": {"name": "Bob"}, "color": "red"}), encoding="utf-8")
    done = run(
        stack, "call", stack.http_url, "test_input_required_result_multi_round",
        "--answers", str(answers), "--answer", "color=green", "--json-output",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    result = json.loads(done.stdout)
    assert result["structuredContent"] == {"result": "Bob likes green"}
    assert result["isError"] is False


@pytest.mark.parametrize("wire", TASK_WIRES)
async def test_a_task_that_asks_is_answered(stack: Stack, wire: str) -> None:
    """`--task`: on 2026-07-28 the task goes `input_required` with its questions in `tasks/get`,
    and the answers go back by `tasks/update`; on 2025-11-25 the questions come on the stream of
    `tasks/result`, answered as a plain call's are. One round after the other either way."""
    done = run(
        stack, "call", stack.http_url, "test_input_required_result_multi_round", "--task",
        "--answer", "name=Alice", "--answer", "color=blue", *TASK_WIRES[wire],
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"result": "Alice likes blue"}
    created = re.search(rf"task ({UUID}) created", done.stderr)
    assert created and "answered 'Step 2: What is your favorite color?': color given" in done.stderr, done.stderr
    assert stack.redis().hget(stack.keys.job(created[1]), "task") == "1", "run as a task, not a plain call"


def test_a_form_without_the_answer_it_needs_is_declined(stack: Stack) -> None:
    """Answers given, but none for this form, and no terminal to ask on: declined, and said so."""
    done = run(stack, "call", stack.http_url, "test_elicitation", "--arg", "message=Who are you?", "--answer", "x=1")
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"result": "User response: <action: decline, content: {}>"}
    assert "declined the question" in done.stderr and "no answer for username, email" in done.stderr

    half = run(stack, "call", stack.http_url, "test_input_required_result_multi_round", "--answer", "name=Alice")
    assert half.returncode == EXIT_TOOL_ERROR, half.stderr
    assert "The user declined to answer: Step 2: What is your favorite color?" in half.stderr, half.stderr


def test_without_answers_or_a_terminal_no_capability_is_offered(stack: Stack) -> None:
    """Nothing to answer with: the client does not declare elicitation, sampling or roots, so the
    job is told it cannot ask (rather than asking a question nobody will answer)."""
    done = run(stack, "call", stack.http_url, "test_input_required_result_multi_round")
    assert done.returncode == EXIT_TOOL_ERROR, done.stderr
    assert "cannot answer elicitation requests (it did not declare the capability)" in done.stderr, done.stderr
    sampling = run(stack, "call", stack.http_url, "test_input_required_result_multiple_inputs", "--answer", "name=A")
    assert sampling.returncode == EXIT_TOOL_ERROR, sampling.stderr
    assert "cannot answer roots or sampling requests" in sampling.stderr, sampling.stderr


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_sample_reply_and_roots_answer_the_other_questions(stack: Stack, transport: str, tmp_path: Path) -> None:
    """A form, a sampling request and roots/list asked at once: --answer, --sample-reply and
    --root (a path, made a file:// URI, and a URI as given)."""
    target = stack.http_url if transport == "http" else stdio_target()
    done = run(
        stack, "call", target, "test_input_required_result_multiple_inputs",
        "--answer", "name=Alice", "--sample-reply", "Hello there,",
        "--root", str(tmp_path), "--root", "file:///srv/data",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == {"result": f"Hello there, Alice (roots: file://{tmp_path}, file:///srv/data)"}
    assert "answered a sampling request with --sample-reply" in done.stderr


class TerminalCall:
    """The command with a pseudo-terminal for stdin (a user at the keyboard) and its stderr read
    as it comes, prompts included (they end without a newline)."""

    def __init__(self, stack: Stack, *args: str) -> None:
        self.keyboard, terminal = pty.openpty()
        self.process = subprocess.Popen(
            [*CLI, *args], env=stack.env, cwd=REPO, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        os.close(terminal)
        self.seen = ""
        self._answered = 0  # how much of `seen` the prompts answered so far cover
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        while chunk := os.read(self.process.stderr.fileno(), 4096):
            with self._changed:
                self.seen += chunk.decode(errors="replace")
                self._changed.notify_all()

    def type_after(self, prompt: str, keys: bytes, timeout: float = 60) -> None:
        """Wait for `prompt` on stderr (after what was answered already), then type `keys`."""
        with self._changed:
            shown = self._changed.wait_for(lambda: self.seen.find(prompt, self._answered) >= 0, timeout)
            if shown:
                self._answered = self.seen.index(prompt, self._answered) + len(prompt)
        assert shown, f"no {prompt!r} on stderr:\n{self.seen}"
        os.write(self.keyboard, keys)

    def finish(self) -> tuple[int, str]:
        """The exit code and stdout (stderr is the reader's: `communicate` would take it)."""
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        code = self.process.wait(60)
        self._reader.join(10)
        return code, out.decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.keyboard)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("progress", ["lines", "bar"])
def test_on_a_terminal_each_field_is_asked(stack: Stack, progress: str) -> None:
    """A prompt per field, on stderr; with the live bar, the bar is stopped first (rich shows the
    cursor again, `ESC[?25h`), so no redraw lands on the prompt, and started again after."""
    call = TerminalCall(stack, "call", stack.http_url, "test_input_required_result_multi_round", "--progress", progress)
    try:
        call.type_after("name", b"Alice\n")
        call.type_after("color", b"blue\n")
        code, out = call.finish()
    finally:
        call.stop()
    assert code == EXIT_OK, call.seen
    assert json.loads(out) == {"result": "Alice likes blue"}
    plain = ANSI.sub("", call.seen)
    assert "? Step 1: What is your name?\n" in plain and "name*: " in plain and "color*: " in plain, plain
    if progress == "bar":
        for question in ("Step 1: What is your name?", "Step 2: What is your favorite color?"):
            assert re.search(rf"\x1b\[\?25h(\x1b\[[0-9;]*m)*\? (\x1b\[[0-9;]*m)*{re.escape(question)}", call.seen)
        between = plain.split("name*: ", 1)[1].split("? Step 2", 1)[0]
        assert "test_input_required_result_multi_round" in between, "the bar is back once answered"


def test_ctrl_d_at_a_prompt_dismisses_the_question(stack: Stack) -> None:
    call = TerminalCall(stack, "call", stack.http_url, "test_input_required_result_multi_round")
    try:
        call.type_after("name*: ", b"\x04")  # Ctrl-D: end of input on a terminal
        code, out = call.finish()
    finally:
        call.stop()
    assert code == EXIT_TOOL_ERROR, call.seen
    assert "The user dismissed the question: Step 1: What is your name?" in call.seen and out == ""


def test_ctrl_c_at_a_prompt_cancels_the_call(stack: Stack) -> None:
    """The prompt blocks in a thread of its own: Ctrl-C still cancels the call and the command
    exits, without waiting for the user to finish typing."""
    call = TerminalCall(stack, "call", stack.http_url, "test_input_required_result_multi_round")
    try:
        call.type_after("name*: ", b"Ali")
        call.process.send_signal(signal.SIGINT)
        code, out = call.finish()
    finally:
        call.stop()
    assert code == EXIT_INTERRUPTED, call.seen
    assert "cancelled (Ctrl-C): the call to test_input_required_result_multi_round was cancelled" in call.seen
    assert out == ""


async def test_the_command_answers_in_both_protocol_eras(stack: Stack, connect: Connect) -> None:
    """The command's `Responder` on the SDK client of each transport, 2025-11-25 (`http-legacy`:
    elicitation/create, sampling/createMessage and roots/list on the call's stream) included,
    which the command itself reaches only on servers without 2026-07-28."""
    notes = StringIO()
    given = Givens(parse_answers(["name=Alice", "color=blue"], None), "Hi", parse_roots(["file:///srv"]))
    responder = Responder(ProgressView("test", "lines", Console(file=notes, width=200)), given)
    callbacks = responder.callbacks()
    options = {
        "elicitation_callback": callbacks.elicitation,
        "sampling_callback": callbacks.sampling,
        "list_roots_callback": callbacks.list_roots,
    }
    async with connect(**options) as client:
        rounds = await client.call_tool("test_input_required_result_multi_round", {})
        several = await client.call_tool("test_input_required_result_multiple_inputs", {})
    assert rounds.structured_content == {"result": "Alice likes blue"}, rounds
    assert several.structured_content == {"result": "Hi Alice (roots: file:///srv)"}, several
    assert "answered 'Step 2: What is your favorite color?': color given" in notes.getvalue()


# --- resource links: listed, and saved with --save-artifacts -------------------------------------

ARTIFACT_SERVER = """
import random

import mcp_types as types
from mcp.server.mcpserver import MCPServer

app = MCPServer("artifacts")
DATA = random.Random(7).randbytes(2 * 1024 * 1024)
NOTES = "caf\\u00e9 notes\\nline 2\\n"


@app.resource("test://files/notes.txt", mime_type="text/plain")
def notes() -> str:
    return NOTES


@app.resource("test://files/data.bin", mime_type="application/octet-stream")
def data() -> bytes:
    return DATA


def link(name: str, uri: str, mime_type: str | None = None, size: int | None = None) -> types.ResourceLink:
    return types.ResourceLink(type="resource_link", name=name, uri=uri, mime_type=mime_type, size=size)


@app.tool()
def make_files(missing: bool = False) -> list[types.ContentBlock]:
    blocks: list[types.ContentBlock] = [
        types.TextContent(type="text", text="made 3 files"),
        link("notes.txt", "test://files/notes.txt", "text/plain", len(NOTES.encode())),
        link("data.bin", "test://files/data.bin", "application/octet-stream", len(DATA)),
        link("../../etc/evil", "test://files/notes.txt", size=1),  # hostile, and its size wrong
    ]
    if missing:
        blocks.append(link("gone.csv", "test://files/gone.csv"))
    return blocks


app.run("stdio")
"""
ARTIFACT_DATA = random.Random(7).randbytes(2 * 1024 * 1024)
ARTIFACT_NOTES = "caf\u00e9 notes\nline 2\n".encode()


def run_artifact_server(*args: str) -> subprocess.CompletedProcess[str]:
    """`call` on `ARTIFACT_SERVER` over stdio: a plain SDK server, no stack needed."""
    target = "stdio:" + shlex.join([sys.executable, "-c", ARTIFACT_SERVER])
    return subprocess.run(
        [*CLI, "call", target, "make_files", *args],
        env=os.environ | {"COLUMNS": "160"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def files_under(root: Path) -> set[Path]:
    return {Path(folder, name) for folder, _, names in os.walk(root) for name in names}


def test_resource_links_are_listed_and_saved_into_the_directory(tmp_path: Path) -> None:
    """Without --save-artifacts, a `link:` line each; with it, each read and written into DIR
    (made, parents too), the hostile `../../etc/evil` as a plain name inside it, nothing elsewhere."""
    listed = run_artifact_server()
    assert listed.returncode == EXIT_OK, listed.stderr
    assert listed.stdout.splitlines() == [
        "made 3 files",
        "link: notes.txt test://files/notes.txt (text/plain, 19 B)",
        "link: data.bin test://files/data.bin (application/octet-stream, 2.0 MiB)",
        "link: ../../etc/evil test://files/notes.txt (1 B)",
    ]

    out = tmp_path / "made" / "out"
    saved = run_artifact_server("--save-artifacts", str(out))
    assert saved.returncode == EXIT_OK, saved.stderr
    assert (out / "notes.txt").read_bytes() == ARTIFACT_NOTES, "text, as UTF-8"
    assert (out / "data.bin").read_bytes() == ARTIFACT_DATA, "a blob, decoded"
    assert (out / "etc_evil").read_bytes() == ARTIFACT_NOTES
    assert files_under(tmp_path) == {out / "notes.txt", out / "data.bin", out / "etc_evil"}, "nothing outside DIR"
    assert not (tmp_path / "etc").exists()
    assert f"saved data.bin to {out / 'data.bin'} (2.0 MiB)" in saved.stderr, saved.stderr
    assert "warning: ../../etc/evil is 19 bytes, the link said 1" in saved.stderr
    assert "link: data.bin test://files/data.bin" in saved.stdout, "the result is shown all the same"


def test_a_link_that_cannot_be_read_is_reported_and_the_rest_saved_beside_existing_files(tmp_path: Path) -> None:
    """A link to a resource the server does not have: exit 1 and an error, the others saved; a
    file already in DIR is kept and the new one numbered; --json-output says what went where."""
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    done = run_artifact_server("--arg", "missing=true", "--save-artifacts", str(tmp_path), "--json-output")
    assert done.returncode == EXIT_TOOL_ERROR, done.stderr
    result = json.loads(done.stdout)
    assert [block["type"] for block in result["content"]] == ["text", *["resource_link"] * 4], "the result unchanged"
    assert result["savedArtifacts"] == [
        {"uri": "test://files/notes.txt", "name": "notes.txt", "path": str(tmp_path / "notes-1.txt"), "bytes": 19},
        {"uri": "test://files/data.bin", "name": "data.bin", "path": str(tmp_path / "data.bin"), "bytes": 2097152},
        {"uri": "test://files/notes.txt", "name": "../../etc/evil", "path": str(tmp_path / "etc_evil"), "bytes": 19},
    ]
    (failed,) = result["failedArtifacts"]
    assert failed["uri"] == "test://files/gone.csv" and "JSON-RPC error -32602" in failed["error"], failed
    assert "error: cannot save gone.csv (test://files/gone.csv)" in done.stderr, done.stderr
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (tmp_path / "data.bin").read_bytes() == ARTIFACT_DATA
    assert files_under(tmp_path) == {tmp_path / name for name in ("notes.txt", "notes-1.txt", "data.bin", "etc_evil")}


@pytest.mark.skipif(not hasattr(test_jobs, "make_file"), reason="the stack's jobs make no artifacts yet")
@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_a_jobs_artifact_is_saved_from_the_stack(stack: Stack, transport: str, tmp_path: Path) -> None:
    """mcp-jobs' own artifacts (`progress.artifact`): `mcp-jobs://jobs/<id>/artifacts/<name>`,
    read back on the call's connection, a few MB of it, byte for byte."""
    target = stack.http_url if transport == "http" else stdio_target()
    size = 3 * 1024 * 1024
    done = run(
        stack, "call", target, "make_file", "--arg", "megabytes=3", "--arg", "name=big.bin",
        "--save-artifacts", str(tmp_path), "--json-output",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    (saved,) = json.loads(done.stdout)["savedArtifacts"]
    assert re.fullmatch(rf"mcp-jobs://jobs/{UUID}/artifacts/.+", saved["uri"]), saved
    assert saved["bytes"] == size and Path(saved["path"]).parent == tmp_path, saved
    assert Path(saved["path"]).read_bytes() == (bytes(range(256)) * (size // 256))[:size]
    assert files_under(tmp_path) == {Path(saved["path"])}
