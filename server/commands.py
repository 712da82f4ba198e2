"""The service's commands: `serve`, `worker`, `dev` and `token` (`cli.py` loads them on use).

`serve` and `worker` run exactly the job modules they are given (`--jobs` or
`MCP_JOBS_JOB_MODULES`) and refuse to start without any; `dev` serves the bundled examples when
none are configured, so the quick start works on its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from typing import Literal

import anyio
import click
import uvicorn

from mcp_jobs import tracing
from mcp_jobs.celery_app import create_celery_app
from mcp_jobs.logs import configure_logging
from mcp_jobs.registry import load_jobs
from mcp_jobs.server.app import Runtime, build_http_app, build_mcp_server
from mcp_jobs.server.auth import hash_token
from mcp_jobs.server.dev_redis import RedisProcess, reachable
from mcp_jobs.server.drain import DrainingServer, OpenRequests
from mcp_jobs.server.processes import ChildSpec, Supervisor
from mcp_jobs.server.session_routing import SessionRouting
from mcp_jobs.settings import Settings, get_settings, redact_url

logger = logging.getLogger("mcp_jobs")

EXAMPLE_JOBS = "mcp_jobs.examples"
"""The bundled example jobs: served by `dev`, and by `serve`/`worker` only when asked for."""

NO_JOBS = (
    "no job modules configured: set MCP_JOBS_JOB_MODULES (or pass --jobs) to the Python modules "
    f"holding your @job functions, e.g. --jobs myjobs; --jobs {EXAMPLE_JOBS} serves the bundled examples"
)

MAX_REQUEST_HEAD = 64 * 1024
"""Bytes of a request's line and headers the HTTP server takes. Some identity providers' access
tokens run to tens of KB; with h11's 16 KB a larger head was refused or not depending on how its
bytes happened to arrive (a whole head in one read parses at any size), which a CI run showed as
a 60 KB token answered 400 once and 401 every other time."""

jobs_option = click.option(
    "--jobs",
    "job_modules",
    default=None,
    metavar="MODULES",
    help="Comma-separated modules holding @job functions (default: MCP_JOBS_JOB_MODULES).",
)


@click.command()
@click.option("--transport", type=click.Choice(["http", "stdio"]), default="http", show_default=True)
@click.option("--host", default=None, help="Bind address (default: MCP_JOBS_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: MCP_JOBS_PORT, 8000).")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Server processes on the one port, about one per core (default: MCP_JOBS_PROCESSES, 1).",
)
@click.option("--child", default=None, hidden=True, help="Internal: one of the processes of --processes N.")
@jobs_option
def serve(
    transport: Literal["http", "stdio"],
    host: str | None,
    port: int | None,
    processes: int | None,
    child: str | None,
    job_modules: str | None,
) -> None:
    """Serve the jobs as MCP tools over Streamable HTTP or stdio."""
    settings = _require_jobs(_settings_with(host=host, port=port, processes=processes, job_modules=job_modules))
    configure_logging(settings.log_level, settings.log_format)
    if child is not None:
        tracing.configure(tracing.SERVER_SERVICE)
        _serve_http(Runtime(settings), ChildSpec.decode(child))
        return
    if transport == "stdio":
        if settings.processes > 1:
            raise click.UsageError("--processes is for HTTP: a stdio server is one process its client starts")
        tracing.configure(tracing.SERVER_SERVICE)
        runtime = Runtime(settings)
        if settings.auth_enabled:
            logger.info("stdio: no authentication; the client that launched this process owns it")
        anyio.run(build_mcp_server(runtime).run_stdio_async)
        return
    _require_auth_off_loopback(settings)
    if settings.processes > 1:
        tools = load_jobs(settings.job_modules)  # a module that does not import fails here, once
        click.echo(
            f"mcp-jobs: serving {len(tools)} tools at {_address(settings)} in {settings.processes} processes", err=True
        )
        sys.exit(asyncio.run(Supervisor(settings, settings.processes).run()))
    tracing.configure(tracing.SERVER_SERVICE)
    _serve_http(Runtime(settings))


def _address(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}{settings.path}"


def _serve_http(runtime: Runtime, child: ChildSpec | None = None) -> None:
    """Serve over HTTP: on its own port, or as `child` of a `--processes N` supervisor."""
    settings = runtime.settings
    app = build_http_app(runtime)
    if child is None:
        click.echo(f"mcp-jobs: serving {len(runtime.jobs)} tools at {_address(settings)}", err=True)
    else:
        app = SessionRouting(app, child.index, child.processes, child.peers)
    requests = OpenRequests(app)
    config = uvicorn.Config(
        requests,
        host=settings.host,
        port=settings.port,
        loop=settings.event_loop,
        log_level=settings.log_level.lower(),
        lifespan="on",
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 2,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
    )
    server = DrainingServer(config, runtime, requests, None if child is None else child.control())
    try:
        server.run(sockets=None if child is None else child.sockets())
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled: the shutdown was clean


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@jobs_option
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(job_modules: str | None, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker for the jobs; any `celery worker` option is passed through."""
    settings = _require_jobs(_settings_with(job_modules=job_modules))
    if settings.log_format == "json":
        configure_logging(settings.log_level, settings.log_format)  # Celery keeps a root logger that has handlers
    app = create_celery_app(settings)
    args = list(celery_args)
    if not any(a.startswith(("-l", "--loglevel")) for a in args):
        args += ["--loglevel", settings.log_level]
    app.worker_main(["worker", *args])


