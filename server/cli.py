"""The `mcp-jobs` command line: `serve`, `worker` and `dev`.

`serve` and `worker` run exactly the job modules they are given (`--jobs` or
`MCP_JOBS_JOB_MODULES`) and refuse to start without any; `dev` serves the bundled examples when
none are configured, so the quick start works on its own.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Literal

import anyio
import click
import uvicorn

from mcp_jobs.celery_app import create_celery_app
from mcp_jobs.server.app import Runtime, build_http_app, build_mcp_server
from mcp_jobs.server.embedded import RedisProcess, reachable
from mcp_jobs.settings import Settings, get_settings, redact_url

logger = logging.getLogger("mcp_jobs")

EXAMPLE_JOBS = "mcp_jobs.examples"
"""The bundled example jobs: served by `dev`, and by `serve`/`worker` only when asked for."""

NO_JOBS = (
    "no job modules configured: set MCP_JOBS_JOB_MODULES (or pass --jobs) to the Python modules "
    f"holding your @job functions, e.g. --jobs myjobs; --jobs {EXAMPLE_JOBS} serves the bundled examples"
)

jobs_option = click.option(
    "--jobs",
    "job_modules",
    default=None,
    metavar="MODULES",
    help="Comma-separated modules holding @job functions (default: MCP_JOBS_JOB_MODULES).",
)


def _configure_logging(level: str) -> None:
    # stderr only: on stdio, stdout belongs to the protocol.
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@click.group()
@click.version_option(package_name="mcp-jobs")
def main() -> None:
    """Run long MCP tool calls as Celery jobs with live progress."""


@main.command()
@click.option("--transport", type=click.Choice(["http", "stdio"]), default="http", show_default=True)
@click.option("--host", default=None, help="Bind address (default: MCP_JOBS_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: MCP_JOBS_PORT, 8000).")
@jobs_option
def serve(transport: Literal["http", "stdio"], host: str | None, port: int | None, job_modules: str | None) -> None:
    """Serve the jobs as MCP tools over Streamable HTTP or stdio."""
    settings = _require_jobs(_settings_with(host=host, port=port, job_modules=job_modules))
    _configure_logging(settings.log_level)
    runtime = Runtime(settings)
    if transport == "stdio":
        anyio.run(build_mcp_server(runtime).run_stdio_async)
        return
    _serve_http(runtime)


def _serve_http(runtime: Runtime) -> None:
    settings = runtime.settings
    app = build_http_app(runtime)
    click.echo(
        f"mcp-jobs: serving {len(runtime.jobs)} tools at http://{settings.host}:{settings.port}{settings.path}",
        err=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(), lifespan="on")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@jobs_option
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(job_modules: str | None, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker for the jobs; any `celery worker` option is passed through."""
    settings = _require_jobs(_settings_with(job_modules=job_modules))
    app = create_celery_app(settings)
    args = list(celery_args)
    if not any(a.startswith(("-l", "--loglevel")) for a in args):
        args += ["--loglevel", settings.log_level]
    app.worker_main(["worker", *args])


@main.command()
@click.option("--port", type=int, default=None, help="HTTP port (default: MCP_JOBS_PORT, 8000).")
@click.option("--concurrency", type=int, default=2, show_default=True, help="Worker processes.")
@jobs_option
def dev(port: int | None, concurrency: int, job_modules: str | None) -> None:
    """Everything in one go: Redis (embedded if none answers), a worker and the HTTP server."""
    settings = _settings_with(port=port, job_modules=job_modules)
    if not settings.job_modules:
        settings = settings.model_copy(update={"job_modules": [EXAMPLE_JOBS]})
    _configure_logging(settings.log_level)
    embedded: RedisProcess | None = None
    if not reachable(settings.redis_url):
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


def _require_jobs(settings: Settings) -> Settings:
    if not settings.job_modules:
        raise click.UsageError(NO_JOBS)
    return settings


if __name__ == "__main__":
    main()
