"""The official TypeScript SDK as the client: slow jobs survive its request timeout when it resets
the timeout on progress (thanks to the server's keep-alive notices), and its cancel stops the job.

Runs against the fault-test stack, whose keep-alive interval is 0.5 s.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from typing import Any

from tests.conftest import TS_CLIENT_DIR as CLIENT_DIR
from tests.support.helpers import job_keys
from tests.test_faults import KEEPALIVE, FaultStack, faults, stack  # noqa: F401 - the fault stack fixtures


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


def test_a_slow_silent_job_outlives_the_clients_timeout_through_keepalive(node: str, stack: FaultStack) -> None:
    silent_for = 4
    timeout_ms = int(KEEPALIVE * 1000 * 3)  # well under the job's run time
    kept = ts_call(node, stack.url, "silent", {"seconds": silent_for}, timeout_ms, reset=True)
    assert kept["ok"], kept
    assert kept["result"]["structuredContent"] == {"result": "done quietly"}
    values = [p["progress"] for p in kept["progress"]]
    assert len(values) >= silent_for / KEEPALIVE - 2 and all(b > a for a, b in itertools.pairwise(values)), values
    # The same client without resetting on progress gives up: the timeout is real.
    impatient = ts_call(node, stack.url, "silent", {"seconds": silent_for}, timeout_ms, reset=False)
    assert not impatient["ok"] and "timed out" in impatient["error"].lower(), impatient


def test_the_typescript_clients_cancel_stops_the_job(node: str, stack: FaultStack) -> None:
    client = stack.client()
    before = job_keys(client, stack.keys)
    out = ts_call(
        node,
        stack.url,
        "unsafe_steps",
        {"tag": "ts-cancel", "steps": 50, "delay": 0.1},
        60_000,
        reset=True,
        abort_after=2,
    )
    aborted_at = time.monotonic()
    assert out["aborted"], out
    (key,) = job_keys(client, stack.keys) - before
    deadline = aborted_at + 5
    while client.hget(key, "state") not in {"cancelled", "succeeded", "failed"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.hget(key, "state") == "cancelled"
    assert float(client.hget(key, "progress") or 0) < 50
