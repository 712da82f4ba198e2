"""The live jobs page in a real headless Chromium (Debian's `chromium`, driven by Playwright): a job
started through MCP appears and its bar moves, a failure is listed, a finished job opens (by a
click, by the keyboard, by its address) on its step timeline with the slowest step marked and
its trace linked, and with authentication the page asks for a token and shows its caller only
their own jobs. The routes are served by uvicorn in this process, against the stack's Redis. The
stream's and the job route's refusals and headers are checked over plain HTTP.

The browser test saves a screenshot in its tmp_path and a copy at /tmp/jobs-page.png.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
import redis.asyncio as aioredis
import uvicorn
from mcp import Client
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ElicitRequestParams, ElicitResult
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mcp_jobs._events import Keys
from mcp_jobs.server.auth import StaticTokenVerifier, hash_token
from mcp_jobs.server.ops.page import jobs_routes
from mcp_jobs.settings import Settings, StaticToken
from tests.conftest import Stack
from tests.support.helpers import (
    ProgressLog,
    async_redis,
    job_id_of_key,
    job_keys,
    namespace_of_its_own,
)

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_COPY = Path("/tmp/jobs-page.png")
WAIT_MS = 20_000
"""Longest wait for anything the page should show (milliseconds, Playwright's unit)."""

SECURITY = TransportSecuritySettings(allowed_hosts=["127.0.0.1:*"], allowed_origins=["http://127.0.0.1:*"])
AUTH = Settings(
    auth_tokens=[
        StaticToken(sha256=hash_token("alice-secret"), caller="alice", scopes=["jobs"]),
        StaticToken(sha256=hash_token("bob-secret"), caller="bob", scopes=["jobs"]),
        StaticToken(sha256=hash_token("no-scope-secret"), caller="carol", scopes=[]),
    ]
)


def auth_routes(client: aioredis.Redis, keys: Keys, **options: Any) -> Starlette:
    verifier = StaticTokenVerifier(AUTH)
    routes = jobs_routes(
        client,
        keys,
        enabled=True,
        verifier=verifier,
        required_scopes=["jobs"],
        resource_url=AUTH.resource_url,
        security=SECURITY,
        **options,
    )
    return Starlette(routes=routes)


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """`app` served by uvicorn in this event loop; yields its base URL. The socket is bound and
    listening before uvicorn starts, so requests made at once wait in its backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
    sock.close()


@asynccontextmanager
async def browser_page() -> AsyncIterator[tuple[Page, list[str]]]:
    """A page of a real headless Chromium, and the console errors it logs."""
    assert Path(CHROMIUM).exists(), "Chromium is needed: apt-get install -y chromium (.ci/run installs it)"
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 760})
            page.on("console", console)
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            await browser.close()


async def test_a_job_started_through_mcp_appears_and_its_bar_moves(stack: Stack, tmp_path: Path) -> None:
    reason = f"the input folder is empty ({uuid.uuid4().hex[:6]})"
    sync = stack.redis()
    async with async_redis(stack.redis_url, stack.cluster) as client:
        app = Starlette(routes=jobs_routes(client, stack.keys, enabled=True, security=SECURITY, queues=["celery"]))
        async with serving(app) as base, browser_page() as (page, errors):
            await page.goto(f"{base}/jobs")
            await expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
            await expect(page.locator("#login")).to_be_hidden()

            async with Client(stack.http_url) as mcp:
                failed = await mcp.call_tool("fail_politely", {"reason": reason})
            assert failed.is_error
            failure = page.locator("#failures tbody tr", has_text=reason)
            await expect(failure).to_be_visible(timeout=WAIT_MS)
            await expect(failure).to_contain_text("JobError")

            before = job_keys(sync, stack.keys)
            log = ProgressLog()
            async with Client(stack.http_url) as mcp, anyio.create_task_group() as tg:

                async def call() -> None:
                    await mcp.call_tool("sleep_steps", {"steps": 12, "delay": 0.4}, progress_callback=log)

                tg.start_soon(call)
                await log.wait_for(1)
                (key,) = [key for key in job_keys(sync, stack.keys) - before if sync.hget(key, "job") == "sleep_steps"]
                job_id = job_id_of_key(key)

                row = page.locator(f'#inflight tr[data-job-id="{job_id}"]')
                await expect(row).to_be_visible(timeout=WAIT_MS)
                await expect(row).to_contain_text("sleep_steps")
                await expect(row.locator(".badge")).to_have_text("running")
                bar = row.get_by_role("progressbar")
                await expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^([1-9]|1[0-2])$"), timeout=WAIT_MS)
                first = float(await bar.get_attribute("aria-valuenow") or "0")
                await expect(bar).to_have_attribute("aria-valuemax", "12")

                # The bar moves: the value shown grows, and so does the drawn bar.
                await page.wait_for_function(
                    """([id, value]) => {
                        const bar = document.querySelector(`tr[data-job-id="${id}"] [role=progressbar]`);
                        return bar !== null && Number(bar.getAttribute("aria-valuenow")) > value;
                    }""",
                    arg=[job_id, first],
                    timeout=WAIT_MS,
                )
                second = float(await bar.get_attribute("aria-valuenow") or "0")
                assert second > first
                await expect(row.locator(".amount")).to_contain_text(f"{second:g}/12 · ")
                await page.wait_for_function(
                    """([id, value]) => {
                        const row = document.querySelector(`tr[data-job-id="${id}"]`);
                        if (!row) return false;
                        const bar = row.querySelector(".bar"), fill = row.querySelector(".fill");
                        const drawn = fill.getBoundingClientRect().width / bar.getBoundingClientRect().width;
                        return Math.abs(drawn - value / 12) < 0.02;  // once its transition ended
                    }""",
                    arg=[job_id, second],
                    timeout=WAIT_MS,
                )
                await expect(page.locator("#queues tr[data-queue=celery]")).to_be_visible()
                await expect(page.locator("#summary")).to_contain_text("running")

                screenshot = tmp_path / "jobs-page.png"
                await page.screenshot(path=str(screenshot), full_page=True)
                shutil.copyfile(screenshot, SCREENSHOT_COPY)
                assert screenshot.stat().st_size > 10_000

            # The call ended with its job: the row leaves the page.
            assert log.values[-1] == 12
            await expect(row).to_have_count(0, timeout=WAIT_MS)
            assert not errors, errors  # no script error, no Content-Security-Policy violation


async def test_a_job_waiting_for_an_answer_shows_its_question_and_its_last_log_line(stack: Stack) -> None:
    tag = f"page-{uuid.uuid4().hex[:6]}"
    asked, release = anyio.Event(), anyio.Event()

    async def answer(_: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.set()
        await release.wait()
        return ElicitResult(
            action="accept", content={"ok": True} if "Go ahead" in params.message else {"colour": "red"}
        )

    sync = stack.redis()
    async with async_redis(stack.redis_url, stack.cluster) as client:
        app = Starlette(routes=jobs_routes(client, stack.keys, enabled=True, security=SECURITY, queues=["celery"]))
        async with serving(app) as base, browser_page() as (page, errors):
            await page.goto(f"{base}/jobs")
            await expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
            before = job_keys(sync, stack.keys)
            done: list[Any] = []
            legacy = Client(stack.http_url, mode="legacy", elicitation_callback=answer)
            async with legacy as mcp, anyio.create_task_group() as tg:

                async def call() -> None:
                    done.append(await mcp.call_tool("interview", {"tag": tag}))

                tg.start_soon(call)
                with anyio.fail_after(30):
                    await asked.wait()
                (key,) = [key for key in job_keys(sync, stack.keys) - before if sync.hget(key, "job") == "interview"]
                row = page.locator(f'#inflight tr[data-job-id="{job_id_of_key(key)}"]')
                await expect(row.locator(".badge")).to_have_text("input_required", timeout=WAIT_MS)
                await expect(row.locator(".msg")).to_have_text("waiting for an answer: Go ahead?")
                await expect(row.locator(".log")).to_have_text(f"info: {tag}: gathering")
                await expect(page.locator("#summary")).to_contain_text("waiting for an answer")
                release.set()
            assert done and not done[0].is_error, done
            await expect(row).to_have_count(0, timeout=WAIT_MS)
            assert not errors, errors


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_URL = "https://traces.example/trace/{trace_id}"


async def test_a_finished_job_opens_on_its_timeline_with_the_slowest_step_and_its_trace(
    stack: Stack, tmp_path: Path
) -> None:
    reason = f"the parser gave up ({uuid.uuid4().hex[:6]})"
    stages = [
        {"message": "fetching", "seconds": 0.2},
        {"message": "parsing", "seconds": 1.2},
        {"message": "writing", "seconds": 0.2},
    ]
    sync = stack.redis()
    before = job_keys(sync, stack.keys)
    async with Client(stack.http_url) as mcp:  # returns once the job ended (failed: it has a row)
        result = await mcp.call_tool("staged", {"stages": stages, "fail": reason})
    assert result.is_error
    (key,) = [key for key in job_keys(sync, stack.keys) - before if sync.hget(key, "error") == reason]
    job_id = job_id_of_key(key)
    # Tracing is tested elsewhere: here the snapshot gets the field a traced enqueue writes.
    sync.hset(key, "traceparent", f"00-{TRACE}-00f067aa0ba902b7-01")

    async with async_redis(stack.redis_url, stack.cluster) as client:
        routes = jobs_routes(client, stack.keys, enabled=True, security=SECURITY, trace_url=TRACE_URL)
        async with serving(Starlette(routes=routes)) as base, browser_page() as (page, errors):
            await page.goto(f"{base}/jobs")
            await expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
            row = page.locator(f'#failures tr[data-job-id="{job_id}"]')
            await expect(row).to_contain_text(reason, timeout=WAIT_MS)
            detail, steps = page.locator("#detail"), page.locator("#steps tbody tr")
            await expect(detail).to_be_hidden()

            await row.locator(".error").click()  # anywhere on the row
            await expect(detail).to_be_visible()
            await expect_the_timeline(page, job_id, reason)
            assert await page.evaluate("location.hash") == f"#job/{job_id}"
            await page.screenshot(path=str(tmp_path / "jobs-page-timeline.png"), full_page=True)

            # Escape closes it; the keyboard opens it again from the row's link.
            await page.keyboard.press("Escape")
            await expect(detail).to_be_hidden()
            await expect(row.locator("a.tool")).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(detail).to_be_visible()
            await expect(steps).to_have_count(4, timeout=WAIT_MS)

            # Its address opens it in a page loaded afresh.
            await page.reload()
            await expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
            await expect_the_timeline(page, job_id, reason)
            assert not errors, errors  # no script error, no Content-Security-Policy violation


async def expect_the_timeline(page: Page, job_id: str, reason: str) -> None:
    """The open panel shows the `staged` job's four steps in order, the middle stage marked the
    slowest, its error, and its trace linked through the server's `trace_url`."""
    steps = page.locator("#steps tbody tr")
    await expect(page.locator("#detail-id")).to_have_text(job_id, timeout=WAIT_MS)
    await expect(steps).to_have_count(4, timeout=WAIT_MS)
    await expect(steps.locator("td.step")).to_have_text(["started", "fetching", "parsing", "writing"])
    await expect(steps.locator("td.num").nth(0)).to_have_text("1")
    slowest = page.locator("#steps tr.slowest")
    await expect(slowest).to_have_count(1)
    await expect(slowest.locator("td.step")).to_have_text("parsing")
    await expect(slowest.locator("td.mark")).to_have_text("⚠ slowest")
    await expect(steps.nth(3).locator("td.time").first).to_have_text(re.compile(r"^\+1\.\d s$|^\+\d+(\.\d)? s$"))
    await expect(page.locator("#steps-note")).to_be_hidden()
    facts = page.locator("#detail-facts")
    await expect(facts).to_contain_text("failed")
    await expect(facts).to_contain_text(reason)
    link = facts.locator("a")
    await expect(link).to_have_text(TRACE)
    await expect(link).to_have_attribute("href", TRACE_URL.replace("{trace_id}", TRACE))


@pytest.fixture
def own_namespace(stack: Stack) -> Iterator[tuple[redis.Redis, Keys]]:
    client = stack.redis()
    with namespace_of_its_own(client, f"page-{uuid.uuid4().hex[:8]}") as keys:
        yield client, keys


def snapshot(client: redis.Redis, keys: Keys, caller: str, job: str, **fields: str) -> str:
    job_id = str(uuid.uuid4())
    now = time.time()
    values = {
        "job": job,
        "state": "running",
        "seq": "3",
        "progress": "2.0",
        "total": "8.0",
        "message": f"{job} at step 2",
        "caller": caller,
        "created_at": repr(now - 20),
        "updated_at": repr(now),
        "attempt": "1",
        "worker": "secret-host@10.0.0.7",
        **fields,
    }
    client.hset(keys.job(job_id), mapping=values)  # type: ignore[arg-type]
    client.set(keys.alive(job_id), "1", ex=120)
    return job_id


async def test_with_auth_the_page_asks_for_a_token_and_shows_only_its_callers_jobs(
    stack: Stack, own_namespace: tuple[redis.Redis, Keys], tmp_path: Path
) -> None:
    sync, keys = own_namespace
    alice = snapshot(sync, keys, "alice", "alice_report")
    bob = snapshot(sync, keys, "bob", "bob_secret_job")
    async with (
        async_redis(stack.redis_url, stack.cluster) as client,
        serving(auth_routes(client, keys)) as base,
        browser_page() as (page, errors),
    ):
        await page.goto(f"{base}/jobs")
        await expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#status")).to_have_text("token needed")

        await page.locator("#token").fill("wrong-token")
        await page.locator("#token").press("Enter")
        await expect(page.locator("#login-error")).to_have_text("That token was not accepted.", timeout=WAIT_MS)

        await page.locator("#token").fill("alice-secret")
        await page.get_by_role("button", name="Show my jobs").click()
        await expect(page.locator(f'tr[data-job-id="{alice}"]')).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#whoami")).to_have_text("signed in as alice")
        await expect(page.locator("#inflight tbody tr")).to_have_count(1)
        await expect(page.locator(f'tr[data-job-id="{bob}"]')).to_have_count(0)
        assert "bob_secret_job" not in await page.content()
        assert "secret-host" not in await page.content()

        # The token is kept for the tab: a reload goes straight to the jobs.
        await page.reload()
        await expect(page.locator(f'tr[data-job-id="{alice}"]')).to_be_visible(timeout=WAIT_MS)
        await page.screenshot(path=str(tmp_path / "jobs-page-auth.png"), full_page=True)

        await page.get_by_role("button", name="Forget token").click()
        await expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#inflight tbody tr")).to_have_count(0)
        assert await page.evaluate("sessionStorage.length") == 0
        assert not [error for error in errors if "401" not in error], errors  # refused fetches log a 401


async def test_the_stream_shows_each_caller_only_their_own_jobs(
    stack: Stack, own_namespace: tuple[redis.Redis, Keys]
) -> None:
    sync, keys = own_namespace
    alice = snapshot(sync, keys, "alice", "alice_report")
    bob = snapshot(sync, keys, "bob", "bob_report")
    async with async_redis(stack.redis_url, stack.cluster) as client, serving(auth_routes(client, keys)) as base:
        for token, mine in (("alice-secret", alice), ("bob-secret", bob)):
            data = await first_event(f"{base}/jobs/stream", token)
            assert [job["job_id"] for job in data["in_flight"]] == [mine], data
            job = data["in_flight"][0]
            assert job["progress"] == 2 and job["total"] == 8 and job["fraction"] == 0.25
            assert job["worker"] is None and data["workers"] == [], "host names stay out of the page"


async def test_the_job_route_shows_a_caller_only_their_own_jobs(
    stack: Stack, own_namespace: tuple[redis.Redis, Keys]
) -> None:
    sync, keys = own_namespace
    alice = snapshot(sync, keys, "alice", "alice_report")
    bob = snapshot(sync, keys, "bob", "bob_report")
    now = time.time()
    for at, message in ((now - 10, "started"), (now - 9, "reading"), (now - 2, "summing up")):
        entry = {"attempt": 1, "at": at, "progress": None, "total": 8, "message": message}
        sync.rpush(keys.steps(alice), json.dumps(entry))
    sync.hset(keys.job(alice), mapping={"steps": "3", "started_at": repr(now - 10)})
    alice_token, bob_token = ({"Authorization": f"Bearer {name}-secret"} for name in ("alice", "bob"))
    async with (
        async_redis(stack.redis_url, stack.cluster) as client,
        serving(auth_routes(client, keys)) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        mine = await http.get(f"/jobs/job/{alice}", headers=alice_token)
        assert mine.status_code == 200, mine.text
        assert mine.headers["content-type"] == "application/json"
        assert mine.headers["cache-control"] == "no-store" and mine.headers["x-content-type-options"] == "nosniff"
        data = mine.json()
        assert data["job"]["job_id"] == alice and data["job"]["caller"] == "alice"
        assert data["job"]["worker"] is None, "host names stay out of the page"
        assert [step["message"] for step in data["steps"]] == ["started", "reading", "summing up"]
        assert data["steps"][-1]["duration"] is None and data["steps"][1]["slowest"], data["steps"]
        assert data["ended_at"] is None and data["trace_link"] is None

        theirs = await http.get(f"/jobs/job/{bob}", headers=alice_token)
        unknown = await http.get(f"/jobs/job/{uuid.uuid4()}", headers=alice_token)
        malformed = await http.get("/jobs/job/not-a-job", headers=alice_token)
        for refused in (theirs, unknown, malformed):
            assert refused.status_code == 404 and refused.json() == theirs.json(), refused.text
            assert refused.headers["cache-control"] == "no-store"
        assert "bob_report" not in theirs.text
        assert (await http.get(f"/jobs/job/{bob}", headers=bob_token)).json()["job"]["tool"] == "bob_report"


async def test_streams_are_capped_end_when_the_server_closes_and_report_redis_trouble(stack: Stack) -> None:
    closing = False
    async with async_redis(stack.redis_url, stack.cluster) as client:
        app = Starlette(
            routes=jobs_routes(
                client, Keys(f"page-{uuid.uuid4().hex[:8]}"), enabled=True, max_streams=1, closing=lambda: closing
            )
        )
        async with serving(app) as base, httpx.AsyncClient(timeout=10) as http:
            with anyio.fail_after(15):
                async with http.stream("GET", f"{base}/jobs/stream") as response:
                    lines = response.aiter_lines()
                    async for line in lines:
                        if line.startswith("data: "):
                            assert json.loads(line[6:])["in_flight"] == []
                            break
                    second = await http.get(f"{base}/jobs/stream")
                    assert second.status_code == 503 and second.headers["retry-after"], second.text
                    closing = True
                    rest = [line async for line in lines]  # the stream ends: the server is shutting down
                    assert all(not line.startswith("data: ") or "in_flight" in line for line in rest)
                # Its slot is free again once it ended.
                async with http.stream("GET", f"{base}/jobs/stream") as again:
                    assert again.status_code == 200

    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    async with serving(Starlette(routes=jobs_routes(unreachable, Keys("unused"), enabled=True))) as base:
        data = await first_event(f"{base}/jobs/stream")
        assert data["error"] == "Redis is unavailable; retrying", data
    await unreachable.aclose()


async def test_one_caller_at_their_stream_cap_does_not_hold_back_another(
    stack: Stack, own_namespace: tuple[redis.Redis, Keys]
) -> None:
    _, keys = own_namespace
    alice, bob = ({"Authorization": f"Bearer {name}-secret"} for name in ("alice", "bob"))
    async with (
        async_redis(stack.redis_url, stack.cluster) as client,
        serving(auth_routes(client, keys, max_streams_per_caller=1)) as base,
        httpx.AsyncClient(timeout=10) as http,
    ):
        with anyio.fail_after(15):
            async with http.stream("GET", f"{base}/jobs/stream", headers=alice) as first:
                assert first.status_code == 200
                again = await http.get(f"{base}/jobs/stream", headers=alice)
                assert again.status_code == 429 and again.headers["retry-after"], again.text
                assert "most per caller" in again.json()["error"]
                async with http.stream("GET", f"{base}/jobs/stream", headers=bob) as other:
                    assert other.status_code == 200
            async with http.stream("GET", f"{base}/jobs/stream", headers=alice) as later:
                assert later.status_code == 200, "a closed stream gives its place back"


async def first_event(url: str, token: str | None = None) -> dict[str, Any]:
    """The first view the stream sends (headers checked on the way)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as http:
        with anyio.fail_after(10):
            async with http.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["cache-control"] == "no-store"
                assert response.headers["x-content-type-options"] == "nosniff"
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                        return data
    raise AssertionError("the stream ended without an event")


def test_the_stream_refuses_a_request_without_a_valid_token() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # never reached: every request is refused
    with TestClient(auth_routes(client, Keys("unused")), base_url="http://127.0.0.1:8000") as http:
        missing = http.get("/jobs/stream")
        assert missing.status_code == 401, missing.text
        assert missing.json()["error"] == "invalid_token"
        challenge = missing.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge and 'scope="jobs"' in challenge
        assert missing.headers["cache-control"] == "no-store"

        assert http.get("/jobs/stream", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
        assert http.get("/jobs/stream", headers={"Authorization": "Basic YWxpY2U6eA=="}).status_code == 401
        no_scope = http.get("/jobs/stream", headers={"Authorization": "Bearer no-scope-secret"})
        assert no_scope.status_code == 403 and no_scope.json()["error"] == "insufficient_scope"

        # DNS rebinding: a foreign Host or Origin is refused before anything else.
        assert http.get("/jobs/stream", headers={"Host": "evil.example"}).status_code == 421
        assert http.get("/jobs", headers={"Origin": "http://evil.example"}).status_code == 403

        # One job's route is guarded the same way.
        job = f"/jobs/job/{uuid.uuid4()}"
        assert http.get(job).status_code == 401
        assert http.get(job, headers={"Authorization": "Bearer no-scope-secret"}).status_code == 403
        assert http.get(job, headers={"Host": "evil.example"}).status_code == 421
        assert http.get(job, headers={"Origin": "http://evil.example"}).status_code == 403


def test_the_page_is_a_static_shell_with_strict_headers() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    with TestClient(auth_routes(client, Keys("unused")), base_url="http://127.0.0.1:8000") as http:
        page = http.get("/jobs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert re.search(r"style-src 'sha256-[A-Za-z0-9+/=]+'", policy), policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert 'src="/jobs/page.js"' in page.text and 'data-stream="/jobs/stream"' in page.text
        assert 'data-job="/jobs/job/"' in page.text
        assert "<script>" not in page.text and not re.search(r"\son[a-z]+=", page.text), "no inline script"
        script = http.get("/jobs/page.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert script.headers["x-content-type-options"] == "nosniff"


def test_every_route_is_404_unless_enabled() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    app = Starlette(routes=jobs_routes(client, Keys("unused"), enabled=False))
    with TestClient(app) as http:
        for path in ("/jobs", "/jobs/page.js", "/jobs/stream", f"/jobs/job/{uuid.uuid4()}"):
            assert http.get(path).status_code == 404, path
