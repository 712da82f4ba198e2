"""`mcp-jobs call`'s target, header and `key=value` parsing, and schema-guided coercion."""

from __future__ import annotations

from typing import Any

import click
import pytest

from mcp_jobs.server.client.arguments import coerce, parse_headers, parse_target, split_args

SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {"Item": {"type": "object", "properties": {"name": {"type": "string"}}}},
    "properties": {
        "label": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "maybe_text": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "item": {"$ref": "#/$defs/Item"},
        "anything": {},
    },
}


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("label", "123", "123"),
        ("label", "true", "true"),
        ("label", '"quoted"', "quoted"),
        ("label", "plain words", "plain words"),
        ("count", "7", 7),
        ("count", "seven", "seven"),  # the server says what is wrong with it
        ("ratio", "7", 7),
        ("ratio", "0.5", 0.5),
        ("maybe_text", "null", None),
        ("maybe_text", "12", "12"),
        ("item", '{"name": "x"}', {"name": "x"}),
        ("anything", "[1, 2]", [1, 2]),
        ("anything", "false", False),
        ("undeclared", "3", 3),
    ],
)
def test_arg_values_are_json_when_they_parse_unless_the_schema_wants_a_string(
    name: str, raw: str, expected: Any
) -> None:
    value = coerce(raw, SCHEMA["properties"].get(name), SCHEMA)
    assert value == expected and type(value) is type(expected)


def test_arg_and_header_and_target_parsing() -> None:
    assert split_args(["a=1", "b=x=y", "c="]) == [("a", "1"), ("b", "x=y"), ("c", "")]
    with pytest.raises(click.BadParameter, match="given twice"):
        split_args(["a=1", "a=2"])
    assert parse_headers(["Authorization: Bearer a:b", "X-Thing:v"]) == {"Authorization": "Bearer a:b", "X-Thing": "v"}
    with pytest.raises(click.BadParameter) as refused:
        parse_headers(["Bearer secret-token"])
    assert "secret-token" not in str(refused.value.message), "a malformed header is not echoed"
    stdio = parse_target("stdio:mcp-jobs serve --transport 'std io'")
    assert stdio.command == ("mcp-jobs", "serve", "--transport", "std io") and stdio.url is None
    with pytest.raises(click.BadParameter, match="HTTP servers only"):
        parse_target("stdio:x", ["A: b"])
