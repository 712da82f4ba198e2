"""The official MCP conformance suite against the real stack, at both protocol versions.

npm `@modelcontextprotocol/conformance` (pinned in `tests/conformance/package.json`, with the
Node 22 its CLI needs) runs against a server of its own here, whose fixture tools
(`mcp_jobs.conformance`) run as real jobs on a real worker: first exactly the scenarios each
revision requires (`--requirements`, the suite's own definition of a conformant server), then
every scenario it has. The checked-in baseline, `tests/conformance/expected-failures.yml`, lists
what mcp-jobs does not implement and why; the suite fails the run on any other failure or
warning, and on a listed one that starts passing.

The stack is the suite's own: its multi-round scenarios leave jobs waiting for answers that never
come (a tampered state is refused, and the job is unaffected), and a waiting job holds its worker
slot until its input timeout. So its worker has many thread slots and a short input timeout, and
the other tests' workers never see those jobs.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from mcp_jobs.server.dev_redis import free_port
from tests.support.cluster import cluster_set
from tests.support.processes import start_http_server, start_worker

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


@pytest.fixture(scope="module")
def server_url(stack_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[str]:
    """A server and a worker of the suite's own (see the module doc), on the session's Redis,
    or (param "cluster") on a Redis Cluster of three masters, the session's Redis its broker."""
    database = stack_env["MCP_JOBS_REDIS_URL"].rsplit("/", 1)[0]
    env = stack_env | {
        # A database of its own: the broker's queues are not namespaced, and the session's workers
        # must not take these jobs.
        "MCP_JOBS_REDIS_URL": f"{database}/3",
        "MCP_JOBS_NAMESPACE": f"conformance-{uuid.uuid4().hex[:8]}",
        "MCP_JOBS_INPUT_TIMEOUT": "15",
    }
    with ExitStack() as resources:
        if request.param == "cluster":
            nodes = resources.enter_context(cluster_set(3))
            env |= {
                "MCP_JOBS_REDIS_URL": nodes.url,
                "MCP_JOBS_REDIS_CLUSTER": "true",
                "MCP_JOBS_BROKER_URL": f"{database}/{CLUSTER_BROKER_DB}",
            }
        worker = start_worker(env, f"conformance-{uuid.uuid4().hex[:6]}", concurrency=32, pool="threads")
        resources.callback(worker.stop)
        port = free_port()
        resources.callback(start_http_server(env, port).stop)
        yield f"http://127.0.0.1:{port}/mcp"


CLUSTER_BROKER_DB = 13
"""The session Redis's database that is the broker of the suite's cluster stack."""


MULTI_ROUND = [
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-missing-input-response",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
    "input-required-result-validate-input",
    "input-required-result-ignore-extra-params",
    "server-stateless",
    "tasks-mrtr-input",
    "tasks-mrtr-composition",
]

RUNS = {
    # Exactly what each revision requires, frozen at its release.
    "required by 2026-07-28": (["--requirements", "2026-07-28"], [*MULTI_ROUND, "prompts-get-with-args", "caching"]),
    "required by 2025-11-25": (
        ["--requirements", "2025-11-25"],
        [
            "tools-call-with-logging",
            "logging-set-level",
            "tools-call-sampling",
            "tools-call-elicitation",
            "elicitation-sep1034-defaults",
            "elicitation-sep1330-enums",
            "prompts-get-embedded-resource",
        ],
    ),
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


CASES = [
    *(pytest.param(run, "standalone", id=run) for run in RUNS),
    # What each revision requires, again with the jobs on a Redis Cluster.
    *(pytest.param(run, "cluster", id=f"{run}, on a cluster") for run in RUNS if run.startswith("required")),
]


@pytest.mark.parametrize(("run", "server_url"), CASES, indirect=["server_url"])
def test_the_conformance_suite_passes_but_for_the_baseline(
    suite: list[str], server_url: str, tmp_path: Path, run: str
) -> None:
    selection, must_pass = RUNS[run]
    baseline = str(SUITE_DIR / "expected-failures.yml")
    command = [
        *suite,
        "server",
        "--url",
        server_url,
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
