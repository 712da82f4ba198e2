"""Settings shared by the server and the workers.

One `MCP_JOBS_` environment prefix (and an optional `.env` file) configures both sides, so a
worker and a server started from the same environment agree on Redis, the broker and the key
namespace without further wiring.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]
"""A list read from one environment variable, either as JSON (`["a","b"]`) or comma-separated (`a,b`)."""


ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""JWT algorithms an access token may be signed with: public-key ones only (never `none` or HMAC)."""


class StaticToken(BaseModel):
    """One bearer token of `MCP_JOBS_AUTH_TOKENS`: its SHA-256 (never the token), its caller, its scopes."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
    caller: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: list[str] = []


class Settings(BaseSettings):
    """Everything an operator can set, with the defaults a first run needs."""

    model_config = SettingsConfigDict(env_prefix="MCP_JOBS_", env_file=".env", extra="ignore")

    # repr=False: URLs can carry passwords, and settings end up in tracebacks and debug logs.
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    """Redis holding the job snapshots and carrying the progress events (pub/sub). `rediss://`
    for TLS, with certificate verification on unless the URL says `ssl_cert_reqs=none`."""
    broker_url: str | None = Field(default=None, repr=False)
    """Celery broker; defaults to `redis_url` (to the Sentinel-managed master with `redis_sentinels`)."""
    redis_sentinels: CommaList = Field(default_factory=list)
    """Redis Sentinels (`host:port`, comma-separated) that find the master, instead of
    `redis_url`'s host: after a failover every connection finds the new master by itself. The
    database, password and TLS still come from `redis_url`; the broker too (kombu's `sentinel://`
    transport) unless `broker_url` names another. See `redis_connect.py`."""
    redis_sentinel_master: str = "mymaster"
    """The master's name, as the sentinels monitor it (`sentinel monitor <name> ...`)."""
    redis_sentinel_username: str | None = None
    redis_sentinel_password: str | None = Field(default=None, repr=False)
    """The sentinels' own credentials, where they differ from the master's (`requirepass` in
    sentinel.conf); unset, sentinels are asked without any."""
    redis_cluster: bool = False
    """`redis_url` names a node of a Redis Cluster (any node: the others are found from it), which
    then holds the snapshots and carries the events (sharded pub/sub, one slot per job). Celery
    has no Redis Cluster transport, so `broker_url` must name the broker (a standalone Redis,
    `sentinel://` or RabbitMQ). See `redis_connect.py`."""
    namespace: str = "mcp-jobs"
    """Prefix of every Redis key and channel, so several deployments can share one Redis."""
    job_modules: CommaList = Field(default_factory=list)
    """Python modules whose `@job` functions become tools (imported by server and worker alike).
    None by default: `serve` and `worker` refuse to start without any, `dev` uses the examples."""
    host: str = "127.0.0.1"
    """HTTP bind address. Localhost unless you say otherwise."""
    port: int = 8000
    processes: int = Field(default=1, ge=1)
    """HTTP server processes on the one port (`serve --processes`): one process serves on one core,
    so about one per core the server may use. They share nothing but Redis, as replicas do; a
    2025-11-25 session stays with the process that opened it (see `server/processes.py`)."""
    path: str = "/mcp"
    """Path of the Streamable HTTP endpoint."""
    allowed_hosts: CommaList = Field(default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"])
    """Host header values accepted (DNS-rebinding protection); `name:*` allows any port."""
    allowed_origins: CommaList = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    )
    """Origin header values accepted from browsers; requests without Origin are allowed."""
    public_url: str | None = None
    """This server's URL as clients reach it (`https://jobs.example.com/mcp`): the resource its
    access tokens must be issued for. Default: `http://<host>:<port><path>`."""
    auth_tokens: Annotated[list[StaticToken], NoDecode] = Field(default_factory=list, repr=False)
    """Static bearer tokens, as a JSON list of `{"sha256": ..., "caller": ..., "scopes": [...]}`
    (`mcp-jobs token` makes one). Turns authentication on."""
    auth_jwks_url: str | None = None
    """JWKS of the authorization server whose JWT access tokens are accepted. Turns authentication
    on (and wins over static tokens)."""
    auth_issuer_url: str | None = None
    """The authorization server: the JWTs' required `iss`, and what the protected resource metadata
    tells clients (default: this server's origin, for static tokens)."""
    auth_scopes: CommaList = Field(default_factory=list)
    """Scopes every call needs (403 `insufficient_scope` without them); jobs can require more."""
    auth_jwks_lifespan: float = Field(default=300.0, gt=0)
    """Seconds a fetched JWKS is trusted: a key removed from it is refused, and a key added to it
    accepted, after at most this long (a token with a key id not in the cached set also fetches
    it anew, at most once per 30 s)."""
    auth_algorithms: CommaList = Field(default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"])
    """JWT signature algorithms accepted (never `none` or HMAC)."""
    allow_unauthenticated: bool = False
    """Serve without authentication on a non-loopback address (refused by default)."""
    progress_rate: float = Field(default=15.0, gt=0)
    """Most progress notifications per second sent for one call; extra updates are coalesced."""
    result_ttl: int = Field(default=3600, gt=0)
    """Seconds a job's snapshot (state and result) stays in Redis after its last update."""
    snapshot_poll_interval: float = Field(default=5.0, gt=0)
    """Seconds between safety reads of a job's snapshot while no event arrives."""
    default_time_limit: float | None = Field(default=None, gt=0)
    """Time limit in seconds for jobs that set none of their own (None: no limit)."""
    handoff_after: float | None = Field(default=None, gt=0)
    """Seconds after which a call whose job is still running returns, leaving the job running for
    the caller to follow with `job_status`/`job_result`/`job_cancel` (None: calls wait to the end).
    Jobs can set their own (`@job(handoff_after=...)`)."""
    max_queue_wait: float = Field(default=300.0, gt=0)
    """Seconds a job may wait for a worker; then its call ends with an error and a late worker skips it."""
    keepalive_interval: float = Field(default=10.0, gt=0)
    """Seconds without a notification after which the server sends one, so clients that reset their
    request timeout on progress do not give up on a slow job."""
    heartbeat_interval: float = Field(default=2.0, gt=0)
    """Seconds between a running job's liveness beats (from a thread beside the job)."""
    worker_lost_after: float = Field(default=10.0, gt=0)
    """Seconds without a liveness beat after which the server treats a running job's worker as lost."""
    visibility_timeout: int = Field(default=3600, gt=0)
    """Redis broker: seconds before an unacknowledged retry-safe job is handed to another worker after
    its worker process died. Must exceed the longest retry-safe job's run time."""
    max_calls_in_flight: int | None = Field(default=None, gt=0)
    """Most streaming calls one server process follows at once (None: no limit)."""
    max_calls_per_caller: int | None = Field(default=None, gt=0)
    """Most jobs one caller may have queued or running at once, counted in Redis across every
    server replica: calls that wait on their job, tasks and handed-off jobs alike (None: no limit)."""
    max_queued_jobs: int | None = Field(default=None, gt=0)
    """Most jobs waiting in one queue (Redis broker); calls and tasks beyond it are refused. The
    parts of fanned-out jobs are not counted: they are the work of jobs already admitted."""
    max_parts: int = Field(default=1000, gt=0)
    """Most parts one `progress.map` may fan out; a larger map fails in the job with a clear error
    (each part is a queued message, counted against its caller's own job)."""
    redis_outage_limit: float = Field(default=45.0, gt=0)
    """Seconds the server keeps trying to reach Redis for a call in flight before it ends the call
    with an error that says Redis is unreachable. Longer than a Sentinel failover (30 s with
    Sentinel's default `down-after-milliseconds`)."""
    input_timeout: float = Field(default=600.0, gt=0)
    """Seconds a job that asked its caller a question (`progress.ask`, `sample`, `roots`) waits for
    the answer before it stops with a clear error. The wait counts against the job's time limit,
    and a waiting job holds its worker slot."""
    request_state_keys: CommaList = Field(default_factory=list, repr=False)
    """Secrets (32 bytes or more each, comma-separated or a JSON list) that seal the `requestState`
    of a 2026-07-28 call whose job asked a question (AES-256-GCM; the first seals, all unseal:
    rotate by putting a new one first). Every replica needs the same ones, so that the call that
    answers can go to any of them. Unset: a key of the process's own, which only suits one
    server process."""
    task_after: float = Field(default=10.0, ge=0)
    """Seconds a 2026-07-28 call that opts in to tasks *and* sends a `progressToken` streams its
    progress like a plain call before it is answered with a task handle (the job goes on; the
    client polls from there). 0: a task at once. Jobs with `task="required"` are tasks at once."""
    strict_task_names: bool = False
    """Refuse `tasks/*` requests over HTTP that carry no `Mcp-Name` header (the extension's rule for
    clients). Off by default: any replica answers any task, so no routing needs the header, and
    some clients (FastMCP's) omit it. A header that names another task is always refused."""
    max_sessions: int | None = Field(default=10_000, gt=0)
    """Most 2025-11-25 sessions one server process keeps open (the SDK's `max_sessions`; None: no
    limit); a client asking for one more is refused until one closes or idles out."""
    session_idle_timeout: float | None = Field(default=1800.0, gt=0)
    """Seconds after which an idle 2025-11-25 session is closed (the SDK's `session_idle_timeout`)."""
    max_streams_per_caller: int = Field(default=4, gt=0)
    """Most jobs-page event streams one caller may hold open on one server process."""
    ready_without_workers: bool = False
    """Report ready on /readyz while a routed queue has no live worker (it is still listed): for
    workers that scale to zero on queue depth, which only a server taking calls can make grow."""
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    """The HTTP server's event loop: `uvloop` needs the package (`pip install uvloop`). Chosen,
    never picked by what happens to be installed (see bench/ANALYSIS.md, scenario 10)."""
    gc_freeze: bool = True
    """Once the HTTP server serves, freeze what it loaded for Python's garbage collector and collect
    young objects less often (`server/collector.py`: measured, the collector's full sweeps took a
    quarter of the server's CPU and paused every call); false: Python's own settings."""
    shutdown_grace: float = Field(default=30.0, ge=0)
    """Seconds a stopping server (SIGTERM) gives calls in flight to finish before it hands them
    off (or cancels them, without the handoff tools)."""
    jobs_page: bool = False
    """Serve the live jobs page at /jobs (behind the bearer token when authentication is on)."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line, with job id, tool and caller where known, and the
    trace and span ids where a span is current (tracing: `OTEL_*`, see `tracing.py`)."""
    trace_url: str | None = None
    """Where a trace id links to on the jobs page and in `mcp-jobs jobs JOB_ID`: a URL with
    `{trace_id}` in it (e.g. `http://jaeger:16686/trace/{trace_id}`); unset, ids are shown plain."""
    max_argument_bytes: int = Field(default=1_000_000, gt=0)
    """Largest tool arguments (as JSON) the server accepts."""
    max_result_bytes: int = Field(default=4_000_000, gt=0)
    """Largest job result (as JSON) a worker returns; larger results fail with a clear error."""
    max_artifact_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Largest file one `progress.artifact` may store (it lives in Redis with the job's result)."""
    max_message_chars: int = Field(default=1000, gt=0)
    """Longest progress message a job may report (longer ones raise in the job)."""
    max_progress_token_bytes: int = Field(default=256, gt=0)
    """Largest `progressToken` (as JSON) a caller may send; it is echoed on every notification."""
    data_dir: Path | None = None
    """Folder the file-reading example jobs may read (default: the bundled sample data)."""
    log_level: str = "INFO"

    @field_validator(
        "job_modules",
        "allowed_hosts",
        "allowed_origins",
        "auth_scopes",
        "auth_algorithms",
        "request_state_keys",
        "redis_sentinels",
        mode="before",
    )
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for node in value:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{node!r}: sentinels are host:port, comma-separated")
        return value

    @field_validator("trace_url")
    @classmethod
    def _trace_link(cls, value: str | None) -> str | None:
        if value is not None and ("{trace_id}" not in value or not value.startswith(("http://", "https://"))):
            raise ValueError("an http(s) URL with {trace_id} in it, e.g. http://jaeger:16686/trace/{trace_id}")
        return value

    @field_validator("auth_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [name for name in value if name not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"{', '.join(refused)}: only asymmetric JWT algorithms ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
            )
        return value

    @model_validator(mode="after")
    def _cluster_needs_a_broker(self) -> Settings:
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError(
                "MCP_JOBS_REDIS_CLUSTER and MCP_JOBS_REDIS_SENTINELS exclude each other: pick one topology"
            )
        if self.redis_cluster and (not self.broker_url or self.broker_url == self.redis_url):
            raise ValueError(
                "MCP_JOBS_REDIS_CLUSTER needs MCP_JOBS_BROKER_URL: Celery cannot queue jobs on a Redis Cluster, so "
                "name a standalone Redis, sentinel:// or RabbitMQ broker"
            )
        return self

    @model_validator(mode="after")
    def _issuer_with_jwks(self) -> Settings:
        if self.auth_jwks_url and not self.auth_issuer_url:
            raise ValueError("MCP_JOBS_AUTH_JWKS_URL needs MCP_JOBS_AUTH_ISSUER_URL: tokens' `iss` must be checked")
        return self

    @field_validator("request_state_keys")
    @classmethod
    def _long_enough(cls, value: list[str]) -> list[str]:
        if any(len(key.encode()) < 32 for key in value):
            raise ValueError(
                "each MCP_JOBS_REQUEST_STATE_KEYS key needs 32 bytes or more "
                '(python -c "import secrets; print(secrets.token_hex(32))")'
            )
        return value

    @field_validator("auth_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []  # unset or empty: no static tokens
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_jwks_url or self.auth_tokens)

    @property
    def resource_url(self) -> str:
        """This server's resource identifier (what its tokens' audience must be)."""
        return self.public_url or f"http://{self.host}:{self.port}{self.path}"

    @property
    def max_request_body_bytes(self) -> int:
        """Room for the largest accepted arguments plus the JSON-RPC envelope."""
        return max(4 * 1024 * 1024, 2 * self.max_argument_bytes)

    @property
    def data_path(self) -> Path:
        return self.data_dir or Path(__file__).parent / "sample_data"

    @property
    def effective_broker_url(self) -> str:
        """`broker_url`, else the Redis of the jobs: `redis_url`, or with sentinels kombu's
        `sentinel://` URLs (one per sentinel, with `redis_url`'s credentials and database)."""
        if self.broker_url:
            return self.broker_url
        if not self.redis_sentinels:
            return self.redis_url
        parts = urlsplit(self.redis_url)
        auth = parts.netloc.rpartition("@")[0]
        database = parts.path.strip("/") or "0"
        return ";".join(f"sentinel://{auth + '@' if auth else ''}{node}/{database}" for node in self.redis_sentinels)

    @property
    def broker_shares_redis(self) -> bool:
        """Whether the broker is the Redis that holds the jobs (no `broker_url` of its own): a job's
        message is then queued in the script that writes its first snapshot, and queue depths are readable."""
        return not self.broker_url or self.broker_url == self.redis_url


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
