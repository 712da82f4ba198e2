"""A job's questions and log lines, relayed to its caller the way the caller's protocol allows.

What the caller can answer (`abilities`): the client capabilities of this request (2026-07-28) or
of its session's `initialize` (2025-11-25). It is written into the job's snapshot (`can_ask`)
before the job can ask, and again with each round's answers, so a job never sends a request the
client did not declare (`mcp_jobs.asking`).

- **2025-11-25** (`SessionAsker`): each request of a round is sent on the call's own stream
  (`elicitation/create`, `sampling/createMessage`, `roots/list`), all at once; the answers
  (or the client's errors) are delivered to the waiting job, and the call follows it on.
- **2026-07-28** (`RoundAsker`, `resume`): there is no back channel (SEP-2322). The call ends
  with an `InputRequiredResult` whose `requestState` names the job and the round; the job stays
  parked. The SDK's `RequestStateBoundary` seals that state (AES-256-GCM under
  `MCP_JOBS_REQUEST_STATE_KEYS`, bound to the method, the tool, its arguments, the principal and
  an expiry) and refuses any state it did not seal. The client's next `tools/call`, to any
  replica, carries the answers: `resume` checks the caller and the round (a round already
  answered is refused, so a state cannot be replayed), delivers valid answers, asks again for
  missing or malformed ones, and follows the job to its result or its next question.

Log lines (`log_sender`) go out as `notifications/message` on the call's stream: at the levels the
request asked for on 2026-07-28 (the SDK filters), at or above the session's
`logging/setLevel` on 2025-11-25 (every level until it is set).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import (
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageResult,
    ElicitRequest,
    ElicitResult,
    EmptyResult,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    MissingRequiredClientCapabilityErrorData,
    SetLevelRequestParams,
)
from pydantic import BaseModel

from mcp_jobs._events import LOG_LEVELS, JobEvent, JobState, strict_json
from mcp_jobs.asking import refusal, valid_answer
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.registry import JobSpec
from mcp_jobs.server.callers import CALLER_FIELD, caller_of
from mcp_jobs.server.dispatch import Dispatcher, Listeners
from mcp_jobs.server.follow import InputRequired

logger = logging.getLogger(__name__)

# `send_log_message` is deprecated for 2026-07-28 servers (SEP-2577), but it is how both eras'
# log notifications are sent, with the SDK's own per-request filter on 2026-07-28.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning, module=__name__)

CAN_ASK_FIELD = "can_ask"
"""The snapshot field saying what the caller's client can answer (see `mcp_jobs.asking`)."""

Deliver = Callable[[str, int, dict[str, Any], str], Awaitable[list[str] | None]]
"""`Dispatcher.answer`: the job, its round, the answers and the caller's `can_ask`."""

INVALID_STATE = "Invalid or expired requestState"
"""The SDK's own refusal of a state it cannot verify: the same words for a state it verified
that names a round no longer open, or a job that is not the caller's."""

_REQUESTS: dict[str, tuple[type[Any], type[Any]]] = {
    "elicitation/create": (ElicitRequest, ElicitResult),
    "sampling/createMessage": (CreateMessageRequest, CreateMessageResult),
    "roots/list": (ListRootsRequest, ListRootsResult),
}


def abilities(ctx: ServerRequestContext[Any, Any]) -> str:
    """What the client behind `ctx` can answer, as the snapshot's `can_ask` ("" for nothing).
    Form elicitation counts (a bare `elicitation: {}` means form); URL-only does not."""
    capabilities = ctx.session.client_capabilities
    if capabilities is None:
        return ""
    can = []
    elicitation = capabilities.elicitation
    if elicitation is not None and (elicitation.form is not None or elicitation.url is None):
        can.append("elicitation")
    if capabilities.sampling is not None:
        can.append("sampling")
    if capabilities.roots is not None:
        can.append("roots")
    return " ".join(can)


def require_capabilities(spec: JobSpec, ctx: ServerRequestContext[Any, Any]) -> None:
    """Refuse (-32021, before anything is queued) a call whose client lacks a capability the job
    `requires`, naming it in `requiredCapabilities` as the spec's error data has it."""
    missing = [name for name in spec.requires if name not in abilities(ctx).split()]
    if not missing:
        return
    required = ClientCapabilities.model_validate({name: {} for name in missing})
    data = MissingRequiredClientCapabilityErrorData(required_capabilities=required)
    raise MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"Tool {spec.name} needs a client that declares the {' and '.join(missing)} capability.",
        data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def round_state(job_id: str, round_number: int) -> str:
    """The plaintext `requestState` of an open round (the SDK seals it on the way out)."""
    return json.dumps({"job": job_id, "round": round_number}, separators=(",", ":"))


