"""The live jobs page: jobs in flight with live progress bars, recent failures, queue depths and
live workers, served by the MCP server (off by default).

Routes (under `path`, `/jobs` by default), all 404 unless `enabled`:

- `GET /jobs`: the page, a static shell with no data in it (`page.html`);
- `GET /jobs/page.js`: its script (`page.js`), a separate file so the Content-Security-Policy
  can forbid inline scripts;
- `GET /jobs/stream`: server-sent events, one JSON view (`view.JobsView.to_json`) each time
  what it shows changes (checked every `interval` seconds), and a comment line every
  `KEEPALIVE` seconds otherwise. With authentication on it needs `Authorization: Bearer <token>`
  (401 without a valid one, 403 without the required scopes), and shows the token's caller only
  their own jobs; without authentication every caller is the same anonymous one, as for tasks
  and the handoff tools. The page reads it with `fetch()` (which, unlike `EventSource`, can send
  the header), the token entered once and kept in the tab's `sessionStorage`.
- `GET /jobs/job/<job id>`: one job and its step timeline (`view.JobDetail.as_json`, worker
  left out, the trace linked through `trace_url` when set), for the page's job panel: a job's
  row opens it, and so does the page's address with `#job/<job id>` (an ended job too). The same
  checks as the stream, and a caller sees only their own jobs: another caller's job is a 404,
  as an unknown, expired or malformed one is.

Worker host names are left out of the stream (workers are counted per queue); `mcp-jobs jobs` is
the operator's view with everything. One scan of Redis per `interval` serves every open stream of
the process (`_Feed`), and the number of open streams is capped (`max_streams`, then 503; and
`max_streams_per_caller` for one caller, then 429).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from importlib.resources import files
from typing import Any, Literal

import anyio
import redis.asyncio as aioredis
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from pydantic import AnyHttpUrl, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mcp_jobs._contract import is_job_id
from mcp_jobs._events import Keys
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.server.ops.view import DEFAULT_LIMIT, JobsScan, read_job, scan_jobs, select, without_clock

logger = logging.getLogger(__name__)

KEEPALIVE = 15.0
"""Seconds without an event after which the stream sends a comment line (keeps proxies from
closing it, and notices a client that left)."""

MAX_STREAM_SECONDS = 600.0
"""A stream ends after this long (the page reconnects at once), so a revoked or expired token
stops seeing jobs within that time; a token's own expiry ends it sooner."""

UNAVAILABLE = "Redis is unavailable; retrying"

NO_SUCH_JOB = "no such job (unknown, expired, or not yours)"

_NO_STORE = {"Cache-Control": "no-store"}
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

RedisSource = aioredis.Redis | Callable[[], aioredis.Redis]
"""A Redis client, or a function giving the one to use at request time (a server creates its
client when it starts serving, after its routes are built)."""


