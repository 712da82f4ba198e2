"""Resources: a job's status and its artifacts, read from Redis by any replica, and pushed changes.

URIs of the server's own (`mcp_jobs.artifacts`), published as resource templates:

- `mcp-jobs://jobs/{job_id}`: the job's status and, once it succeeded, its result (JSON);
- `mcp-jobs://jobs/{job_id}/artifacts/{name}`: a file the job stored (`progress.artifact`), as
  text for text types and base64 otherwise, with its own MIME type.

`resources/read` of those (a middleware in front of the SDK's resource handling, since an
artifact's MIME type is known only once it is read) answers only the caller who owns the job, the
rule of tasks and the handoff; an unknown, expired or foreign one gets the revision's
resource-not-found error (2026-07-28: `-32602` with `data.uri`, SEP-2164; 2025-11-25: `-32002`).
`resources/list` lists the job modules' own resources and the caller's recent jobs (newest first,
paginated, from a bounded scan).

Subscriptions to a job's URI follow the job through Redis (the listener's job channel), so any
replica can hold them: each change of state sends `notifications/resources/updated` for the URI,
at most `progress_rate` a second, the last state always delivered, until the job ends. On
2025-11-25 by `resources/subscribe` (until `resources/unsubscribe`, or the session ends); on
2026-07-28 for the job URIs a `subscriptions/listen` stream names (until it closes), on that
replica's streams of the subscription bus (`events.py`).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import anyio
import anyio.abc
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    BlobResourceContents,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    EmptyResult,
    ListResourcesResult,
    PaginatedRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplateReference,
    SubscribeRequestParams,
    TextResourceContents,
    UnsubscribeRequestParams,
)

from mcp_jobs._contract import is_job_id, status_line
from mcp_jobs._events import JobEvent, JobState, Keys, as_text
from mcp_jobs.artifacts import ARTIFACT_URI, JOB_URI, SCHEME, ArtifactInfo, job_uri, parse_listing
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.server.beside import beside
from mcp_jobs.server.callers import CALLER_FIELD, caller_of
from mcp_jobs.server.events import RedisSubscriptionBus
from mcp_jobs.server.listener import RESYNC, Listener
from mcp_jobs.server.ops.view import READ_BATCH, job_ids, stamp
from mcp_jobs.server.questions import LEGACY, session_key
from mcp_jobs.server.snapshots import AsyncJobStore

logger = logging.getLogger(__name__)

RESOURCE_NOT_FOUND_LEGACY = -32002
"""2025-11-25's resource-not-found code (2026-07-28 uses -32602 with `data.uri`)."""

_URI = re.compile(rf"^{SCHEME}://jobs/(?P<job>[^/]+)(?:/artifacts/(?P<name>[^/]+))?$")

LIST_PAGE = 50
"""Jobs per `resources/list` page."""

COMPLETION_MAX = 100
"""Most values one completion gives (the spec's cap)."""

LIST_SCAN_LIMIT = 10_000
"""Most job keys one `resources/list` (or completion) looks at."""

TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|csv|yaml|x-ndjson)|.*\+(json|xml)$)")
"""MIME types an artifact is read back as text (UTF-8) rather than as a base64 blob."""


def not_found(ctx: ServerRequestContext[Any, Any], uri: str) -> MCPError:
    code = RESOURCE_NOT_FOUND_LEGACY if ctx.protocol_version in LEGACY else INVALID_PARAMS
    return MCPError(code, f"Resource not found: {uri}", {"uri": uri})


