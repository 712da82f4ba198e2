"""`mcp-jobs serve --processes N`, end to end: real Redis, a real worker, the real supervisor and
its server processes, real clients.

Which process the kernel hands a TCP connection to is its choice, so the tests that need a
request to land on a given process send it to that process's own UNIX socket (the one the
supervisor's processes forward sessions over), named in the supervisor's ready line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from mcp import Client

from mcp_jobs._contract import JOB_ID_META_KEY
from mcp_jobs.server.dev_redis import free_port
from mcp_jobs.server.processes import ChildSpec
from mcp_jobs.server.session_routing import socket_path
from tests.conftest import Stack
from tests.support.helpers import ProgressLog, wait_for_state
from tests.support.processes import ManagedProcess, python_module
from tests.support.rawclient import (
    accept,
    call_messages,
    modern_request,
    open_session,
    progress_of,
    question_of,
    round_trip,
    tool_call,
)

pytestmark = pytest.mark.anyio

READY = r"(\d+) server processes ready \(pids ([\d, ]+); sessions forwarded over (\S+)\)"


class Supervised:
    """A running `serve --processes N`: its output, port, children's pids and socket directory."""

    def __init__(self, env: dict[str, str], processes: int) -> None:
        self.port = free_port()
        args = python_module("mcp_jobs.server.cli", "serve", "--port", str(self.port), "--processes", str(processes))
        self.process = ManagedProcess("supervisor", args, env)
        self.pids, self.peers = self.wait_ready()
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def wait_ready(self, nth: int = 1) -> tuple[list[int], Path]:
        """The pids and socket directory of the `nth` time all the processes were ready."""
        match = re.search(READY, self.process.wait_for_line(READY, timeout=60, nth=nth))
        assert match is not None
        return [int(pid) for pid in match.group(2).split(", ")], Path(match.group(3))

    def at(self, index: int) -> httpx.AsyncClient:
        """A client whose every request lands on process `index` (its own socket)."""
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path(self.peers, index)))
        return httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{self.port}", timeout=30)


@pytest.fixture
def supervised(stack: Stack) -> Iterator[Supervised]:
    server = Supervised(stack.env | {"MCP_JOBS_SHUTDOWN_GRACE": "4"}, processes=2)
    try:
        yield server
    finally:
        server.process.stop()


async def test_both_eras_are_served_through_the_one_port(supervised: Supervised) -> None:
    """Real SDK clients in both eras, several at once, each call with its progress and result."""

    async def calls(mode: str, log: ProgressLog, results: list[Any]) -> None:
        async with Client(supervised.url, mode=mode) as client:
            for steps in (2, 3):
                results.append(
                    await client.call_tool("sleep_steps", {"steps": steps, "delay": 0.05}, progress_callback=log)
                )

    outcomes: dict[str, tuple[ProgressLog, list[Any]]] = {}
    async with anyio.create_task_group() as tg:
        for n in range(4):
            mode = ("auto", "legacy")[n % 2]
            outcomes[f"{mode}-{n}"] = (ProgressLog(), [])
            tg.start_soon(calls, mode, *outcomes[f"{mode}-{n}"])
    for name, (log, results) in outcomes.items():
        assert [r.structured_content["steps"] for r in results] == [2, 3], name
        assert log.values[-1] == 3 and len(log.values) == 2 + 1 + 3 + 1, (name, log.values)


async def test_a_session_is_served_by_its_process_whichever_process_a_request_reaches(
    supervised: Supervised,
) -> None:
    async with supervised.at(0) as first, supervised.at(1) as second:
        headers = await open_session(first, "/mcp")
        assert headers["mcp-session-id"].startswith("0."), "the id names the process that holds the session"
        messages = await call_messages(
            second, "/mcp", headers, tool_call(1, "sleep_steps", {"steps": 3, "delay": 0.05}, "t")
        )
        assert [p["progress"] for p in progress_of(messages)] == [0, 1, 2, 3], messages
        assert messages[-1]["result"]["structuredContent"]["steps"] == 3
        async with second.stream("GET", "/mcp", headers=headers) as stream:  # the session's own stream, passed on
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["mcp-session-id"] == headers["mcp-session-id"]
        other = await open_session(second, "/mcp")
        assert other["mcp-session-id"].startswith("1.")
        assert (await first.delete("/mcp", headers=other)).status_code == 200
        refused = await second.post("/mcp", json=tool_call(2, "sleep_steps", {"steps": 1}), headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["message"] == "Session not found"
        untagged = headers | {"mcp-session-id": headers["mcp-session-id"].partition(".")[2]}
        assert (await second.post("/mcp", json=tool_call(3, "sleep_steps", {}), headers=untagged)).status_code == 404
        # A session over TCP, each request on a connection of its own: the kernel spreads them.
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=30) as fresh:
            session = await open_session(fresh, supervised.url)
            for n in range(6):
                body = tool_call(10 + n, "sleep_steps", {"steps": 1, "delay": 0.0}, f"f{n}")
                answer = await call_messages(fresh, supervised.url, session, body)
                assert answer[-1]["result"]["structuredContent"]["steps"] == 1, answer


async def test_a_client_leaving_a_passed_on_stream_closes_it_at_its_process(supervised: Supervised) -> None:
    """The session's GET stream, passed on from process 1 to process 0: when the client leaves,
    process 0's stream must end too, or it refuses the client's next one (409: one per session)."""
    async with supervised.at(0) as first, supervised.at(1) as second:
        headers = await open_session(first, "/mcp")
        async with second.stream("GET", "/mcp", headers=headers) as stream:
            assert stream.status_code == 200
        with anyio.fail_after(20):
            while True:  # the owner notices the closed relay within moments; until then it says 409
                async with second.stream("GET", "/mcp", headers=headers) as again:
                    if again.status_code == 200:
                        break
                    assert again.status_code == 409, again.status_code
                await anyio.sleep(0.1)


