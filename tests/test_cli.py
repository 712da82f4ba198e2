"""`mcp-jobs dev`, the quick start's command: with no Redis reachable it starts an embedded Valkey,
a worker and the server with the example jobs, serves a real call, and Ctrl-C stops all of it.
"""

from __future__ import annotations

import os
import re
import signal
import sys

import anyio
import psutil
import pytest
from mcp import Client

from mcp_jobs.server.dev_redis import free_port
from tests.conftest import Stack
from tests.support.helpers import ProgressLog
from tests.support.processes import ManagedProcess, python_module, start_http_server, wait_until
from tests.support.processes import _healthy as healthy


def test_dev_runs_everything_and_stops_cleanly_on_ctrl_c(stack_env: dict[str, str]) -> None:
    port = free_port()
    env = {k: v for k, v in stack_env.items() if not k.startswith("MCP_JOBS_")}
    # Nothing answers at this URL, and its password must never be printed.
    env |= {"MCP_JOBS_REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0", "MCP_JOBS_PORT": str(port)}
    dev = ManagedProcess("dev", python_module("mcp_jobs.server.cli", "dev", "--concurrency", "1"), env)
    try:
        line = dev.wait_for_line(r"started an embedded Valkey", timeout=30)
        assert "redis://:***@127.0.0.1:" in line
        wait_until(lambda: healthy(port), timeout=60, what="dev server", process=dev)
        dev.wait_for_line(r"ready\.", timeout=60)
        children = psutil.Process(dev.pid).children(recursive=True)
        assert any("valkey-server" in " ".join(c.cmdline()) for c in children)

        async def call() -> tuple[bool, list[float]]:
            log = ProgressLog()
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                result = await client.call_tool("sleep_steps", {"steps": 2, "delay": 0.05}, progress_callback=log)
            return result.is_error, log.values

        is_error, values = anyio.run(call)
        assert not is_error and values[-1] == 2

        os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        assert dev.process.wait(30) == 0, dev.output()
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert "hunter2" not in dev.output(10_000)
        # The embedded Valkey outlives the server and the worker it serves: Ctrl-C is not for it.
        assert not re.search(r"connection lost|could not withdraw", dev.output(10_000)), dev.output()
    finally:
        dev.stop()


@pytest.mark.parametrize(
    "args", [["serve", "--help"], ["worker", "--help"], ["dev", "--help"], ["jobs", "--help"], ["token", "--help"]]
)
def test_commands_have_help(args: list[str], stack_env: dict[str, str]) -> None:
    proc = ManagedProcess("help", python_module("mcp_jobs.server.cli", *args), stack_env)
    assert proc.process.wait(60) == 0
    proc.wait_for_line(r"Usage|usage", timeout=5)


@pytest.mark.parametrize(
    ("command", "must_not_load"),
    [
        ("call", {"celery", "kombu", "jwt", "prometheus_client", "redis", "mcp_jobs.server.app"}),
        ("tools", {"celery", "kombu", "jwt", "prometheus_client", "redis", "mcp_jobs.server.app"}),
        ("jobs", {"celery", "kombu", "jwt", "prometheus_client", "mcp_jobs.server.app"}),
    ],
)
def test_a_command_loads_only_what_it_needs(command: str, must_not_load: set[str], stack_env: dict[str, str]) -> None:
    """What `python -m bench.startup` times: the client starts without Celery, the server or auth."""
    probe = (
        "import sys\nfrom mcp_jobs.server.cli import main\ntry:\n"
        f"    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print('loaded:' + ','.join(sorted(sys.modules)))"
    )
    proc = ManagedProcess("probe", [sys.executable, "-c", probe], stack_env)
    assert proc.process.wait(60) == 0, proc.output()
    loaded = set(proc.wait_for_line(r"^loaded:", timeout=5).removeprefix("loaded:").split(","))
    assert "mcp_jobs.server.cli" in loaded
    assert not loaded & must_not_load, sorted(loaded & must_not_load)


@pytest.mark.anyio
@pytest.mark.parametrize(("setting", "loop"), [(None, "asyncio"), ("asyncio", "asyncio"), ("uvloop", "uvloop")])
async def test_serve_runs_the_event_loop_the_settings_name(stack: Stack, setting: str | None, loop: str) -> None:
    """uvloop is installed here (the test extra): `MCP_JOBS_EVENT_LOOP` decides the loop, not
    what happens to be installed, and a call goes through on either."""
    port = free_port()
    env = stack.env | ({"MCP_JOBS_EVENT_LOOP": setting} if setting else {})
    server = start_http_server(env, port)
    try:
        server.wait_for_line(rf"event loop: {loop}\b", timeout=30)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
        assert not result.is_error, result.content
    finally:
        server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("freeze", [True, False])
async def test_serve_freezes_its_start_up_heap_unless_told_not_to(stack: Stack, freeze: bool) -> None:
    """`server/collector.py`: by default the objects loaded at start leave the collector's sweeps
    (tens of thousands of them); `MCP_JOBS_GC_FREEZE=false` keeps Python's own settings."""
    port = free_port()
    env = stack.env | ({} if freeze else {"MCP_JOBS_GC_FREEZE": "false"})
    server = start_http_server(env, port)
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("sleep_steps", {"steps": 1, "delay": 0})
        assert not result.is_error, result.content
        server.wait_for_line(r'"POST /mcp HTTP/1.1" 200', timeout=30)  # served, so past the freeze
        frozen = [line for line in server.lines if "start-up objects frozen" in line]
        if freeze:
            (line,) = frozen
            count = int(re.search(r"garbage collector: (\d+) start-up objects frozen", line).group(1))  # type: ignore[union-attr]
            assert count > 10_000, line
        else:
            assert not frozen, frozen
    finally:
        server.stop()
