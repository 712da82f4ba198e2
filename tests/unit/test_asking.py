"""The question protocol's pure parts: what a job's requests look like on the wire, how answers
are checked before they reach a job, and how a job reads them (`mcp_jobs.asking`)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.types import ElicitResult
from pydantic import BaseModel

from mcp_jobs.asking import (
    Elicit,
    ListRoots,
    QuestionCancelled,
    QuestionDeclined,
    QuestionRefused,
    Sample,
    check_key,
    refusal,
    valid_answer,
)


class Confirm(BaseModel):
    ok: bool
    note: str = ""


def test_a_model_renders_as_a_flat_form_schema() -> None:
    request = Elicit("Delete 3 files?", Confirm).request()
    assert request["method"] == "elicitation/create"
    schema = request["params"]["requestedSchema"]
    assert schema["type"] == "object" and set(schema["properties"]) == {"ok", "note"}
    assert schema["required"] == ["ok"]


def test_an_accepted_answer_becomes_the_model_and_the_others_raise() -> None:
    question = Elicit("Delete?", Confirm)
    assert question.answer({"action": "accept", "content": {"ok": True}}) == Confirm(ok=True)
    with pytest.raises(QuestionDeclined, match="declined"):
        question.answer({"action": "decline"})
    with pytest.raises(QuestionCancelled, match="dismissed"):
        question.answer({"action": "cancel"})
    with pytest.raises(QuestionRefused, match="user said no"):
        question.answer(refusal(-1, "user said no"))
    outcome = Elicit("Delete?", Confirm, outcome=True).answer({"action": "decline"})
    assert isinstance(outcome, ElicitResult) and outcome.action == "decline"


def test_a_sampling_request_carries_a_plain_prompt_as_a_user_message() -> None:
    request = Sample("What is the capital of France?", max_tokens=100, temperature=0.2).request()
    assert request == {
        "method": "sampling/createMessage",
        "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": "What is the capital of France?"}}],
            "maxTokens": 100,
            "temperature": 0.2,
        },
    }
    assert ListRoots().request() == {"method": "roots/list", "params": {}}


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
ELICIT = {"method": "elicitation/create", "params": {"message": "Name?", "requestedSchema": SCHEMA}}


@pytest.mark.parametrize(
    ("request_", "response", "valid"),
    [
        (ELICIT, {"action": "accept", "content": {"name": "Ada"}}, True),
        (ELICIT, {"action": "decline"}, True),
        (ELICIT, {"action": "accept", "content": {"name": 7}}, False),  # does not fit the schema
        (ELICIT, {"action": "accept", "content": {}}, False),
        (ELICIT, {"action": "maybe"}, False),
        (ELICIT, "yes", False),
        ({"method": "roots/list", "params": {}}, {"roots": [{"uri": "file:///x"}]}, True),
        ({"method": "roots/list", "params": {}}, {"roots": "all"}, False),
        ({"method": "sampling/createMessage", "params": {}}, {"role": "assistant", "model": "m"}, False),
        ({"method": "tools/call", "params": {}}, {}, False),
    ],
)
def test_answers_are_checked_against_their_requests(request_: dict[str, Any], response: Any, valid: bool) -> None:
    assert valid_answer(request_, response) is valid


@pytest.mark.parametrize("key", ["user_name", "step-1", "a.b", "x" * 64])
def test_good_keys_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "two words", "x" * 65, "naïve", "a b"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="question key"):
        check_key(key)
