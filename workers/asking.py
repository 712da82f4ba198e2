"""Asking the caller: a job's questions (elicitation, sampling, roots), and how answers reach it.

A job asks through its `Progress` (`ask`, `sample`, `roots`, or several at once with `ask_all`).
One *round* of questions goes:

1. the job writes its snapshot as `input_required`, with the round's requests (`inputs`, each
   `{method, params}` under a key) and the keys still unanswered (`pending`), and `round` one up;
   the event tells the server that follows it;
2. the server gets the answers the way the caller's protocol allows (a request on the call's
   stream on 2025-11-25; an `InputRequiredResult` and a new `tools/call` on 2026-07-28;
   `tasks/update` for a task), checks each against its request (`valid_answer`) and delivers
   them with `ANSWER_SCRIPT`: stored by key, and once none is pending, the job is `running`
   again and the round number is pushed onto its inbox;
3. the job, blocked on its inbox (and still beating its heartbeat), reads the answers and goes
   on. It checks for cancellation every `ANSWER_POLL` seconds, and gives up after
   `input_timeout` with `NoAnswer`.

The job waits inside its worker: the work done before a question is never lost or re-run, and
a waiting job holds its worker slot (and its Celery time limit keeps counting). A question the
caller's client cannot answer (it did not declare the capability) is never sent: the server
writes what the caller can answer into the snapshot (`can_ask`) before the job can ask, and the
job raises `CannotAsk` instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

import jsonschema
from mcp.types import CreateMessageResult, ElicitResult, ListRootsResult, Root, SamplingMessage, TextContent
from pydantic import BaseModel, ValidationError

from mcp_jobs._events import JobState, Keys, as_text
from mcp_jobs.errors import JobCancelled, JobEnded, JobError
from mcp_jobs.redis_connect import REDIS_ERRORS

if TYPE_CHECKING:
    from mcp_jobs._store import JobStore

M = TypeVar("M", bound=BaseModel)

Capability = Literal["elicitation", "sampling", "roots"]

ANSWER_POLL = 0.25
"""Seconds a waiting job blocks on its inbox before it checks whether it was cancelled."""

DEFAULT_INPUT_TIMEOUT = 600.0
"""Seconds a job waits for its answers unless the settings say otherwise (`MCP_JOBS_INPUT_TIMEOUT`)."""

KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
MAX_KEY_CHARS = 64


class CannotAsk(JobError):
    """The caller's client cannot answer this kind of question (it did not declare the capability),
    so it was not asked. Uncaught, the call ends with this as its tool error."""


class QuestionDeclined(JobError):
    """The user declined to answer (`action: "decline"`). Uncaught, the call ends with a tool error."""


class QuestionCancelled(JobError):
    """The user dismissed the question (`action: "cancel"`). Uncaught, the call ends with a tool error."""


class QuestionRefused(JobError):
    """The caller's client answered the request with an error (a user who rejected a sampling
    request, say). Uncaught, the call ends with a tool error that says so."""


class NoAnswer(JobError):
    """No answer came within the input timeout (`MCP_JOBS_INPUT_TIMEOUT`)."""


@dataclass(frozen=True)
class Elicit(Generic[M]):
    """Ask the user `message`, for an answer shaped by `schema` (a pydantic model of flat fields,
    or a JSON schema as a dict, whose answer is then the dict). `elicitation/create`, form mode.
    With `outcome`, the answer is the whole `ElicitResult` (accept, decline or cancel, and the
    raw content) rather than the accepted content or an exception."""

    message: str
    schema: type[M] | Mapping[str, Any]
    outcome: bool = False
    capability: Capability = field(default="elicitation", init=False)

    def request(self) -> dict[str, Any]:
        schema = self.schema
        if isinstance(schema, type):
            from mcp.server.elicitation import render_elicitation_schema

            rendered = render_elicitation_schema(schema)
        else:
            rendered = dict(schema)
        return {"method": "elicitation/create", "params": {"message": self.message, "requestedSchema": rendered}}

    def answer(self, response: Any) -> M | dict[str, Any] | ElicitResult:
        """The accepted content (as the model); `QuestionDeclined`/`QuestionCancelled` otherwise."""
        _refusal(response)
        result = ElicitResult.model_validate(response)
        if self.outcome:
            return result
        if result.action == "decline":
            raise QuestionDeclined(f"The user declined to answer: {self.message}")
        if result.action == "cancel":
            raise QuestionCancelled(f"The user dismissed the question: {self.message}")
        content = result.content or {}
        if isinstance(self.schema, type):
            return self.schema.model_validate(content)
        return dict(content)


@dataclass(frozen=True)
class Sample:
    """Ask the caller's model for a reply (`sampling/createMessage`); the answer is the SDK's
    `CreateMessageResult` (its `.content` holds the reply). `messages` may be one string (a user
    message) or the SDK's `SamplingMessage`s."""

    messages: str | Sequence[SamplingMessage]
    max_tokens: int = 1000
    system_prompt: str | None = None
    temperature: float | None = None
    stop_sequences: Sequence[str] | None = None
    capability: Capability = field(default="sampling", init=False)

    def request(self) -> dict[str, Any]:
        messages = (
            [SamplingMessage(role="user", content=TextContent(type="text", text=self.messages))]
            if isinstance(self.messages, str)
            else list(self.messages)
        )
        params: dict[str, Any] = {
            "messages": [m.model_dump(by_alias=True, mode="json", exclude_none=True) for m in messages],
            "maxTokens": self.max_tokens,
        }
        for name, value in (
            ("systemPrompt", self.system_prompt),
            ("temperature", self.temperature),
            ("stopSequences", list(self.stop_sequences) if self.stop_sequences is not None else None),
        ):
            if value is not None:
                params[name] = value
        return {"method": "sampling/createMessage", "params": params}

    def answer(self, response: Any) -> CreateMessageResult:
        _refusal(response)
        return CreateMessageResult.model_validate(response)