class JobResources:
    """Serves the job URIs: reads, the listing, and subscriptions (see the module doc)."""

    def __init__(
        self,
        client: Callable[[], Any],
        keys: Keys,
        store: Callable[[], AsyncJobStore],
        listener: Callable[[], Listener],
        background: Callable[[], anyio.abc.TaskGroup],
        bus: RedisSubscriptionBus,
        progress_rate: float,
    ) -> None:
        self._client = client
        self._keys = keys
        self._store = store
        self._listener = listener
        self._background = background
        self._bus = bus
        self._interval = 1.0 / progress_rate
        self._subscriptions: dict[tuple[str, str], anyio.CancelScope] = {}

    # Reads (a server middleware: it answers `resources/read` of a job URI itself).

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        uri = (ctx.params or {}).get("uri")
        if ctx.method == "resources/read" and isinstance(uri, str) and uri.startswith(SCHEME + "://"):
            return await self.read(ctx, uri)
        if ctx.method == "subscriptions/listen":
            followers = await self._listening(ctx)
            return await beside(followers, partial(call_next, ctx))
        return await call_next(ctx)

    async def read(self, ctx: ServerRequestContext[Any, Any], uri: str) -> ReadResourceResult:
        job_id, name = await self._owned(ctx, uri)
        if name is None:
            fields, _ = await self._store().read_record(job_id)
            text = json.dumps(await self._status(job_id, fields), separators=(",", ":"))
            content: TextResourceContents | BlobResourceContents = TextResourceContents(
                uri=uri, mime_type="application/json", text=text
            )
        else:
            content = await self._artifact(ctx, uri, job_id, name)
        return ReadResourceResult(contents=[content])

    async def _owned(self, ctx: ServerRequestContext[Any, Any], uri: str) -> tuple[str, str | None]:
        """The job (and artifact name) a URI names, if the job is the caller's; else not found."""
        match = _URI.match(uri)
        if match is None or not is_job_id(match["job"]):
            raise not_found(ctx, uri)
        job_id = match["job"]
        try:
            owner = await self._client().hget(self._keys.job(job_id), CALLER_FIELD)
        except REDIS_ERRORS as exc:
            raise MCPError(INVALID_PARAMS, "Redis is unavailable; try again shortly.", {"uri": uri}) from exc
        if owner is None or as_text(owner) != caller_of(ctx):
            raise not_found(ctx, uri)  # unknown, expired, or someone else's: the same answer
        return job_id, match["name"]

    async def _status(self, job_id: str, fields: dict[str, str]) -> dict[str, Any]:
        event = JobEvent.from_snapshot(fields)
        if event is None:
            return {"jobId": job_id, "state": "gone"}
        listing = await self._client().hgetall(self._keys.artifacts(job_id))
        status: dict[str, Any] = {
            "jobId": job_id,
            "tool": fields.get("job", ""),
            "state": event.state.value,
            "status": status_line(event) if not event.state.terminal else (event.error or event.state.value),
            "progress": event.progress,
            "total": event.total,
            "message": event.message,
            "createdAt": stamp(fields.get("created_at")),
            "updatedAt": event.at,
            "artifacts": [_link(job_id, info) for info in parse_listing(listing)],
        }
        if event.state is JobState.SUCCEEDED:
            status["result"] = event.result
        elif event.state is JobState.FAILED:
            status["error"] = event.error
        return status

    async def _artifact(
        self, ctx: ServerRequestContext[Any, Any], uri: str, job_id: str, name: str
    ) -> TextResourceContents | BlobResourceContents:
        pipe = self._client().pipeline(transaction=False)
        pipe.hget(self._keys.artifacts(job_id), name)
        pipe.get(self._keys.artifact(job_id, name))
        meta, data = await pipe.execute()
        if meta is None or data is None:
            raise not_found(ctx, uri)
        info = parse_listing({name: meta})
        mime = info[0].mime_type if info else "application/octet-stream"
        raw = data if isinstance(data, bytes) else data.encode()
        if TEXT_TYPES.match(mime):
            try:
                return TextResourceContents(uri=uri, mime_type=mime, text=raw.decode())
            except UnicodeDecodeError:
                pass  # not text after all: a blob
        return BlobResourceContents(uri=uri, mime_type=mime, blob=base64.b64encode(raw).decode())

    # The listing.

    async def listing(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: PaginatedRequestParams | None,
        own: Callable[[], Awaitable[list[Resource]]],
    ) -> ListResourcesResult:
        """The job modules' resources (first page), then the caller's jobs, newest first."""
        offset = _offset(params.cursor if params else None)
        jobs = await self._recent_jobs(caller_of(ctx))
        listed = (await own() if offset == 0 else []) + jobs[offset : offset + LIST_PAGE]
        more = offset + LIST_PAGE < len(jobs)
        return ListResourcesResult(resources=listed, next_cursor=str(offset + LIST_PAGE) if more else None)

    async def _recent_jobs(self, caller: str) -> list[Resource]:
        """The caller's jobs among the namespace's (a bounded scan, as the jobs page's), newest first."""
        client = self._client()
        ids, _ = await job_ids(client, self._keys, LIST_SCAN_LIMIT)
        found: list[tuple[float, Resource]] = []
        for start in range(0, len(ids), READ_BATCH):
            batch = ids[start : start + READ_BATCH]
            pipe = client.pipeline(transaction=False)
            for job_id in batch:
                pipe.hmget(self._keys.job(job_id), ["job", CALLER_FIELD, "state", "created_at"])
            for job_id, (tool, owner, state, created) in zip(batch, await pipe.execute(), strict=True):
                if tool is None or owner is None or as_text(owner) != caller:
                    continue
                resource = Resource(
                    uri=job_uri(job_id),
                    name=f"{as_text(tool)} {job_id[:8]}",
                    description=f"job {as_text(tool)}: {as_text(state or b'?')}",
                    mime_type="application/json",
                )
                found.append((stamp(as_text(created) if created else None) or 0.0, resource))
        return [resource for _, resource in sorted(found, key=lambda item: -item[0])]

    # Completion of the templates' arguments.

    async def complete(self, ctx: ServerRequestContext[Any, Any], params: CompleteRequestParams) -> CompleteResult:
        """`completion/complete`: a job URI's `job_id` completes to the caller's recent jobs, an
        artifact URI's `name` to that job's files; anything else (prompts) to nothing."""
        ref, argument = params.ref, params.argument
        values: list[str] = []
        if isinstance(ref, ResourceTemplateReference) and ref.uri in (JOB_URI, ARTIFACT_URI):
            if argument.name == "job_id":
                values = [
                    job_id for job_id in await self._recent_ids(caller_of(ctx)) if job_id.startswith(argument.value)
                ]
            elif argument.name == "name" and ref.uri == ARTIFACT_URI:
                job_id = ((params.context and params.context.arguments) or {}).get("job_id", "")
                values = [name for name in await self._artifact_names(ctx, job_id) if name.startswith(argument.value)]
        shown = values[:COMPLETION_MAX]
        return CompleteResult(completion=Completion(values=shown, total=len(values), has_more=len(values) > len(shown)))

    async def _recent_ids(self, caller: str) -> list[str]:
        return [str(resource.uri).rsplit("/", 1)[-1] for resource in await self._recent_jobs(caller)]

    async def _artifact_names(self, ctx: ServerRequestContext[Any, Any], job_id: str) -> list[str]:
        try:
            await self._owned(ctx, job_uri(job_id))
        except MCPError:
            return []  # not the caller's job: nothing to complete
        return [info.name for info in parse_listing(await self._client().hgetall(self._keys.artifacts(job_id)))]

    # Subscriptions.

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        """2025-11-25 `resources/subscribe`: a job URI of the caller's is followed; other URIs
        (the job modules' own resources) are acknowledged and never change."""
        uri = str(params.uri)
        if uri.startswith(SCHEME + "://"):
            job_id, _ = await self._owned(ctx, uri)
            key = (session_key(ctx), uri)
            if key not in self._subscriptions:
                scope = anyio.CancelScope()
                self._subscriptions[key] = scope
                session = ctx.session
                self._background().start_soon(self._follow, job_id, uri, session.send_resource_updated, scope, key)
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        scope = self._subscriptions.pop((session_key(ctx), str(params.uri)), None)
        if scope is not None:
            scope.cancel()
        return EmptyResult()

    async def _listening(self, ctx: ServerRequestContext[Any, Any]) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """2026-07-28 `subscriptions/listen`: followers of the caller's job URIs it names, for as
        long as the stream is open, publishing their changes on the SDK's bus (a foreign or
        unknown job URI refuses the whole stream, as a read would)."""
        notifications = (ctx.params or {}).get("notifications") or {}
        wanted = [uri for uri in notifications.get("resourceSubscriptions") or [] if str(uri).startswith(SCHEME)]
        jobs = [(await self._owned(ctx, str(uri)))[0] for uri in wanted]
        return [
            partial(self._follow, job_id, str(uri), self._publish, anyio.CancelScope(), None)
            for job_id, uri in zip(jobs, wanted, strict=True)
        ]

    async def _publish(self, uri: str) -> None:
        await self._bus.publish_here(ResourceUpdated(uri=uri))  # this replica follows the job itself

    async def _follow(
        self,
        job_id: str,
        uri: str,
        send: Callable[[str], Awaitable[None]],
        scope: anyio.CancelScope,
        key: tuple[str, str] | None,
    ) -> None:
        """Send `uri`'s updates for each change of the job, rate-limited, until it ends."""
        try:
            with scope:
                async with self._listener().watch(job_id) as watch:
                    await self._send_changes(job_id, uri, send, watch)
        except Exception as exc:  # the session went away, or Redis did: the subscription ends
            logger.info("subscription to %s ended: %r", uri, exc)
        finally:
            if key is not None and self._subscriptions.get(key) is scope:
                del self._subscriptions[key]

    async def _send_changes(self, job_id: str, uri: str, send: Callable[[str], Awaitable[None]], watch: Any) -> None:
        last_sent = -float("inf")
        pending = False
        seq = 0
        while True:
            wait = None if not pending else max(0.0, last_sent + self._interval - anyio.current_time())
            item = await watch.next(wait)
            ended = False
            if item is RESYNC or (item is not None and not isinstance(item, JobEvent)):
                snapshot, _ = await self._store().read(job_id)
                pending, ended = True, snapshot is None or snapshot.state.terminal
            elif isinstance(item, JobEvent) and item.seq > seq:
                seq, pending, ended = item.seq, True, item.state.terminal
            if pending and (ended or anyio.current_time() >= last_sent + self._interval):
                await send(uri)
                last_sent, pending = anyio.current_time(), False
            if ended:
                return


def _link(job_id: str, info: ArtifactInfo) -> dict[str, Any]:
    return info.link(job_id).model_dump(by_alias=True, mode="json", exclude_none=True)


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise MCPError(INVALID_PARAMS, f"Invalid cursor: {cursor!r}")
    return int(cursor)