def input_required(question: InputRequired) -> InputRequiredResult:
    """The `InputRequiredResult` that ends a 2026-07-28 call whose job asked."""
    return InputRequiredResult.model_validate(
        {"inputRequests": question.inputs, "requestState": round_state(question.job_id, question.round)}
    )


def refuse_state() -> MCPError:
    return MCPError(INVALID_PARAMS, INVALID_STATE, {"reason": "invalid_request_state"})


def parse_round_state(state: str) -> tuple[str, int]:
    """The job and round a verified `requestState` names; `MCPError` if it names neither."""
    try:
        data = strict_json(state)
        job_id, round_number = data["job"], data["round"]
    except (ValueError, KeyError, TypeError):
        raise refuse_state() from None
    if not isinstance(job_id, str) or not isinstance(round_number, int) or isinstance(round_number, bool):
        raise refuse_state()
    return job_id, round_number


def usable_answers(inputs: Mapping[str, Any], responses: Mapping[str, Any] | None) -> dict[str, Any]:
    """The responses that answer an outstanding request well, as JSON; the rest are asked again.
    (The SDK may have parsed them into its result models already.)"""
    usable = {}
    for key, response in (responses or {}).items():
        raw = (
            response.model_dump(by_alias=True, mode="json", exclude_none=True)
            if isinstance(response, BaseModel)
            else response
        )
        if key in inputs and valid_answer(inputs[key], raw):
            usable[key] = raw
    return usable


ANSWER_GRACE = 5.0
"""Seconds a 2025-11-25 request (a call, a task's `tasks/result`) waits for its client's answers
beyond the job's own input timeout."""


class SessionAsker:
    """Answers a job's questions over a 2025-11-25 session: the requests go out on the stream of
    the request being answered (the call, or a task's `tasks/result`), and the answers go to the
    job. `meta` is added to each request's `_meta` (a task's related-task key)."""

    def __init__(
        self, ctx: ServerRequestContext[Any, Any], deliver: Deliver, wait: float, meta: dict[str, Any] | None = None
    ) -> None:
        self._ctx = ctx
        self._deliver = deliver
        self._wait = wait
        self._meta = meta

    async def __call__(self, job_id: str, question: JobEvent) -> None:
        answers: dict[str, Any] = {}
        inputs = question.inputs or {}

        async def ask(key: str, request: dict[str, Any]) -> None:
            answers[key] = await self._ask_one(request)

        # Bounded by the job's own input timeout (and a little): past it the job has stopped.
        with anyio.move_on_after(self._wait):
            async with anyio.create_task_group() as group:
                for key, request in inputs.items():
                    group.start_soon(ask, key, request)
        if len(answers) == len(inputs):
            await self._deliver(job_id, question.round, answers, abilities(self._ctx))

    async def _ask_one(self, request: dict[str, Any]) -> Any:
        request_type, result_type = _REQUESTS[request["method"]]
        if self._meta:
            params = request.get("params") or {}
            request = request | {"params": params | {"_meta": (params.get("_meta") or {}) | self._meta}}
        typed = request_type.model_validate(request)
        metadata = ServerMessageMetadata(related_request_id=self._ctx.request_id)
        try:
            result = await self._ctx.session.send_request(typed, result_type, metadata=metadata)
        except MCPError as exc:
            return refusal(exc.code, exc.message)
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)


class RoundAsker:
    """Ends a 2026-07-28 call whose job asked (`InputRequired`): the job stays parked for the next
    request. Answers the request offered up front (`inputResponses` on a call that carries no
    state: a client may send what it expects to be asked) are used once, for the questions they
    fit; only what they leave open ends the call."""

    def __init__(self, ctx: Context, deliver: Deliver) -> None:
        self._offered = dict(ctx.input_responses or {}) if ctx.request_state is None else {}
        self._can_ask = abilities(ctx.request_context)
        self._deliver = deliver

    async def __call__(self, job_id: str, question: JobEvent) -> None:
        inputs = question.inputs or {}
        answers = usable_answers(inputs, self._offered)
        self._offered = {}
        left = await self._deliver(job_id, question.round, answers, self._can_ask) if answers else list(inputs)
        if left:
            raise InputRequired(job_id, question.round, {key: inputs[key] for key in left if key in inputs})