@dataclass(frozen=True)
class ListRoots:
    """Ask the caller's client for its roots (`roots/list`); the answer is a list of `Root`s."""

    capability: Capability = field(default="roots", init=False)

    def request(self) -> dict[str, Any]:
        return {"method": "roots/list", "params": {}}

    def answer(self, response: Any) -> list[Root]:
        _refusal(response)
        return ListRootsResult.model_validate(response).roots


Question = Elicit[Any] | Sample | ListRoots

CAPABILITY_OF = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
"""The client capability each request needs."""

_RESULT_OF: dict[str, type[BaseModel]] = {
    "elicitation/create": ElicitResult,
    "sampling/createMessage": CreateMessageResult,
    "roots/list": ListRootsResult,
}


def _refusal(response: Any) -> None:
    """Raise `QuestionRefused` for the server's record of a request the client answered with an error."""
    if isinstance(response, dict) and set(response) == {"error"}:
        error = response["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise QuestionRefused(f"The caller's client refused the request: {message or 'no reason given'}")


def refusal(code: int, message: str) -> dict[str, Any]:
    """How the server records a request the client answered with a JSON-RPC error."""
    return {"error": {"code": code, "message": message}}


def valid_answer(request: Mapping[str, Any], response: Any) -> bool:
    """Whether `response` answers `request`: the result shape of its method, and for an accepted
    elicitation, content that fits the requested schema. (The server checks before delivering,
    so a malformed answer is asked again rather than handed to the job.)"""
    result_type = _RESULT_OF.get(str(request.get("method")))
    if result_type is None or not isinstance(response, dict):
        return False
    try:
        result = result_type.model_validate(response)
    except ValidationError:
        return False
    if isinstance(result, ElicitResult) and result.action == "accept":
        schema = request.get("params", {}).get("requestedSchema") or {}
        try:
            jsonschema.validate(result.content or {}, schema)
        except (jsonschema.ValidationError, jsonschema.SchemaError):
            return False
    return True


def check_key(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS or not set(key) <= KEY_CHARS:
        raise ValueError(f"a question key must be 1-{MAX_KEY_CHARS} letters, digits, '_', '.' or '-', not {key!r}")
    return key


def wait_for_answers(
    store: JobStore, job_id: str, round_number: int, questions: Mapping[str, Question], timeout: float
) -> dict[str, Any]:
    """Block until the round is answered; return the parsed answers by key (see the module doc)."""
    client, keys = store.client, store.keys
    deadline = time.monotonic() + timeout
    while True:
        try:
            woke = client.blpop([keys.inbox(job_id)], timeout=ANSWER_POLL)
            if woke is not None and as_text(woke[1]) == str(round_number):
                pipe = client.pipeline(transaction=True)
                pipe.hgetall(keys.answers(job_id))
                pipe.delete(keys.answers(job_id))
                stored, _ = pipe.execute()
                break
            state, cancel = client.hmget(keys.job(job_id), ["state", "cancel"])
        except REDIS_ERRORS:
            time.sleep(ANSWER_POLL)  # an outage: the answers wait in Redis, if they come at all
            continue
        if cancel in (b"1", "1"):
            raise JobCancelled(job_id)
        if state is None or as_text(state) != JobState.INPUT_REQUIRED.value:
            raise JobEnded(f"job {job_id} was ended while it waited for an answer ({as_text(state or b'gone')})")
        if time.monotonic() > deadline:
            raise NoAnswer(f"No answer to the job's question came within {timeout:g} s, so it stopped.")
    answers = {as_text(k): json.loads(as_text(v)) for k, v in stored.items()}
    return {key: question.answer(answers[key]) for key, question in questions.items()}


# The server's delivery of answers. KEYS: the job hash, its answers hash, its inbox. ARGV: ttl,
# the round answered, now (Unix time), the answering request's client capabilities ('' to
# leave them), then key/answer pairs. Returns {-1} when the job is not waiting on that round (answered already,
# ended, or a stale state), {0, keys still pending...} when some are still to come, or {seq}
# when the round is complete and the job was woken.
ANSWER_SCRIPT = """
local key, answers, inbox = KEYS[1], KEYS[2], KEYS[3]
local ttl = tonumber(ARGV[1])
if redis.call('HGET', key, 'state') ~= 'input_required' or redis.call('HGET', key, 'round') ~= ARGV[2] then
  return {-1}
end
if ARGV[4] ~= '' then redis.call('HSET', key, 'can_ask', ARGV[4]) end
local given = {}
for i = 5, #ARGV, 2 do given[ARGV[i]] = ARGV[i + 1] end
local left = {}
for pending in string.gmatch(redis.call('HGET', key, 'pending') or '', '%S+') do
  if given[pending] then
    redis.call('HSET', answers, pending, given[pending])
  else
    table.insert(left, pending)
  end
end
redis.call('EXPIRE', answers, ttl)
if #left > 0 then
  redis.call('HSET', key, 'pending', table.concat(left, ' '))
  return {0, unpack(left)}
end
local seq = redis.call('HINCRBY', key, 'seq', 1)
local attempt = redis.call('HGET', key, 'attempt') or '0'
redis.call('HSET', key, 'state', 'running', 'pending', '', 'message', 'answered', 'updated_at', ARGV[3])
redis.call('EXPIRE', key, ttl)
local event = '{"seq":' .. seq .. ',"attempt":' .. attempt .. ',"state":"running","message":"answered","at":' .. ARGV[3] .. '}'
redis.call('PUBLISH', key, event)
local reply_to = redis.call('HGET', key, 'reply_to')
if reply_to then redis.call('PUBLISH', reply_to, key .. '\\n' .. event) end
redis.call('RPUSH', inbox, ARGV[2])
redis.call('EXPIRE', inbox, ttl)
return {seq}
"""


def answer_args(
    ttl: int,
    round_number: int,
    answers: Mapping[str, Any],
    *,
    can_ask: str = "",
) -> list[Any]:
    """The ARGV of one `ANSWER_SCRIPT` call."""
    pairs = [item for key, value in answers.items() for item in (key, json.dumps(value, separators=(",", ":")))]
    return [ttl, str(round_number), repr(time.time()), can_ask, *pairs]


def answer_keys(keys: Keys, job_id: str) -> list[str]:
    return [keys.job(job_id), keys.answers(job_id), keys.inbox(job_id)]


def pending_after(reply: Sequence[Any]) -> list[str] | None:
    """What `ANSWER_SCRIPT` said: None if the job was not waiting on that round, else the keys
    still pending (empty: the round is complete)."""
    status = int(reply[0])
    if status < 0:
        return None
    return [as_text(cast(bytes | str, key)) for key in reply[1:]] if status == 0 else []
