"""Authentication and per-caller isolation, against real server processes: static tokens and
JWTs from a local issuer (its JWKS served over HTTP here), two callers, every path that reaches
an existing job (tasks, the handoff tools), job scopes, and the off-loopback refusal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_jobs.server.auth import hash_token
from mcp_jobs.server.dev_redis import free_port
from tests.conftest import Stack
from tests.support.helpers import job_id_of
from tests.support.processes import REPO, ManagedProcess, start_http_server
from tests.support.rawclient import modern_request

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-token-" + "a" * 20, "bob-token-" + "b" * 20
TOKENS = [
    {"sha256": hash_token(ALICE), "caller": "alice", "scopes": ["jobs"]},
    {"sha256": hash_token(BOB), "caller": "bob", "scopes": ["jobs", "reports"]},
]


@asynccontextmanager
async def client_with(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


def serve(stack: Stack, **settings: str) -> tuple[str, ManagedProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = stack.env | {"MCP_JOBS_PUBLIC_URL": url, **{f"MCP_JOBS_{k.upper()}": v for k, v in settings.items()}}
    return url, start_http_server(env, port)


@pytest.fixture(scope="module")
def static_server(stack: Stack) -> Iterator[str]:
    url, server = serve(stack, auth_tokens=json.dumps(TOKENS), auth_scopes="jobs")
    try:
        yield url
    finally:
        server.stop()
        assert ALICE not in server.output(100_000) and BOB not in server.output(100_000), "tokens never logged"


async def test_requests_without_a_valid_token_get_a_complete_challenge(static_server: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        missing = await modern_request(http, static_server, "tools/list", {})
        wrong = await modern_request(http, static_server, "tools/list", {}, token="not-a-token")
        metadata = (await http.get(static_server.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))).json()
        health = await http.get(static_server.replace("/mcp", "/healthz"))
    for refused in (missing, wrong):
        assert refused["status"] == 401
        assert 'resource_metadata="http://127.0.0.1:' in refused["www-authenticate"]
        assert 'scope="jobs"' in refused["www-authenticate"]
    assert metadata["resource"] == static_server and metadata["authorization_servers"]
    assert health.status_code == 200, "probes need no token"


async def test_a_job_that_requires_a_scope_refuses_tokens_without_it(static_server: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        alice = await modern_request(
            http, static_server, "tools/call", {"name": "scoped_report", "arguments": {}}, token=ALICE, tasks=False
        )
        bob = await modern_request(
            http, static_server, "tools/call", {"name": "scoped_report", "arguments": {}}, token=BOB, tasks=False
        )
    assert alice["status"] == 403 and 'error="insufficient_scope"' in alice["www-authenticate"]
    assert 'scope="jobs reports"' in alice["www-authenticate"]
    assert bob["result"]["structuredContent"] == {"result": "report ready"}


async def test_one_callers_task_is_invisible_to_another(static_server: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        call = {"name": "sleep_steps", "arguments": {"steps": 50, "delay": 0.1}}
        created = (await modern_request(http, static_server, "tools/call", call, token=ALICE))["result"]
        task = {"taskId": created["taskId"]}
        for method in ("tasks/get", "tasks/cancel", "tasks/update"):
            params = task | ({"inputResponses": {}} if method == "tasks/update" else {})
            foreign = await modern_request(http, static_server, method, params, token=BOB)
            assert foreign["error"]["code"] == -32602, (method, foreign)
        own = await modern_request(http, static_server, "tasks/get", task, token=ALICE)
        assert own["result"]["status"] == "working"
        await modern_request(http, static_server, "tasks/cancel", task, token=ALICE)


async def test_one_callers_handed_off_job_is_invisible_to_another(static_server: str) -> None:
    async with client_with(static_server, ALICE) as alice, client_with(static_server, BOB) as bob:
        handed = await alice.call_tool("long_haul", {"steps": 40, "delay": 0.1})
        job_id = job_id_of(handed)
        for tool, arguments in [("job_status", {}), ("job_result", {}), ("job_cancel", {})]:
            foreign = await bob.call_tool(tool, {"job_id": job_id, **arguments})
            assert foreign.is_error and "started by another caller" in foreign.content[0].text  # type: ignore[union-attr]
        status = await alice.call_tool("job_status", {"job_id": job_id})
        assert status.structured_content["state"] in ("running", "succeeded")  # type: ignore[index]
        cancelled = await alice.call_tool("job_cancel", {"job_id": job_id})
        assert not cancelled.is_error


async def state_of(client: Client, job_id: str) -> str:
    status = await client.call_tool("job_status", {"job_id": job_id})
    assert status.structured_content is not None, status
    return str(status.structured_content["state"])


@pytest.mark.cluster
async def test_the_limit_per_caller_counts_tasks_and_handed_off_jobs_on_every_replica(stack: Stack) -> None:
    """Alice may have two jobs live. A task created on one replica and a job handed off on another
    fill her limit on both; Bob is not held back by it; a job that ends frees its place."""
    settings = {"auth_tokens": json.dumps(TOKENS), "auth_scopes": "jobs", "max_calls_per_caller": "2"}
    (one, first), (two, second) = serve(stack, **settings), serve(stack, **settings)
    store = stack.redis()  # on a cluster, admission is a step of its own (server/admission.py)
    try:
        async with (
            httpx.AsyncClient(timeout=30) as http,
            client_with(two, ALICE) as alice,
            client_with(one, BOB) as bob,
        ):
            long_call = {"name": "sleep_steps", "arguments": {"steps": 200, "delay": 0.1}}
            task = (await modern_request(http, one, "tools/call", long_call, token=ALICE))["result"]
            assert task["resultType"] == "task", task
            handed = await alice.call_tool("long_haul", {"steps": 200, "delay": 0.1})
            assert "goes on in the background" in handed.content[0].text, handed  # type: ignore[union-attr]

            refused = await alice.call_tool("sleep_steps", {"steps": 1, "delay": 0})
            refused_task = (await modern_request(http, one, "tools/call", long_call, token=ALICE))["result"]
            for text in (refused.content[0].text, refused_task["content"][0]["text"]):  # type: ignore[union-attr]
                assert "You have 2 jobs queued or running" in text and "limit per caller" in text, text
            assert refused.is_error and refused_task["isError"]
            assert store.scard(stack.keys.caller_jobs("alice")) == 2, "nothing created for the refused calls"

            assert not (await bob.call_tool("sleep_steps", {"steps": 1, "delay": 0})).is_error

            await alice.call_tool("job_cancel", {"job_id": job_id_of(handed)})
            with anyio.fail_after(20):  # the job ends at its next step
                while await state_of(alice, job_id_of(handed)) != "cancelled":
                    await anyio.sleep(0.05)
            allowed = await alice.call_tool("sleep_steps", {"steps": 1, "delay": 0})
            assert not allowed.is_error, allowed
            await modern_request(http, one, "tasks/cancel", {"taskId": task["taskId"]}, token=ALICE)
    finally:
        store.close()
        first.stop()
        second.stop()


class Issuer:
    """A local authorization server's signing key, with its JWKS served over HTTP."""

    def __init__(self) -> None:
        self.kid = "k1"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks = self._jwks()
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(issuer.jwks)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _jwks(self) -> bytes:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return json.dumps({"keys": [public | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}).encode()

    def rotate(self) -> None:
        """A new signing key under a new key id; the old one is gone from the JWKS."""
        self.kid = f"k{int(self.kid[1:]) + 1}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks = self._jwks()

    def token(self, audience: str, sub: str = "carol", scope: str = "jobs", **claims: Any) -> str:
        payload = {"iss": self.url, "aud": audience, "sub": sub, "scope": scope, "exp": int(time.time()) + 300}
        return jwt.encode(payload | claims, self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    yield issuer
    issuer.server.shutdown()


@pytest.fixture(scope="module")
def jwt_server(stack: Stack, issuer: Issuer) -> Iterator[str]:
    url, server = serve(stack, auth_jwks_url=f"{issuer.url}/jwks.json", auth_issuer_url=issuer.url, auth_scopes="jobs")
    try:
        yield url
    finally:
        server.stop()


async def test_jwt_access_tokens_are_checked_for_signature_expiry_audience_issuer_and_scope(
    jwt_server: str, issuer: Issuer
) -> None:
    other_key = Issuer()
    cases = {
        "good": (issuer.token(jwt_server), 200),
        "expired": (issuer.token(jwt_server, exp=int(time.time()) - 10), 401),
        "other audience": (issuer.token("https://elsewhere.example/mcp"), 401),
        "other issuer": (issuer.token(jwt_server, iss="https://evil.example"), 401),
        "other key": (other_key.token(jwt_server, iss=issuer.url), 401),
        "no scope": (issuer.token(jwt_server, scope="other"), 403),
    }
    async with httpx.AsyncClient(timeout=30) as http:
        for name, (token, status) in cases.items():
            answer = await modern_request(
                http,
                jwt_server,
                "tools/call",
                {"name": "echo", "arguments": {"text": "hi", "number": 1, "item": {"name": "x"}}},
                token=token,
            )
            assert answer.get("status", 200) == status, (name, answer)
        good = await modern_request(
            http,
            jwt_server,
            "tools/call",
            {"name": "sleep_steps", "arguments": {"steps": 1, "delay": 0}},
            token=issuer.token(jwt_server),
            tasks=False,
        )
    other_key.server.shutdown()
    assert good["result"]["structuredContent"]["steps"] == 1


async def test_jwt_callers_are_isolated_by_subject(jwt_server: str, issuer: Issuer) -> None:
    carol, dave = issuer.token(jwt_server, sub="carol"), issuer.token(jwt_server, sub="dave")
    async with httpx.AsyncClient(timeout=30) as http:
        call = {"name": "slow_compute", "arguments": {"seconds": 0.2}}
        created = (await modern_request(http, jwt_server, "tools/call", call, token=carol))["result"]
        foreign = await modern_request(http, jwt_server, "tasks/get", {"taskId": created["taskId"]}, token=dave)
        own = await modern_request(http, jwt_server, "tasks/get", {"taskId": created["taskId"]}, token=carol)
    assert foreign["error"]["code"] == -32602 and own["result"]["taskId"] == created["taskId"]


def test_serving_off_loopback_without_authentication_is_refused(stack: Stack) -> None:
    args = [sys.executable, "-m", "mcp_jobs.server.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(args, env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "without authentication" in done.stderr, done.stderr


def _forged(token: str, header: dict[str, Any]) -> str:
    """`token` with its header replaced (the signature no longer matches, or was never made)."""
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return ".".join([head, *token.split(".")[1:]])


def _hs256(token: str, issuer: Issuer) -> str:
    """The algorithm-confusion attack: an HMAC signature keyed with the issuer's public JWKS."""
    forged = _forged(token, {"alg": "HS256", "typ": "JWT", "kid": issuer.kid})
    signed = ".".join(forged.split(".")[:2]).encode()
    mac = hmac.new(issuer.jwks, signed, hashlib.sha256).digest()
    return signed.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@pytest.fixture
def strict_jwt_server(stack: Stack) -> Iterator[tuple[str, ManagedProcess, Issuer]]:
    """A JWT server of its own (its issuer is rotated), with the jobs page, a short JWKS lifespan
    and small caps on sessions and page streams."""
    issuer = Issuer()
    url, server = serve(
        stack,
        auth_jwks_url=f"{issuer.url}/jwks.json",
        auth_issuer_url=issuer.url,
        auth_jwks_lifespan="2",
        jobs_page="true",
        max_sessions="2",
        max_streams_per_caller="1",
    )
    try:
        yield url, server, issuer
    finally:
        server.stop()
        issuer.server.shutdown()


async def test_malformed_tokens_are_401s_never_500s_and_never_logged(
    strict_jwt_server: tuple[str, ManagedProcess, Issuer],
) -> None:
    url, server, issuer = strict_jwt_server
    good = issuer.token(url)
    head, body, signature = good.split(".")
    bad = {
        "alg ES256 on an RSA key": _forged(good, {"alg": "ES256", "typ": "JWT", "kid": issuer.kid}),
        "alg none": _forged(good, {"alg": "none", "typ": "JWT", "kid": issuer.kid})[: -len(signature)],
        "HS256 keyed with the JWKS": _hs256(good, issuer),
        "unknown kid": _forged(good, {"alg": "RS256", "typ": "JWT", "kid": "nobody"}),
        "broken base64": f"{head}.{body}!!.{signature}",
        "not a jwt": "x" * 40,
        "huge": "e" + "A" * 60_000,
        "signed, with a scope that is not text": issuer.token(url, scope=5),  # type: ignore[arg-type]
    }
    async with httpx.AsyncClient(timeout=30) as http:
        for name, token in bad.items():
            answer = await modern_request(http, url, "tools/list", {}, token=token)
            page = await http.get(url.replace("/mcp", "/jobs/stream"), headers={"Authorization": f"Bearer {token}"})
            assert answer.get("status") == 401 and page.status_code == 401, (name, answer, page.status_code)
        ok = await modern_request(http, url, "tools/list", {}, token=good)
    assert "result" in ok, ok
    refusals = await lines_logged(server, "bearer token refused", at_least=2 * len(bad))
    assert len(refusals) == 2 * len(bad), "one line per refused request (each token is checked once)"
    log = server.output(100_000)
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert not any(token[:60] in log for token in bad.values() if len(token) > 20), "tokens are never logged"


async def lines_logged(server: ManagedProcess, text: str, at_least: int) -> list[str]:
    """The server's log lines containing `text`, once there are `at_least` of them (its output is
    read by a thread, a little after the responses)."""
    with anyio.fail_after(20):
        while len(found := [line for line in server.output(100_000).splitlines() if text in line]) < at_least:
            await anyio.sleep(0.05)
    return found


async def test_tokens_are_refused_with_a_warning_while_the_jwks_is_unreachable(stack: Stack, issuer: Issuer) -> None:
    """401, not 503: the SDK's authentication answers only "accepted" or 401, and a token that
    cannot be checked is not accepted (RFC 6750 `invalid_token`); the operator gets the warning."""
    nowhere = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    url, server = serve(stack, auth_jwks_url=nowhere, auth_issuer_url=issuer.url, jobs_page="true")
    try:
        token = issuer.token(url)
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await modern_request(http, url, "tools/list", {}, token=token)
            page = await http.get(url.replace("/mcp", "/jobs/stream"), headers={"Authorization": f"Bearer {token}"})
        assert answer.get("status") == 401 and page.status_code == 401, (answer, page.status_code)
        server.wait_for_line("bearer token refused: the JWKS cannot be fetched", timeout=10)
        log = server.output(100_000)
        assert "Traceback" not in log and token[:60] not in log, log[-3000:]
    finally:
        server.stop()


async def test_a_key_dropped_from_the_jwks_is_refused_within_its_lifespan(
    strict_jwt_server: tuple[str, ManagedProcess, Issuer],
) -> None:
    url, _, issuer = strict_jwt_server
    old = issuer.token(url)
    async with httpx.AsyncClient(timeout=30) as http:
        assert "result" in await modern_request(http, url, "tools/list", {}, token=old)
        issuer.rotate()
        new = issuer.token(url)
        with anyio.fail_after(20):  # refused once the cached JWKS (2 s) expired; before, never
            while (await modern_request(http, url, "tools/list", {}, token=old)).get("status") != 401:
                await anyio.sleep(0.2)
        assert "result" in await modern_request(http, url, "tools/list", {}, token=new), "the new key is in"


async def test_sessions_and_page_streams_are_capped(strict_jwt_server: tuple[str, ManagedProcess, Issuer]) -> None:
    url, _, issuer = strict_jwt_server
    token = issuer.token(url)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        async with http.stream("GET", url.replace("/mcp", "/jobs/stream")) as first:
            assert first.status_code == 200
            second = await http.get(url.replace("/mcp", "/jobs/stream"))
            assert second.status_code == 429 and "most per caller" in second.json()["error"], second.text
        async with client_with(url, token, mode="legacy") as one, client_with(url, token, mode="legacy") as two:
            assert (await one.list_tools()).tools and (await two.list_tools()).tools
            third = await legacy_initialize(http, url)
            assert third.status_code == 503, third.text


async def legacy_initialize(http: httpx.AsyncClient, url: str) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    return await http.post(url, json=body, headers={"Accept": "application/json, text/event-stream"})