def jobs_routes(
    client: RedisSource,
    keys: Keys,
    *,
    enabled: bool,
    verifier: TokenVerifier | None = None,
    required_scopes: Sequence[str] = (),
    resource_url: str | None = None,
    security: TransportSecuritySettings | None = None,
    queues: Iterable[str] | Callable[[], Iterable[str]] = (),
    queue_depths: bool = True,
    recent_failures_for: float = 3600.0,
    limit: int = DEFAULT_LIMIT,
    interval: float = 0.5,
    max_streams: int = 64,
    max_streams_per_caller: int = 4,
    path: str = "/jobs",
    closing: Callable[[], bool] = lambda: False,
    trace_url: str | None = None,
) -> list[Route]:
    """The page's routes, to mount beside the MCP endpoint.

    - `client`, `keys`: the Redis holding the job snapshots, and the namespace's key names.
    - `enabled`: False answers 404 on every route (the page is off by default).
    - `verifier`: the MCP endpoint's token verifier (None: authentication is off); the stream then
      needs a token it accepts, not expired, issued for `resource_url` (when given) and carrying
      `required_scopes`.
    - `security`: the MCP endpoint's Host/Origin checks (DNS-rebinding protection), applied here too.
    - `queues`: queues to list besides those live workers serve; `queue_depths`: whether the
      Celery broker is this Redis (else depths are unknown).
    - `closing`: True once the server is shutting down; open streams then end (within
      `interval`), so an open page does not hold up the shutdown.
    - `trace_url`: where a job's trace id links to (`Settings.trace_url`, with `{trace_id}`);
      None shows ids plain.
    """
    base = "/" + path.strip("/")
    page = _Page(base) if enabled else None  # read only when served (a broken install fails at start)
    feed = _Feed(client, keys, queues, queue_depths, max_age=interval * 0.8)
    guard = _Guard(verifier, required_scopes, resource_url, security)
    streams = _StreamCount(max_streams, max_streams_per_caller)

    async def static(request: Request, part: Callable[[_Page], tuple[str, str, dict[str, str]]]) -> Response:
        """The page or its script: 404 unless served, then the Host/Origin check."""
        if page is None:
            return _not_found()
        refused = await guard.check_host(request)
        if refused is not None:
            return refused
        body, media_type, headers = part(page)
        return Response(body, media_type=media_type, headers=headers)

    async def show_page(request: Request) -> Response:
        return await static(request, lambda p: (p.html, "text/html; charset=utf-8", p.headers))

    async def show_script(request: Request) -> Response:
        return await static(request, lambda p: (p.script, "text/javascript; charset=utf-8", p.script_headers))

    async def admitted(request: Request) -> tuple[str, float | None] | Response:
        """The caller and their token's expiry, or the refusal: the page is off (404), the
        Host/Origin is not allowed, or there is no valid token."""
        if not enabled:
            return _not_found()
        refused = await guard.check_host(request)
        if refused is not None:
            return refused
        return await guard.authorize(request)

    async def stream(request: Request) -> Response:
        access = await admitted(request)
        if isinstance(access, Response):
            return access
        caller, expires_at = access
        taken = streams.take(caller)
        if taken != "ok":
            error = (
                f"you have {max_streams_per_caller} job streams open already (the most per caller); close one"
                if taken == "caller"
                else "too many open job streams; try again shortly"
            )
            return JSONResponse(
                {"error": error},
                status_code=429 if taken == "caller" else 503,
                headers={"Retry-After": "5", **_NO_STORE, **_COMMON_HEADERS},
            )
        until = time.monotonic() + MAX_STREAM_SECONDS
        if expires_at is not None:
            until = min(until, time.monotonic() + max(expires_at - time.time(), 0.0))
        return _EventStream(
            _events(feed, caller, recent_failures_for, limit, interval, until, closing),
            on_close=lambda: streams.give_back(caller),
            media_type="text/event-stream",
            headers={**_NO_STORE, **_COMMON_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def show_job(request: Request) -> Response:
        access = await admitted(request)
        if isinstance(access, Response):
            return access
        caller, _ = access
        job_id = request.path_params["job_id"]
        headers = {**_NO_STORE, **_COMMON_HEADERS}
        if not is_job_id(job_id):
            return JSONResponse({"error": NO_SUCH_JOB}, status_code=404, headers=headers)
        try:
            detail = await read_job(_resolved(client), keys, job_id, time.time(), caller)
        except (*REDIS_ERRORS, OSError, RuntimeError) as exc:
            logger.debug("jobs page: cannot read job %s (%r)", job_id, exc)
            return JSONResponse({"error": UNAVAILABLE}, status_code=503, headers={"Retry-After": "2", **headers})
        if detail is None:
            return JSONResponse({"error": NO_SUCH_JOB}, status_code=404, headers=headers)
        return JSONResponse(detail.as_json(hosts=False, trace_url=trace_url), headers=headers)

    return [
        Route(base, show_page, methods=["GET"]),
        Route(f"{base}/page.js", show_script, methods=["GET"]),
        Route(f"{base}/stream", stream, methods=["GET"]),
        Route(f"{base}/job/{{job_id}}", show_job, methods=["GET"]),
    ]


async def _events(
    feed: _Feed,
    caller: str,
    recent_failures_for: float,
    limit: int,
    interval: float,
    until: float,
    closing: Callable[[], bool],
) -> AsyncIterator[str]:
    """The stream's body: a view each time it changes, a comment line when quiet, until `until`
    or the server shuts down."""
    yield "retry: 1000\n\n"
    last: dict[str, object] | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < until and not closing():
        try:
            data = select(await feed.latest(), caller, recent_failures_for, limit).to_json(hosts=False)
        except (*REDIS_ERRORS, OSError, RuntimeError) as exc:
            logger.debug("jobs page: cannot read Redis (%r)", exc)
            data = {"error": UNAVAILABLE, "now": time.time()}
        if without_clock(data) != last:
            last = without_clock(data)
            quiet_since = time.monotonic()
            yield f"data: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n"
        elif time.monotonic() - quiet_since >= KEEPALIVE:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        await anyio.sleep(interval)


class _EventStream(StreamingResponse):
    """A streaming response that calls `on_close` however it ends (even before its body started)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None], **options: Any) -> None:
        super().__init__(content, **options)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


class _Feed:
    """One scan of Redis per `max_age` seconds, shared by every stream of the process."""

    def __init__(
        self,
        client: RedisSource,
        keys: Keys,
        queues: Iterable[str] | Callable[[], Iterable[str]],
        queue_depths: bool,
        max_age: float,
    ) -> None:
        self._client = client
        self._keys = keys
        self._queues = queues
        self._queue_depths = queue_depths
        self._max_age = max_age
        self._lock = anyio.Lock()
        self._scan: JobsScan | Exception | None = None
        self._at = -math.inf

    async def latest(self) -> JobsScan:
        async with self._lock:
            if self._scan is None or time.monotonic() - self._at >= self._max_age:
                try:
                    self._scan = await self._read()
                except (*REDIS_ERRORS, OSError, RuntimeError) as exc:
                    self._scan = exc  # every stream waiting on this one learns it without retrying
                self._at = time.monotonic()
            if isinstance(self._scan, Exception):
                raise self._scan
            return self._scan

    async def _read(self) -> JobsScan:
        client = _resolved(self._client)
        queues = self._queues() if callable(self._queues) else self._queues
        return await scan_jobs(client, self._keys, time.time(), queues=queues, queue_depths=self._queue_depths)


def _resolved(client: RedisSource) -> aioredis.Redis:
    """The client to use now (a server's is created when it starts serving)."""
    return client if isinstance(client, aioredis.Redis) else client()


class _Guard:
    """Who may read the stream: Host/Origin checks, then the bearer token when auth is on."""

    def __init__(
        self,
        verifier: TokenVerifier | None,
        required_scopes: Sequence[str],
        resource_url: str | None,
        security: TransportSecuritySettings | None,
    ) -> None:
        self._verifier = verifier
        self._required = list(required_scopes)
        self._resource = _url(resource_url) if resource_url else None
        self._metadata = str(build_resource_metadata_url(AnyHttpUrl(resource_url))) if resource_url else None
        self._security = TransportSecurityMiddleware(security) if security else None

    async def check_host(self, request: Request) -> Response | None:
        """421 for a foreign Host, 403 for a foreign Origin (DNS rebinding), as the MCP endpoint."""
        if self._security is None:
            return None
        return await self._security.validate_request(request)

    async def authorize(self, request: Request) -> tuple[str, float | None] | Response:
        """The caller whose jobs the request may see and when its token expires, or the refusal."""
        if self._verifier is None:
            return "", None
        token = await self._access_token(request)
        if token is None:
            return self._refuse(401, "invalid_token", "Authentication required")
        missing = [scope for scope in self._required if scope not in token.scopes]
        if missing:
            return self._refuse(403, "insufficient_scope", f"Required scope: {' '.join(missing)}", missing)
        return token.subject or token.client_id, None if token.expires_at is None else float(token.expires_at)

    async def _access_token(self, request: Request) -> AccessToken | None:
        if "user" in request.scope:  # the SDK's authentication middleware checked it: its verdict
            user = request.scope["user"]
            return user.access_token if isinstance(user, AuthenticatedUser) else None
        header = request.headers.get("authorization", "")
        if header[:7].lower() != "bearer " or not header[7:].strip():
            return None
        assert self._verifier is not None
        token = await self._verifier.verify_token(header[7:].strip())
        if token is None or (token.expires_at is not None and token.expires_at < int(time.time())):
            return None
        if self._resource is not None and _url(token.resource) != self._resource:
            return None
        return token

    def _refuse(self, status: int, error: str, description: str, scopes: Sequence[str] = ()) -> Response:
        parts = [f'error="{error}"', f'error_description="{description}"']
        if self._metadata:
            parts.append(f'resource_metadata="{self._metadata}"')
        wanted = [*self._required, *scopes]
        if wanted:
            parts.append(f'scope="{" ".join(dict.fromkeys(wanted))}"')
        headers = {"WWW-Authenticate": "Bearer " + ", ".join(parts), **_NO_STORE, **_COMMON_HEADERS}
        return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


class _StreamCount:
    """Open streams, in all and per caller: one caller's tabs cannot take every stream."""

    def __init__(self, most: int, most_per_caller: int) -> None:
        self._most = most
        self._most_per_caller = most_per_caller
        self._open: dict[str, int] = {}

    def take(self, caller: str) -> Literal["ok", "caller", "process"]:
        if self._open.get(caller, 0) >= self._most_per_caller:
            return "caller"
        if sum(self._open.values()) >= self._most:
            return "process"
        self._open[caller] = self._open.get(caller, 0) + 1
        return "ok"

    def give_back(self, caller: str) -> None:
        self._open[caller] -= 1
        if not self._open[caller]:
            del self._open[caller]


class _Page:
    """The page and its script, read once from the package, and their headers."""

    def __init__(self, base: str) -> None:
        package = files(__package__ or "mcp_jobs.server.ops")
        text = (package / "page.html").read_text(encoding="utf-8")
        self.html = text.replace("__JOBS_BASE__", html.escape(base, quote=True))
        self.script = (package / "page.js").read_text(encoding="utf-8")
        # The page's one <style> block is allowed by its hash: no 'unsafe-inline' anywhere.
        styles = " ".join(f"'sha256-{_sha256(block)}'" for block in re.findall(r"<style>(.*?)</style>", text, re.S))
        policy = "; ".join(
            [
                "default-src 'none'",
                "script-src 'self'",
                "style-src " + (styles or "'none'"),
                "connect-src 'self'",
                "img-src 'self' data:",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )
        self.headers = {"Content-Security-Policy": policy, **_NO_STORE, **_COMMON_HEADERS}
        self.script_headers = {**_NO_STORE, **_COMMON_HEADERS}


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _url(value: str | None) -> str | None:
    """A URL compared as the SDK does: case and default-port spelling aside, and a trailing slash."""
    try:
        return str(AnyHttpUrl(value or "")).removesuffix("/")
    except ValidationError:
        return None


def _not_found() -> Response:
    return Response("Not Found", status_code=404, media_type="text/plain", headers=_COMMON_HEADERS)
