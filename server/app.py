"""Building the MCP server: one tool per registered job, plus the HTTP app around it.

Each tool is an ordinary SDK `Tool` whose argument model and output schema are the job's own
(`JobSpec.metadata`), so the SDK validates arguments before anything is queued and validates the
result against the output schema before it is returned. The tool body hands the call to the
process's `Dispatcher`, created in the server lifespan (once per process, for HTTP and stdio).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.abc
import redis.asyncio as aioredis
from celery import Celery
from mcp.server.auth.provider import TokenVerifier
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.tools import Tool
from mcp.server.request_state import RequestStateSecurity
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import (
    CompleteRequestParams,
    PaginatedRequestParams,
    SetLevelRequestParams,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic_core import to_jsonable_python
from redis.asyncio.cluster import RedisCluster
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_jobs import __version__
from mcp_jobs._contract import JOB_ID_META_KEY
from mcp_jobs._events import Keys
from mcp_jobs.artifacts import ARTIFACT_URI, JOB_URI
from mcp_jobs.producer import create_producer_app
from mcp_jobs.redis_connect import async_client
from mcp_jobs.registry import JobSpec, load_jobs, load_prompts, load_resources
from mcp_jobs.server.auth import ASGIApp, ScopeChallenges, auth_settings, token_verifier
from mcp_jobs.server.callers import CALLER_FIELD, caller_of
from mcp_jobs.server.core_tasks import CoreTasks
from mcp_jobs.server.dispatch import Dispatcher, JobFailed, JobHandedOff, Listeners, progress_sender
from mcp_jobs.server.events import RedisSubscriptionBus
from mcp_jobs.server.follow import Ask, InputRequired, SendProgress
from mcp_jobs.server.handoff import error_result, handoff_tools
from mcp_jobs.server.listener import JobListener, Listener
from mcp_jobs.server.metrics import Metrics
from mcp_jobs.server.ops.page import jobs_routes
from mcp_jobs.server.ops.view import queue_rows
from mcp_jobs.server.questions import (
    ANSWER_GRACE,
    CAN_ASK_FIELD,
    LEGACY,
    RoundAsker,
    SessionAsker,
    SessionLogLevels,
    abilities,
    input_required,
    log_sender,
    require_capabilities,
    resume,
)
from mcp_jobs.server.resources import JobResources
from mcp_jobs.server.sharded_listener import ShardedJobListener
from mcp_jobs.server.snapshots import AsyncJobStore
from mcp_jobs.server.task_listen import TaskSubscriptions
from mcp_jobs.server.task_records import TaskRecords
from mcp_jobs.server.tasks import TasksExtension
from mcp_jobs.settings import Settings

logger = logging.getLogger(__name__)

"""`_meta` key of a tool result that names the job which produced it (for logs and support)."""

REDIS_POOL_SIZE = 50
"""Connections for snapshot reads and writes; calls wait for a free one instead of failing."""

REDIS_CONNECT_TIMEOUT = 5.0
"""Seconds the server's connections wait for Redis to accept them."""

READINESS_CACHE = 1.0
"""Seconds a readiness answer (and the queue and worker gauges) is reused."""

REDIS_CLIENT_NAME = "mcp-jobs-server"
"""`CLIENT SETNAME` of the server's Redis connections, so operators can tell them apart in `CLIENT LIST`."""

_CONTEXT_KWARG = "_mcp_jobs_context"  # a leading underscore can never be a job parameter