@click.command()
@click.option("--port", type=int, default=None, help="HTTP port (default: MCP_JOBS_PORT, 8000).")
@click.option("--concurrency", type=int, default=2, show_default=True, help="Worker processes.")
@jobs_option
def dev(port: int | None, concurrency: int, job_modules: str | None) -> None:
    """Everything in one go: Redis (embedded if none answers), a worker and the HTTP server."""
    settings = _settings_with(port=port, job_modules=job_modules)
    if not settings.job_modules:
        settings = settings.model_copy(update={"job_modules": [EXAMPLE_JOBS]})
    configure_logging(settings.log_level, settings.log_format)
    tracing.configure(tracing.SERVER_SERVICE)
    embedded: RedisProcess | None = None
    if not settings.redis_sentinels and not settings.redis_cluster and not reachable(settings.redis_url):
        try:
            embedded = RedisProcess().start()
        except RuntimeError as exc:
            raise click.ClickException(f"no Redis at {redact_url(settings.redis_url)}, and {exc}") from exc
        click.echo(
            f"mcp-jobs: no Redis at {redact_url(settings.redis_url)}; started an embedded Valkey at {embedded.url}",
            err=True,
        )
        settings = settings.model_copy(update={"redis_url": embedded.url, "broker_url": None})
    env = {
        **os.environ,
        "MCP_JOBS_REDIS_URL": settings.redis_url,
        "MCP_JOBS_BROKER_URL": settings.effective_broker_url,
        "MCP_JOBS_JOB_MODULES": ",".join(settings.job_modules),
    }
    worker_name = f"dev-{os.getpid()}@%h"
    worker_args = ["worker", "--concurrency", str(concurrency), "-n", worker_name]
    worker_proc = subprocess.Popen([sys.executable, "-m", "mcp_jobs.server.cli", *worker_args], env=env)
    try:
        _serve_http(Runtime(settings))
    finally:
        worker_proc.send_signal(signal.SIGTERM)
        try:
            worker_proc.wait(15)
        except subprocess.TimeoutExpired:
            worker_proc.kill()
        if embedded is not None:
            embedded.close()
        click.echo("mcp-jobs: stopped", err=True)


def _settings_with(*, job_modules: str | None = None, **overrides: object) -> Settings:
    settings = get_settings()
    update = {key: value for key, value in overrides.items() if value is not None}
    if job_modules is not None:
        update["job_modules"] = [module.strip() for module in job_modules.split(",") if module.strip()]
    return settings.model_copy(update=update) if update else settings


def _require_auth_off_loopback(settings: Settings) -> None:
    """Anyone who reaches the port could run any job: off loopback, authentication is required."""
    if settings.auth_enabled or settings.allow_unauthenticated or _is_loopback(settings.host):
        return
    raise click.UsageError(
        f"refusing to serve on {settings.host} without authentication: configure MCP_JOBS_AUTH_TOKENS "
        "or MCP_JOBS_AUTH_JWKS_URL, or set MCP_JOBS_ALLOW_UNAUTHENTICATED=true if something in front "
        "of this server authenticates callers"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--caller", required=True, help="The caller id jobs started with this token are recorded under.")
@click.option("--scope", "scopes", multiple=True, help="A scope the token carries (repeat for more).")
def token(caller: str, scopes: tuple[str, ...]) -> None:
    """Make a static bearer token: prints it once, and its MCP_JOBS_AUTH_TOKENS entry (a hash)."""
    value = secrets.token_urlsafe(32)
    entry = {"sha256": hash_token(value), "caller": caller, "scopes": list(scopes)}
    click.echo(f"token (give it to the caller; it is not stored): {value}")
    click.echo(f"MCP_JOBS_AUTH_TOKENS entry: {json.dumps(entry)}")


def _require_jobs(settings: Settings) -> Settings:
    if not settings.job_modules:
        raise click.UsageError(NO_JOBS)
    return settings