class SessionLogLevels:
    """The `logging/setLevel` of each 2025-11-25 session (by `Mcp-Session-Id`; stdio has one),
    bounded: the oldest sessions are forgotten first (they go back to every level)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._levels: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    async def set_level(self, ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        key = session_key(ctx)
        self._levels[key] = params.level
        self._levels.move_to_end(key)
        while len(self._levels) > self._capacity:
            self._levels.popitem(last=False)
        return EmptyResult()

    def wants(self, ctx: ServerRequestContext[Any, Any], level: str) -> bool:
        least = self._levels.get(session_key(ctx), "debug")
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(least)


def session_key(ctx: ServerRequestContext[Any, Any]) -> str:
    """The 2025-11-25 session a request belongs to (its `Mcp-Session-Id`; stdio has one: "")."""
    headers = getattr(ctx.request, "headers", None)
    return (headers.get("mcp-session-id") if headers is not None else None) or ""


def log_sender(ctx: Context, levels: SessionLogLevels) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """How this call sends its job's log lines (see the module doc)."""
    request = ctx.request_context

    async def send(line: dict[str, Any]) -> None:
        if request.protocol_version in LEGACY and not levels.wants(request, line["level"]):
            return
        await request.session.send_log_message(
            line["level"], line["data"], line.get("logger"), related_request_id=request.request_id
        )

    return send


LEGACY = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})
"""The handshake-era protocol versions (sessions, `logging/setLevel`, requests on the stream)."""


async def resume(
    dispatcher: Dispatcher,
    ctx: Context,
    spec: JobSpec,
    listeners: Listeners,
    handoff_after: float | None,
) -> tuple[str, Any]:
    """A 2026-07-28 call that answers its job's question (`requestState` verified by the SDK):
    deliver the answers and follow the job on, as `Dispatcher.run` follows a new one. Raises
    `InputRequired` for answers still missing (or malformed: asked again) and for the job's next
    question, `MCPError` for a state whose round is no longer open."""
    job_id = await deliver_round(dispatcher, ctx.request_context, spec, ctx.request_state or "", ctx.input_responses)
    result = await dispatcher.follow(job_id, listeners, spec, wait=handoff_after, owned=True)
    return job_id, result


async def deliver_round(
    dispatcher: Dispatcher,
    ctx: ServerRequestContext[Any, Any],
    spec: JobSpec,
    state: str,
    responses: Mapping[str, Any] | None,
) -> str:
    """Deliver a 2026-07-28 request's answers to the round its verified `state` names, and return
    the job's id once the round is complete. Raises `InputRequired` for what is still missing
    (or malformed: asked again), `MCPError` for a round no longer open (answered, or ended)."""
    job_id, question = await open_round(dispatcher.store.read_record, ctx, spec, state)
    inputs = question.inputs or {}
    answers = usable_answers(inputs, responses)
    left = await dispatcher.answer(job_id, question.round, answers, abilities(ctx)) if answers else list(inputs)
    if left is None:
        raise refuse_state()  # answered by a request that came first
    if left:
        raise InputRequired(job_id, question.round, {key: inputs[key] for key in left})
    return job_id


async def open_round(
    store_fields: Callable[[str], Awaitable[tuple[dict[str, str], bool]]],
    ctx: ServerRequestContext[Any, Any],
    spec: JobSpec,
    state: str,
) -> tuple[str, JobEvent]:
    """The job and the open question a verified `requestState` points to, after checking that
    the job is this tool's and this caller's, and that the round is still open."""
    job_id, round_number = parse_round_state(state)
    try:
        fields, _ = await store_fields(job_id)
    except REDIS_ERRORS as exc:
        raise MCPError(INVALID_PARAMS, "Redis is unavailable, so the answers cannot be delivered; retry.") from exc
    if fields.get("job") != spec.name or fields.get(CALLER_FIELD, "") != caller_of(ctx):
        logger.warning("requestState refused: job %s is not this tool's or this caller's", job_id)
        raise refuse_state()
    event = JobEvent.from_snapshot(fields)
    if event is None or event.state is not JobState.INPUT_REQUIRED or event.round != round_number:
        # Answered already (a replay), or the job ended meanwhile.
        state = event.state.value if event else "gone"
        logger.info("requestState refused: job %s is %s, round %s is not open", job_id, state, round_number)
        raise refuse_state()
    return job_id, event