async def test_a_question_is_answered_through_any_process(supervised: Supervised) -> None:
    """2026-07-28: a job's question and its answers reach different processes (one sealing key
    for all of them when none is configured)."""
    tag = f"processes-{uuid.uuid4().hex[:6]}"
    async with supervised.at(0) as first, supervised.at(1) as second:
        key, state = question_of(await round_trip(first, "/mcp", tag))
        key, state = question_of(await round_trip(second, "/mcp", tag, state=state, answers={key: accept(ok=True)}))
        done = await round_trip(first, "/mcp", tag, state=state, answers={key: accept(colour="plum")})
    assert done["result"]["structuredContent"] == {"runs": 1, "colour": "plum"}, done


async def test_metrics_add_up_every_process(supervised: Supervised) -> None:
    async with supervised.at(0) as first, supervised.at(1) as second:
        for http in (first, second, second):
            response = await modern_request(
                http, "/mcp", "tools/call", {"name": "sleep_steps", "arguments": {"steps": 1}}, tasks=False
            )
            assert response["result"]["structuredContent"]["steps"] == 1, response
        scraped = [(await http.get("/metrics")).text for http in (first, second)]
    line = 'mcp_jobs_calls_total{outcome="succeeded",tool="sleep_steps"} 3.0'
    assert all(line in text for text in scraped), scraped[0]


async def test_sigterm_drains_every_process(stack: Stack, supervised: Supervised) -> None:
    """Calls in flight on either process: the short one finishes, the long one is handed off."""
    results: dict[str, list[dict[str, Any]]] = {}
    logs = {"short": ProgressLog(), "long": ProgressLog()}

    async def call(index: int, name: str, steps: int) -> None:
        async with supervised.at(index) as http:
            headers = await open_session(http, "/mcp")
            body = tool_call(1, "sleep_steps", {"steps": steps, "delay": 0.2}, name)
            async with http.stream("POST", "/mcp", json=body, headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        message = json.loads(line[5:])
                        results.setdefault(name, []).append(message)
                        if message.get("method") == "notifications/progress":
                            await logs[name](message["params"]["progress"], None, None)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, 0, "short", 4)
        tg.start_soon(call, 1, "long", 40)
        await logs["short"].wait_for(1)
        await logs["long"].wait_for(1)
        os.kill(supervised.process.pid, signal.SIGTERM)
    assert supervised.process.process.wait(20) == 0, supervised.process.output()
    assert "result" in results["short"][-1], supervised.process.output()
    assert results["short"][-1]["result"]["structuredContent"]["steps"] == 4
    handed = results["long"][-1]["result"]
    assert handed["isError"] and "goes on in the background" in handed["content"][0]["text"], handed
    key = stack.keys.job(handed["_meta"][JOB_ID_META_KEY])
    assert await wait_for_state(stack.redis(), key, {"succeeded"}, timeout=20) == "succeeded", "the job went on"
    assert not any(psutil.pid_exists(pid) for pid in supervised.pids), "every server process is gone"


async def test_a_dead_process_is_replaced_and_no_process_outlives_the_supervisor(supervised: Supervised) -> None:
    os.kill(supervised.pids[0], signal.SIGKILL)
    supervised.process.wait_for_line(r"server process 0 \(pid \d+\) exited with code -9: starting another", 30)
    pids, _ = supervised.wait_ready(nth=2)
    assert pids[1] == supervised.pids[1] and pids[0] != supervised.pids[0]
    async with supervised.at(0) as replaced:
        response = await modern_request(
            replaced, "/mcp", "tools/call", {"name": "sleep_steps", "arguments": {"steps": 1}}, tasks=False
        )
        assert response["result"]["structuredContent"]["steps"] == 1, response
    os.kill(supervised.process.pid, signal.SIGKILL)  # no chance to stop them: they notice it is gone
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in pids], timeout=30)
    assert not alive, f"{alive} outlived the supervisor"


def test_a_process_that_cannot_start_stops_the_server(stack: Stack) -> None:
    """A server process failing at start (here: a cluster setting against a standalone Redis) is
    not started again and again: the supervisor stops and says which failed."""
    env = stack.env | {
        "MCP_JOBS_REDIS_CLUSTER": "true",
        "MCP_JOBS_BROKER_URL": stack.env["MCP_JOBS_REDIS_URL"].rsplit("/", 1)[0] + "/15",
    }
    args = python_module("mcp_jobs.server.cli", "serve", "--port", str(free_port()), "--processes", "2")
    process = ManagedProcess("supervisor", args, env)
    try:
        code = process.process.wait(60)
    finally:
        process.stop()
    assert code != 0
    assert re.search(r"server process \d failed to start \(exit code \d+\): stopping", process.output(200))


def test_processes_is_for_http() -> None:
    args = python_module(
        "mcp_jobs.server.cli", "serve", "--transport", "stdio", "--processes", "2", "--jobs", "tests.jobs"
    )
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--processes is for HTTP" in done.stderr


def test_a_child_spec_survives_its_command_line() -> None:
    spec = ChildSpec(1, 4, 5, 6, Path("/tmp/mcp-jobs-x,y"))
    assert ChildSpec.decode(spec.encode()) == spec
