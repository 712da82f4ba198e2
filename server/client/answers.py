"""How `mcp-jobs call` answers what a job asks mid-call (`Responder`): a form from `--answer` /
`--answers` and, on a terminal, from the user field by field (`forms.py`); a sampling request
with `--sample-reply`; `roots/list` with the `--root`s. The SDK declares a capability by the
presence of its callback, so only what can be answered is handed over, and a server never asks
what nobody is there to answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn, TextIO, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import mcp_types as types
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT, ListRootsFnT, SamplingFnT
from mcp_types import INVALID_REQUEST
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_jobs.server.client.arguments import Answers
from mcp_jobs.server.client.forms import FormOutcome, ask_form, ask_url, form_fields
from mcp_jobs.server.client.view import ProgressView

SAMPLING_MODEL = "mcp-jobs-cli"
"""The model name a `--sample-reply` answer carries."""

T = TypeVar("T")


@dataclass(frozen=True)
class Callbacks:
    """What the SDK client gets to answer the server's requests; None: refused, not declared."""

    elicitation: ElicitationFnT | None = None
    sampling: SamplingFnT | None = None
    list_roots: ListRootsFnT | None = None


@dataclass(frozen=True)
class Givens:
    """What the command line gives a job's questions: `--answer`/`--answers`, `--sample-reply`,
    the `--root`s, and whether there is a user to ask (stdin is a terminal)."""

    answers: Answers = field(default_factory=Answers)
    sample_reply: str | None = None
    roots: list[tuple[str, str]] = field(default_factory=list)
    interactive: bool = False


@dataclass
class Responder:
    """Answers what a job asks mid-call: elicitation (forms from the given answers, then the user
    on a terminal), sampling (the given reply) and `roots/list` (the given roots). `callbacks()`
    hands the SDK only those it can answer, since the SDK declares a capability by the
    callback's presence."""

    view: ProgressView
    given: Givens = field(default_factory=Givens)
    input_stream: TextIO | None = None
    """Where the user's answers are read from: None for the terminal (tests pass a stream)."""
    _one_at_a_time: anyio.Lock = field(default_factory=anyio.Lock)

    def callbacks(self) -> Callbacks:
        """The callbacks for what can be answered: forms when there are answers or a user to
        ask, sampling with `--sample-reply`, roots with `--root`."""
        return Callbacks(
            elicitation=self.elicit if self.given.interactive or self.given.answers else None,
            sampling=self.sample if self.given.sample_reply is not None else None,
            list_roots=self.list_roots if self.given.roots else None,
        )

    async def elicit(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        async with self._one_at_a_time:  # questions asked together are put to the user in turn
            if isinstance(params, types.ElicitRequestURLParams):
                return await self._elicit_url(params)
            return await self._elicit_form(_question_key(context), params)

    async def _elicit_form(self, key: str | None, params: types.ElicitRequestFormParams) -> types.ElicitResult:
        schema = params.requested_schema
        given = self._usable(self.given.answers.match(key, schema), schema)
        missing = [f.name for f in form_fields(schema) if f.name not in given and "default" not in f.schema]
        if not missing or not self.given.interactive:
            return self._answer_alone(params.message, schema, given, missing, key)
        console, stream = self.view.console, self.input_stream
        outcome = await self._ask_user(lambda: ask_form(console, params.message, schema, given, stream))
        return _elicit_result(outcome)

    def _usable(self, given: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
        """The given answers that fit their fields; the others are left out (asked, or missing)
        and said so: sent, the server would only ask again, round after round."""
        fields = {f.name: f for f in form_fields(schema)}
        usable = {name: value for name, value in given.items() if fields[name].fits(value)}
        for name in given.keys() - usable.keys():
            wanted = fields[name].kind + (f" among {', '.join(fields[name].options)}" if fields[name].options else "")
            self.view.note(f"the answer for {name} ({json.dumps(given[name])}) is not a {wanted}: left out", "yellow")
        return usable

    def _answer_alone(
        self, message: str, schema: dict[str, Any], given: dict[str, Any], missing: list[str], key: str | None
    ) -> types.ElicitResult:
        """Without asking the user: accept with the given answers over the schema's defaults when
        no required field is `missing`, else decline (and say which answers were missing)."""
        required = {f.name for f in form_fields(schema) if f.required}
        if unanswered := [name for name in missing if name in required]:
            label = f" {key!r}" if key else ""
            self.view.note(
                f"declined the question{label} {message!r}: no answer for {', '.join(unanswered)} "
                "(pass --answer FIELD=VALUE, or run it on a terminal)",
                "yellow",
            )
            return types.ElicitResult(action="decline")
        defaults = {f.name: f.schema["default"] for f in form_fields(schema) if "default" in f.schema}
        text = f"answered {message!r}: {', '.join(given) or 'nothing'} given"
        if taken := [name for name in defaults if name not in given]:
            text += f", the default for {', '.join(taken)}"
        self.view.note(text, "dim")
        return types.ElicitResult(action="accept", content=defaults | given)

    async def _elicit_url(self, params: types.ElicitRequestURLParams) -> types.ElicitResult:
        if not self.given.interactive:
            self.view.note(f"declined {params.message!r}: it asks to open {params.url} (not a terminal)", "yellow")
            return types.ElicitResult(action="decline")
        console, stream = self.view.console, self.input_stream
        outcome = await self._ask_user(lambda: ask_url(console, params.message, params.url, stream))
        action = "cancel" if outcome == "cancel" else "accept" if outcome else "decline"
        return types.ElicitResult(action=action)

    async def _ask_user(self, ask: Callable[[], T]) -> T:
        """Run a blocking prompt, the progress display paused meanwhile."""
        with self.view.paused():
            return await in_daemon_thread(ask)

    async def sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.ErrorData:
        if self.given.sample_reply is None:  # not handed to the SDK then; refused all the same
            return types.ErrorData(code=INVALID_REQUEST, message="Sampling not supported")
        self.view.note("answered a sampling request with --sample-reply", "dim")
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=self.given.sample_reply),
            model=SAMPLING_MODEL,
            stop_reason="endTurn",
        )

    async def list_roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=uri, name=name) for uri, name in self.given.roots])


async def in_daemon_thread(blocking: Callable[[], T]) -> T:
    """`blocking()` in a daemon thread of its own. A prompt blocked reading the terminal cannot be
    interrupted: cancelled (Ctrl-C), this returns at once and the thread is left behind, and being
    a daemon (unlike anyio's worker threads) it does not keep the process from exiting."""
    done = anyio.Event()
    token = anyio.lowlevel.current_token()
    outcome: list[Callable[[], T]] = []

    def run() -> None:
        try:
            value = blocking()
            outcome.append(lambda: value)
        except BaseException as exc:  # handed over to the waiting task, raised there
            outcome.append(partial(_reraise, exc))
        with suppress(RuntimeError):  # the event loop is gone: nobody waits any more
            anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=run, name="mcp-jobs-call prompt", daemon=True).start()
    await done.wait()
    return outcome[0]()


def _reraise(exc: BaseException) -> NoReturn:
    raise exc


def _question_key(context: ClientRequestContext) -> str | None:
    """The question's key: on 2026-07-28 the SDK passes its `inputRequests` key as the request
    id; on 2025-11-25 the id is a JSON-RPC id, which names nothing."""
    if context.session.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return str(context.request_id)
    return None


def _elicit_result(outcome: FormOutcome) -> types.ElicitResult:
    if isinstance(outcome, dict):
        return types.ElicitResult(action="accept", content=outcome)
    return types.ElicitResult(action=outcome)
