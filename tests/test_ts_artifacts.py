"""The official TypeScript SDK clients read a job's artifact back byte-identical from another replica.

The issue's promise, for the TypeScript side: a 20 MB file a job makes goes by `resource_link` (the
call's result stays small), a client of a second server replica reads it back identical with
`resources/read`, and another caller reading it (or, on 2025-11-25, subscribing to its job) gets
the revision's not-found error. Both pinned SDK lines, over HTTP: `@modelcontextprotocol/sdk` 1.x
(2025-11-25) and `@modelcontextprotocol/client` 2.x (2026-07-28), driven by tests/ts_client/artifacts.mjs.

A stack of this module's own (its own Redis database on the session's server, as
tests/test_resources.py does): one worker and two server replicas with authentication, so that
two callers (alice and bob) are told apart.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_jobs.server.auth import hash_token
from tests.conftest import TS_CLIENT_DIR
from tests.support.processes import replica_stack

pytestmark = [pytest.mark.timeout(300)]

ALICE, BOB = "alice-ts-artifacts-" + "a" * 20, "bob-ts-artifacts-" + "b" * 20
TOKENS = [
    {"sha256": hash_token(ALICE), "caller": "alice", "scopes": []},
    {"sha256": hash_token(BOB), "caller": "bob", "scopes": []},
]
MEGABYTES = 20
SIZE = MEGABYTES * 1024 * 1024
NAME = "big.bin"
ERAS = {"v1": "2025-11-25", "v2": "2026-07-28"}
"""The protocol version each pinned SDK line speaks here."""
NOT_FOUND = {"v1": -32002, "v2": -32602}
"""Resource-not-found in each era (2025-11-25's own code; 2026-07-28's invalid-params, SEP-2164)."""


@pytest.fixture(scope="module")
def replicas(stack_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Two authenticated server replicas and a worker on a Redis database of this module's own."""
    with replica_stack(stack_env | {"MCP_JOBS_AUTH_TOKENS": json.dumps(TOKENS)}, 6, "ts-artifacts") as (first, second):
        yield first, second


def run_artifacts(node: str, sdk: str, first: str, second: str) -> dict[str, Any]:
    """artifacts.mjs's report: alice calls on `first` and reads on `second`, then bob tries."""
    args = [node, "artifacts.mjs", sdk, first, second, ALICE, BOB, str(MEGABYTES), NAME]
    done = subprocess.run(args, cwd=TS_CLIENT_DIR, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["error"] is None, report
    return report


@pytest.fixture(scope="module", params=["v1", "v2"])
def report(request: pytest.FixtureRequest, node: str, replicas: tuple[str, str]) -> dict[str, Any]:
    """One run per SDK line (a 20 MB round trip is worth doing once), shared by the tests below."""
    first, second = replicas
    assert first != second
    out = run_artifacts(node, request.param, first, second)
    out["expected_era"] = ERAS[request.param]
    return out


def pattern(size: int) -> bytes:
    """What `make_file` (tests/jobs.py) writes."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def test_each_client_speaks_its_era(report: dict[str, Any]) -> None:
    """The read really is a client of the era under test (a silent fallback would prove nothing)."""
    era = report["expected_era"]
    assert report["protocolVersions"] == {"a": era, "b": era, "other": era}, report


def test_the_file_goes_by_link_and_the_result_stays_small(report: dict[str, Any]) -> None:
    """The call's result is a text and a link, well under 4 KB: the 20 MB did not go inline."""
    call = report["call"]
    assert not call["isError"], report
    assert call["types"] == ["text", "resource_link"], call
    assert call["jsonSize"] < 4096, f"the result is {call['jsonSize']} bytes: the file went inline"


def test_the_link_names_the_file(report: dict[str, Any]) -> None:
    """The link carries the artifact's URI, name, MIME type and size, as the SDK received them."""
    link = report["link"]
    assert (link["name"], link["mimeType"], link["size"]) == (NAME, "application/octet-stream", SIZE), link
    assert link["uri"].startswith("mcp-jobs://jobs/") and link["uri"].endswith(f"/artifacts/{NAME}"), link


def test_another_replica_reads_it_back_identical(report: dict[str, Any]) -> None:
    """One blob content, for the link's URI, whose bytes hash as the job's pattern does."""
    read = report["read"]
    assert (read["contents"], read["uri"], read["kind"]) == (1, report["link"]["uri"], "blob"), read
    assert read["mimeType"] == "application/octet-stream", read
    assert read["length"] == SIZE, read
    assert read["sha256"] == hashlib.sha256(pattern(SIZE)).hexdigest(), read


def test_another_caller_reads_nothing_of_it(report: dict[str, Any]) -> None:
    """Bob reading alice's artifact gets the era's not-found, naming the URI (not the bytes)."""
    refused = report["foreign"]["read"]
    code = NOT_FOUND[report["sdk"]]
    assert refused is not None and refused["code"] == code, refused
    assert (refused["data"] or {}).get("uri") == report["link"]["uri"], refused


def test_another_caller_cannot_subscribe_to_it(report: dict[str, Any]) -> None:
    """On 2025-11-25 bob's resources/subscribe to alice's job is refused as a read is (2026-07-28
    has no resources/subscribe; its listen streams are tested in tests/test_resources.py)."""
    if report["sdk"] != "v1":
        assert report["foreign"]["subscribe"] == "skipped", report
        return
    refused = report["foreign"]["subscribe"]
    job_uri = report["link"]["uri"].rsplit("/artifacts/", 1)[0]
    assert refused is not None and refused["code"] == NOT_FOUND["v1"], refused
    assert (refused["data"] or {}).get("uri") == job_uri, refused
