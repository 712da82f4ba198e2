"""What tracing costs the server: CPU per call with the `otel` extra installed but off, on, and
without the extra at all, the three servers taking turns on one stack.

- *without the extra*: the same checkout installed (editable) into a virtualenv of its own with
  no extras (`build/bench-no-otel-<pyproject hash>`), so no OpenTelemetry SDK can be imported;
- *installed, variables unset*: this virtualenv (the test extra holds `otel`), no `OTEL_*`
  variable: the target is within 2 % of the first;
- *tracing on*: the same, exporting every span over OTLP/HTTP to a receiver in this process.

Each server gets the same zero-step calls, one at a time, in rounds that rotate the order, and
the figure is its CPU time (psutil) over its calls. The workers are shared (and untraced), so only
the server's side is priced here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import distributions

from mcp import Client

from bench.measure import Row
from bench.stack import bench_stack
from bench.throughput import with_cpu
from mcp_jobs.server.dev_redis import free_port
from tests.support.otlp import otlp_receiver
from tests.support.processes import REPO, ManagedProcess, start_http_server
from tests.support.venvs import pinned_venv

SCENARIO = "8 tracing cost"


def without_extra_python() -> str:
    """The interpreter of a virtualenv holding this checkout without extras, each dependency at
    the version this one has (a constraints file: nothing else differs but the extra), made on
    first use and again whenever pyproject.toml or those versions change."""
    pins = sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != "mcp-jobs"
    )
    constraints = "\n".join(pins) + "\n"
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + constraints.encode()).hexdigest()[:10]
    folder = REPO / "build" / f"bench-no-otel-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / f"{folder.name}.constraints").write_text(constraints)
    return str(pinned_venv(folder, ["-e", str(REPO), "-c", str(folder.parent / f"{folder.name}.constraints")]))


async def sequential_calls(url: str, count: int) -> None:
    async with Client(url, mode="auto") as client:
        for _ in range(count):
            result = await client.call_tool("noop", {})
            assert not result.is_error, result.content


@contextmanager
def three_servers(env: dict[str, str]) -> Iterator[dict[str, tuple[str, ManagedProcess]]]:
    """The three servers on one stack's Redis and workers, by name: URL and process."""
    servers: dict[str, tuple[str, ManagedProcess]] = {}
    with ExitStack() as stack, otlp_receiver() as receiver:
        traced = env | {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
        for name, server_env, command in (
            ("without the extra", env, [without_extra_python(), "-m", "mcp_jobs.server.cli"]),
            ("installed, variables unset", env, None),
            ("tracing on", traced, None),
        ):
            port = free_port()
            process = start_http_server(server_env, port, command)
            stack.callback(process.stop)
            servers[name] = (f"http://127.0.0.1:{port}/mcp", process)
        yield servers
        assert receiver.spans, "the traced server exported its spans"


def tracing_cost(quick: bool) -> list[Row]:
    calls, rounds = (100, 4) if quick else (300, 6)
    with bench_stack(workers=2, concurrency=2, server=False) as stack, three_servers(stack.env) as servers:
        names = list(servers)
        cpu = dict.fromkeys(names, 0.0)
        for name in names:  # warm-up: each server's first calls import and connect
            with_cpu([servers[name][1].pid], lambda url=servers[name][0]: sequential_calls(url, 10))
        for turn in range(rounds):
            for name in names[turn % 3 :] + names[: turn % 3]:
                url, process = servers[name]
                _, (seconds,) = with_cpu([process.pid], lambda url=url: sequential_calls(url, calls))
                cpu[name] += seconds
    per_call = {name: 1000 * seconds / (calls * rounds) for name, seconds in cpu.items()}
    base = per_call["without the extra"]
    note = f"{calls * rounds} zero-step calls each, {rounds} rounds taking turns, one at a time"
    return [
        Row(SCENARIO, "server CPU per call, without the otel extra", base, "ms", note=note),
        Row(
            SCENARIO,
            "server CPU per call, extra installed, OTEL_* unset",
            per_call["installed, variables unset"],
            "ms",
            base,
            "≤ 1.02×",
            "baseline: the same code without the extra",
        ),
        Row(
            SCENARIO,
            "server CPU per call, tracing on (OTLP/HTTP)",
            per_call["tracing on"],
            "ms",
            base,
            "",
            "every span exported: the SDK's middleware span, the enqueue, batching and the exporter",
        ),
    ]