class Runtime:
    """What a server process holds: settings, jobs, the Celery app and, while serving, the dispatcher."""

    def __init__(self, settings: Settings, jobs: dict[str, JobSpec] | None = None) -> None:
        self.settings = settings
        self.jobs = jobs if jobs is not None else load_jobs(settings.job_modules)
        self.celery: Celery = create_producer_app(settings)
        """Send-only: the server queues and revokes jobs; workers run them."""
        self.metrics = Metrics()
        self.log_levels = SessionLogLevels()
        """The `logging/setLevel` of each 2025-11-25 session."""
        self.can_hand_off = settings.handoff_after is not None or any(
            spec.handoff_after is not None for spec in self.jobs.values()
        )
        """Whether the handoff tools are served (a job or the settings configure a handoff)."""
        self._dispatcher: Dispatcher | None = None
        self._listener: Listener | None = None
        self._background: anyio.abc.TaskGroup | None = None
        self._client: aioredis.Redis | None = None
        self._readiness: tuple[float, dict[str, Any]] | None = None

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise RuntimeError("the mcp-jobs runtime is not started")
        return self._dispatcher

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        """Open the Redis connections and the pub/sub listener for the life of the server."""
        client = async_client(
            self.settings,
            max_connections=REDIS_POOL_SIZE,
            socket_keepalive=True,
            # A silent host (no reset) must not hold a call for the system's connect timeout (minutes).
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
            client_name=REDIS_CLIENT_NAME,
            # RESP2: redis-py 8 speaks RESP3 by default, where every pub/sub message goes through
            # a push handler that formats it for a debug log line: ~8 us a message on the one
            # reader every call depends on (measured: 53 -> 43 us per message read and parsed).
            protocol=2,
        )
        logger.info("event loop: %s", type(asyncio.get_running_loop()).__module__.partition(".")[0])
        listener: Listener = (
            ShardedJobListener(client, Keys(self.settings.namespace))
            if isinstance(client, RedisCluster)
            else JobListener(client, Keys(self.settings.namespace))
        )
        await listener.start()
        self._client = client
        store = AsyncJobStore(client, Keys(self.settings.namespace), self.settings.result_ttl)
        self._dispatcher = Dispatcher(self.settings, store, listener, self.celery, self.metrics, self.can_hand_off)
        self._listener = listener
        try:
            async with anyio.create_task_group() as background:
                self._background = background
                try:
                    yield self
                finally:
                    background.cancel_scope.cancel()  # the subscriptions it follows jobs for
        finally:
            self._dispatcher = self._listener = self._background = None
            await listener.stop()
            await client.aclose()  # and its pool

    @property
    def listener(self) -> Listener:
        if self._listener is None:
            raise RuntimeError("the mcp-jobs runtime is not started")
        return self._listener

    @property
    def background(self) -> anyio.abc.TaskGroup:
        """Tasks that outlive a request (resource subscriptions), for the life of the server."""
        if self._background is None:
            raise RuntimeError("the mcp-jobs runtime is not started")
        return self._background

    @property
    def redis(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("the mcp-jobs runtime is not started")
        return self._client

    @property
    def closing(self) -> bool:
        return self._dispatcher is None or self._dispatcher.closing

    @property
    def queues(self) -> set[str]:
        """The Celery queues this server routes jobs to."""
        default = str(self.celery.conf.task_default_queue)
        return {spec.queue or default for spec in self.jobs.values()}

    async def readiness(self) -> dict[str, Any]:
        """Whether this server can serve calls: Redis answers, and every queue it routes to has
        a live worker (unless `ready_without_workers`: workers that scale to zero). Also
        refreshes the queue depth and live worker gauges. Cached for `READINESS_CACHE` seconds:
        probes and scrapes (unauthenticated) cost Redis one scan a second."""
        now = time.monotonic()
        if self._readiness is not None and now - self._readiness[0] < READINESS_CACHE:
            return self._readiness[1]
        state = await self._read_readiness()
        self._readiness = (now, state)
        return state

    async def _read_readiness(self) -> dict[str, Any]:
        if self._client is None:
            return {"ready": False, "redis": False}
        broker_is_redis = self.settings.broker_shares_redis
        try:
            await self._client.ping()
            rows = await queue_rows(self._client, Keys(self.settings.namespace), self.queues, broker_is_redis)
        except Exception:  # any failure means "not ready"
            return {"ready": False, "redis": False}
        served = {row.name: row for row in rows}
        for queue in self.queues:
            self.metrics.workers_alive.labels(queue).set(served[queue].workers)
            if (depth := served[queue].depth) is not None:
                self.metrics.queue_depth.labels(queue).set(depth)
        missing = sorted(queue for queue in self.queues if not served[queue].workers)
        ready = not missing or self.settings.ready_without_workers
        return {"ready": ready, "redis": True, "queues_without_workers": missing}


def build_mcp_server(runtime: Runtime, verifier: TokenVerifier | None = None) -> MCPServer:
    """The MCP server exposing every job of `runtime` as a tool; with `verifier`, every request
    needs a bearer token it accepts (HTTP only: on stdio the client owns the process)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Runtime]:
        async with runtime.running():
            runtime.background.start_soon(bus.relay, runtime.listener, runtime.redis)
            yield runtime

    handoff = handoff_tools(runtime) if runtime.can_hand_off else []
    prompts = [Prompt.from_function(fn) for fn in load_prompts(runtime.settings.job_modules).values()]
    bus = RedisSubscriptionBus(Keys(runtime.settings.namespace).events())
    records = TaskRecords(runtime)
    tasks = TasksExtension(runtime, records)
    server = MCPServer(
        "mcp-jobs",
        version=__version__,
        instructions="Tools here run as background jobs and report progress while they work.",
        tools=[job_tool(spec, runtime) for spec in runtime.jobs.values()] + handoff,
        extensions=[tasks],
        request_state_security=request_state_security(runtime.settings),
        subscriptions=bus,
        token_verifier=verifier,
        auth=auth_settings(runtime.settings) if verifier else None,
        lifespan=lifespan,
        log_level=runtime.settings.log_level.upper(),  # type: ignore[arg-type]
    )

    for prompt in prompts:
        server.add_prompt(prompt)
    serve_resources(server, runtime, bus)
    interval = 1.0 / runtime.settings.progress_rate
    server.middleware.append(TaskSubscriptions(tasks.detailed, lambda: runtime.listener, interval))
    server.middleware.append(CoreTasks(runtime, records, lambda: runtime.background))
    # `logging/setLevel` is a 2025-11-25 request (2026-07-28 sets the level per request); the SDK
    # has no seam for it but the low-level server's own registration.
    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, runtime.log_levels.set_level)

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(_: Request) -> JSONResponse:
        """Liveness: the process is up and serving HTTP."""
        return JSONResponse({"status": "ok"})

    @server.custom_route("/readyz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def ready(_: Request) -> JSONResponse:
        """Readiness (`Runtime.readiness`): Redis answers, and every routed queue has a live worker."""
        state = await runtime.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @server.custom_route("/metrics", methods=["GET"])  # type: ignore[untyped-decorator]
    async def metrics(_: Request) -> Response:
        """Prometheus metrics of this process."""
        await runtime.readiness()
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    settings = runtime.settings
    for route in jobs_routes(
        lambda: runtime.redis,
        Keys(settings.namespace),
        enabled=settings.jobs_page,
        verifier=verifier,
        required_scopes=settings.auth_scopes,
        resource_url=settings.resource_url if verifier else None,
        security=transport_security(settings),
        queues=lambda: runtime.queues,
        trace_url=settings.trace_url,
        queue_depths=settings.broker_shares_redis,
        closing=lambda: runtime.closing,
        max_streams_per_caller=settings.max_streams_per_caller,
    ):
        server.custom_route(route.path, methods=["GET"])(route.endpoint)

    return server


def serve_resources(server: MCPServer, runtime: Runtime, bus: RedisSubscriptionBus) -> None:
    """The job URIs (`resources.py`) and the job modules' own resources, with the listing, the
    2025-11-25 subscriptions and the completion of the templates' arguments. (The SDK has no seam
    for `resources/list`, `resources/subscribe`, `resources/unsubscribe` and a `completion/complete`
    that knows its caller but the low-level server's own registration.)"""
    resources = JobResources(
        lambda: runtime.redis,
        Keys(runtime.settings.namespace),
        lambda: runtime.dispatcher.store,
        lambda: runtime.listener,
        lambda: runtime.background,
        bus,
        runtime.settings.progress_rate,
    )
    server.middleware.append(resources)  # reads of job URIs, and the job URIs a listen stream names
    for entry in load_resources(runtime.settings.job_modules):
        server.resource(entry.uri, mime_type=entry.mime_type, description=entry.description)(entry.fn)
    status = "A job's status and, once it succeeded, its result."
    server.resource(JOB_URI, description=status, mime_type="application/json")(_job_status)
    artifact = "A file a job stored (the job's status lists its files, their types and sizes)."
    server.resource(ARTIFACT_URI, description=artifact)(_job_artifact)
    lowlevel = server._lowlevel_server
    listing = partial(resources.listing, own=server.list_resources)
    lowlevel.add_request_handler("resources/list", PaginatedRequestParams, listing)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, resources.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, resources.unsubscribe)
    lowlevel.add_request_handler("completion/complete", CompleteRequestParams, resources.complete)


