"""How `mcp-jobs call` answers a job's questions: the `--answer`/`--answers` matching rule, roots,
the terminal form (read from a stream here) and the `Responder` that decides what to offer and
what to do with a form nobody answered."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import mcp_types as types
import pytest
from mcp.client import ClientRequestContext
from rich.console import Console

from mcp_jobs.server.client.answers import Givens, Responder
from mcp_jobs.server.client.arguments import Answers, parse_answers, parse_roots
from mcp_jobs.server.client.forms import ask_form
from mcp_jobs.server.client.view import ProgressView

pytestmark = pytest.mark.anyio

FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Your name"},
        "age": {"type": "integer", "minimum": 0, "default": 30},
        "label": {"type": "string"},
        "ok": {"type": "boolean"},
        "status": {"type": "string", "enum": ["active", "inactive"], "default": "active"},
        "tags": {"type": "array", "items": {"anyOf": [{"const": "a", "title": "Alpha"}, {"const": "b"}]}},
    },
    "required": ["name", "ok"],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_answers_match_field_names_and_a_json_object_answers_a_question_by_key(tmp_path: Path) -> None:
    file = tmp_path / "answers.json"
    file.write_text('{"name": "File", "ok": false, "step1": {"name": "Keyed"}, "step2": {"ok": true}}')
    answers = parse_answers(["ok=true", "label=123", "age=7", "unknown=1", 'step2={"label": "x"}'], str(file))
    assert answers.match(None, FORM) == {"name": "File", "ok": True, "label": "123", "age": 7}
    assert answers.match("step1", FORM)["name"] == "Keyed", "the question's own answer wins over the field's"
    assert answers.match("step2", FORM)["label"] == "x" and answers.match("step2", FORM)["ok"] is True, (
        "--answer's object replaces the file's answers to that question; field names still fill in"
    )
    assert type(answers.match(None, FORM)["label"]) is str, "a string field keeps the typed text"
    assert answers.match(None, {"type": "object"}) == {} and not Answers()


@pytest.mark.parametrize(
    ("pairs", "content", "says"),
    [
        (["name"], None, "not key=value"),
        (["a=1", "a=2"], None, "given twice"),
        ([], "[1, 2]", "must be a JSON object"),
        ([], "{nope", "not valid JSON"),
    ],
)
def test_malformed_answers_are_usage_errors(tmp_path: Path, pairs: list[str], content: str | None, says: str) -> None:
    file = tmp_path / "answers.json"
    if content is not None:
        file.write_text(content)
    with pytest.raises(click.BadParameter, match=says):
        parse_answers(pairs, str(file) if content is not None else None)


def test_roots_are_file_uris(tmp_path: Path) -> None:
    assert parse_roots([str(tmp_path), "file:///srv/data/"]) == [
        (tmp_path.as_uri(), tmp_path.name),
        ("file:///srv/data/", "data"),
    ]
    with pytest.raises(click.BadParameter, match="a path or a file:// URI"):
        parse_roots(["https://example.com/repo"])


def ask(typed: str, given: dict[str, Any] | None = None) -> tuple[Any, str]:
    shown = io.StringIO()
    console = Console(file=shown, width=200, highlight=False)
    outcome = ask_form(console, "Tell me", FORM, given or {}, io.StringIO(typed))
    return outcome, shown.getvalue()


def test_the_terminal_form_asks_each_field_typed_with_defaults_and_asks_again_when_invalid() -> None:
    outcome, shown = ask("Alice\n-3\n\nyes-ish\ny\nINACTIVE\nalpha, b\n", {"label": "given"})
    assert outcome == {
        "name": "Alice",
        "age": 30,  # -3 refused (minimum 0), then Enter: the default
        "label": "given",
        "ok": True,
        "status": "inactive",
        "tags": ["a", "b"],
    }
    assert "name* (Your name): " in shown and "age (30): " in shown and "status [active/inactive] (active)" in shown
    assert "Please enter at least 0" in shown and "Please answer y or n" in shown
    assert 'label: "given" (given)' in shown and "a = Alpha" in shown


def test_an_empty_required_answer_declines_and_end_of_input_cancels() -> None:
    assert ask("\n")[0] == "decline"
    assert ask("Alice\n")[0] == "cancel", "Ctrl-D (end of input) at the next field"
    assert ask("Alice\n\n\ny\n\n\n")[0] == {"name": "Alice", "age": 30, "ok": True, "status": "active"}, (
        "optional fields left empty are left out"
    )


def context(version: str) -> ClientRequestContext:
    session: Any = SimpleNamespace(protocol_version=version)
    return ClientRequestContext(session=session, request_id="step1" if version == "2026-07-28" else 7)


def responder(**options: Any) -> tuple[Responder, io.StringIO]:
    shown = io.StringIO()
    view = ProgressView("tool", "lines", Console(file=shown, width=200, highlight=False))
    stream = options.pop("input_stream", None)
    return Responder(view, Givens(**options), stream), shown


def form(schema: dict[str, Any] = FORM) -> types.ElicitRequestFormParams:
    return types.ElicitRequestFormParams(message="Tell me", requested_schema=schema)


def test_only_what_can_be_answered_is_offered() -> None:
    nothing = responder()[0].callbacks()
    assert (nothing.elicitation, nothing.sampling, nothing.list_roots) == (None, None, None)
    everything = responder(answers=parse_answers(["x=1"], None), sample_reply="hi", roots=[("file:///a", "a")])
    offered = everything[0].callbacks()
    assert None not in (offered.elicitation, offered.sampling, offered.list_roots)
    assert responder(interactive=True)[0].callbacks().elicitation is not None


async def test_without_a_terminal_a_form_is_accepted_when_answered_and_declined_otherwise() -> None:
    answered, _ = responder(answers=parse_answers(["name=Al", "ok=false"], None))
    result = await answered.elicit(context("2025-11-25"), form())
    assert result == types.ElicitResult(
        action="accept", content={"age": 30, "status": "active", "name": "Al", "ok": False}
    ), "the defaults fill in what was not given"
    keyed, shown = responder(answers=parse_answers(['step1={"name": "Al"}'], None))
    assert (await keyed.elicit(context("2026-07-28"), form())).action == "decline", "ok is missing"
    assert "declined the question 'step1' 'Tell me': no answer for ok" in shown.getvalue()
    wrong, shown = responder(answers=parse_answers(["name=Al", "ok=maybe", "status=gone", "age=7"], None))
    assert (await wrong.elicit(context("2025-11-25"), form())).action == "decline", "ok did not fit: missing"
    assert 'the answer for ok ("maybe") is not a boolean: left out' in shown.getvalue()
    assert 'the answer for status ("gone") is not a string among active, inactive' in shown.getvalue()
    assert "no answer for ok" in shown.getvalue()
    url = types.ElicitRequestURLParams(message="Log in", url="https://example.com/login", elicitation_id="e1")
    assert (await answered.elicit(context("2025-11-25"), url)).action == "decline"


async def test_on_a_terminal_the_user_is_asked_what_the_answers_leave_open_the_display_held() -> None:
    asking, shown = responder(
        answers=parse_answers(["name=Al"], None), interactive=True, input_stream=io.StringIO("\n\nn\n\n\n")
    )
    asking.view.update(1, 2, "working")
    with asking.view.paused():
        asking.view.update(2, 2, "held back")
        asking.view.note("a note, held back")
        assert "held back" not in shown.getvalue()
    assert shown.getvalue().index("a note, held back") < shown.getvalue().index("[2/2] 100% held back")
    result = await asking.elicit(context("2025-11-25"), form())
    assert result == types.ElicitResult(
        action="accept", content={"name": "Al", "age": 30, "ok": False, "status": "active"}
    )
    assert 'name: "Al" (given)' in shown.getvalue()


async def test_a_sampling_reply_and_the_roots() -> None:
    answering, _ = responder(sample_reply="Bonjour", roots=parse_roots(["file:///srv"]))
    params = types.CreateMessageRequestParams(messages=[], max_tokens=5)
    reply = await answering.sample(context("2025-11-25"), params)
    assert isinstance(reply, types.CreateMessageResult)
    assert reply.content == types.TextContent(type="text", text="Bonjour") and reply.model == "mcp-jobs-cli"
    roots = await answering.list_roots(context("2025-11-25"))
    assert [str(root.uri) for root in roots.roots] == ["file:///srv"]
    refused = await responder()[0].sample(context("2025-11-25"), params)
    assert isinstance(refused, types.ErrorData)