def _job_status(job_id: str) -> str:
    """Never called: `JobResources` answers the reads of job URIs itself."""
    raise ResourceNotFoundError(f"no job {job_id}")


def _job_artifact(job_id: str, name: str) -> str:
    """Never called: `JobResources` answers them, with each file's own MIME type."""
    raise ResourceNotFoundError(f"no artifact {name} of job {job_id}")


def job_tool(spec: JobSpec, runtime: Runtime) -> Tool:
    """An SDK tool that runs `spec` as a Celery job."""

    async def call(**kwargs: Any) -> Any:
        ctx: Context = kwargs.pop(_CONTEXT_KWARG)
        arguments = to_jsonable_python(kwargs, by_alias=True)
        send = progress_sender(ctx.request_context, runtime.settings.max_progress_token_bytes)
        handoff_after = spec.handoff_after if spec.handoff_after is not None else runtime.settings.handoff_after
        listeners = _listeners(ctx, runtime, send)
        require_capabilities(spec, ctx.request_context)
        try:
            if ctx.request_state is not None:  # 2026-07-28: the answers to a question its job asked
                job_id, stored = await resume(runtime.dispatcher, ctx, spec, listeners, handoff_after)
            else:
                record = {CALLER_FIELD: caller_of(ctx), CAN_ASK_FIELD: abilities(ctx.request_context)}
                job_id, stored = await runtime.dispatcher.run(spec, arguments, listeners, handoff_after, record)
        except JobHandedOff as exc:
            return error_result(str(exc), {JOB_ID_META_KEY: exc.job_id})
        except JobFailed as exc:  # worded as the SDK words a tool's error, with the job named
            return error_result(f"Error executing tool {spec.name}: {exc}", {JOB_ID_META_KEY: exc.job_id})
        except InputRequired as exc:
            return input_required(exc)
        result = spec.tool_result(stored)
        result.meta = {**(result.meta or {}), JOB_ID_META_KEY: job_id}
        return result

    call.__name__ = spec.name
    return Tool(
        fn=call,
        name=spec.name,
        description=spec.description,
        parameters=spec.input_schema,
        fn_metadata=spec.metadata,
        is_async=True,
        context_kwarg=_CONTEXT_KWARG,
    )


def _listeners(ctx: Context, runtime: Runtime, send: SendProgress | None) -> Listeners:
    """Where this call's job's progress, log lines and questions go, by the caller's protocol era."""
    request = ctx.request_context
    deliver = runtime.dispatcher.answer
    if request.protocol_version in LEGACY:
        ask: Ask = SessionAsker(request, deliver, runtime.settings.input_timeout + ANSWER_GRACE)
    else:
        ask = RoundAsker(ctx, deliver)
    return Listeners(send, log_sender(ctx, runtime.log_levels), ask)


def request_state_security(settings: Settings) -> RequestStateSecurity:
    """How the `requestState` of an open question is sealed: with the shared keys, so that any
    replica can take the answers, else a key of this process's own; valid for as long as the job
    waits for its answer, and a minute more."""
    ttl = settings.input_timeout + 60
    if settings.request_state_keys:
        return RequestStateSecurity(keys=settings.request_state_keys, ttl=ttl)
    return RequestStateSecurity.ephemeral(ttl=ttl)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host/Origin checks (DNS-rebinding protection) from the settings."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.allowed_hosts,
        allowed_origins=settings.allowed_origins,
    )


def build_http_app(runtime: Runtime) -> ASGIApp:
    """The Streamable HTTP app (SSE mode, sessions on) with Host/Origin checks from the settings,
    and authentication when the settings configure a verifier."""
    settings = runtime.settings
    verifier = token_verifier(settings)
    app = build_mcp_server(runtime, verifier).streamable_http_app(
        streamable_http_path=settings.path,
        transport_security=transport_security(settings),
        host=settings.host,
        max_request_body_size=settings.max_request_body_bytes,
        max_sessions=settings.max_sessions,
        session_idle_timeout=settings.session_idle_timeout,
    )
    if verifier:  # innermost: after the SDK's authentication, which it reads
        app.user_middleware.append(Middleware(ScopeChallenges, settings=settings, jobs=runtime.jobs.values()))
    return app
