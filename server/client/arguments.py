"""What `mcp-jobs call` talks to and what it sends: the target (a Streamable HTTP URL or a stdio
command line, with headers) and the tool's arguments (`--json`, then `--arg key=value` pairs
coerced by the tool's input schema), plus the one-line argument descriptions `mcp-jobs tools` shows.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

# --- the target: an HTTP URL or a stdio command line -------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the server is: `url` (Streamable HTTP) or `command` (stdio)."""

    url: str | None = None
    command: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.url or "stdio:" + shlex.join(self.command)


def parse_target(value: str, headers: Sequence[str] = ()) -> Target:
    """`http(s)://...` or `stdio:<command line>` (split like a shell would), plus `--header`s."""
    parsed_headers = parse_headers(headers)
    if value.startswith("stdio:"):
        try:
            command = tuple(shlex.split(value.removeprefix("stdio:")))
        except ValueError as exc:
            raise click.BadParameter(f"cannot split the stdio command line: {exc}", param_hint="URL") from exc
        if not command:
            raise click.BadParameter("stdio: needs a command line, e.g. 'stdio:mcp-jobs serve --transport stdio'")
        if parsed_headers:
            raise click.BadParameter("--header applies to HTTP servers only, not to stdio:", param_hint="--header")
        return Target(command=command)
    if re.match(r"^https?://[^/\s]", value):
        return Target(url=value, headers=parsed_headers)
    raise click.BadParameter(f"{value!r} is neither an http(s):// URL nor stdio:<command line>", param_hint="URL")


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        name = name.strip()
        if not sep or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            # the value is not echoed: it may hold a token
            raise click.BadParameter("each --header must be 'Name: value' with a valid name", param_hint="--header")
        headers[name] = content.strip()
    return headers


# --- arguments -----------------------------------------------------------------------------------


def parse_json_option(value: str | None) -> dict[str, Any]:
    """`--json`: a JSON object, or `@file` / `@-` (stdin) holding one."""
    if value is None:
        return {}
    text = value
    if value.startswith("@"):
        source = value[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {source}: {exc.strerror}", param_hint="--json") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--json") from exc
    if not isinstance(data, dict):
        raise click.BadParameter("the arguments must be a JSON object ({...})", param_hint="--json")
    return data


def split_args(values: Sequence[str]) -> list[tuple[str, str]]:
    """`--arg key=value` pairs, in order; a key given twice is a mistake."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for value in values:
        key, sep, raw = value.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not key=value", param_hint="--arg")
        if key in seen:
            raise click.BadParameter(f"{key!r} is given twice", param_hint="--arg")
        seen.add(key)
        pairs.append((key, raw))
    return pairs


JSON_TYPES: dict[type, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return JSON_TYPES.get(type(value), "string")


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """A property's schema with a local `$ref` (`#/$defs/...`) followed, once."""
    if not isinstance(schema, dict):
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def schema_types(schema: Any, root: dict[str, Any]) -> set[str]:
    """The JSON types a property accepts, from `type` and `anyOf`/`oneOf`; empty when unknown."""
    schema = _resolve(schema, root)
    found: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        found.add(declared)
    elif isinstance(declared, list):
        found.update(t for t in declared if isinstance(t, str))
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key) or []:
            option_types = schema_types(option, root)
            if not option_types:
                return set()  # an option of unknown type: anything may fit
            found |= option_types
    if "enum" in schema and not found:
        found.update(_json_type(v) for v in schema["enum"])
    if "const" in schema and not found:
        found.add(_json_type(schema["const"]))
    return found


def coerce(raw: str, schema: Any, root: dict[str, Any]) -> Any:
    """An `--arg` value: JSON when it parses (numbers, true, lists, objects, null), else the
    string; and the string after all when the schema wants a string and not what the JSON is
    (`--arg label=123` for a `label: str` stays "123")."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    accepted = schema_types(schema, root) if schema is not None else set()
    if not accepted or isinstance(value, str):
        return value
    kind = _json_type(value)
    fits = kind in accepted or (kind == "integer" and "number" in accepted)
    return value if fits or "string" not in accepted else raw


def build_arguments(
    base: dict[str, Any], pairs: Sequence[tuple[str, str]], input_schema: dict[str, Any] | None
) -> dict[str, Any]:
    """`--json` first, then each `--arg` over it, coerced by the tool's input schema."""
    schema = input_schema or {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    arguments = dict(base)
    for key, raw in pairs:
        arguments[key] = coerce(raw, properties.get(key) if properties else None, schema)
    return arguments


def unknown_arguments(arguments: dict[str, Any], input_schema: dict[str, Any] | None) -> list[str]:
    """Names the tool's schema does not list (when it lists its properties and allows no others)."""
    schema = input_schema or {}
    properties = schema.get("properties")
    if not isinstance(properties, dict) or schema.get("additionalProperties") not in (None, False):
        return []
    return [name for name in arguments if name not in properties]


# --- describing them (`mcp-jobs tools`) ----------------------------------------------------------


def _type_label(schema: Any, root: dict[str, Any]) -> str:
    resolved = _resolve(schema, root)
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        named = str(schema["$ref"]).rsplit("/", 1)[-1]
        if named:
            return named
    if "enum" in resolved and isinstance(resolved["enum"], list):
        return "|".join(json.dumps(v) for v in resolved["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(resolved.get(key), list):
            return " | ".join(_type_label(option, root) for option in resolved[key])
    declared = resolved.get("type")
    if declared == "array":
        return f"array[{_type_label(resolved.get('items', {}), root)}]" if resolved.get("items") else "array"
    if isinstance(declared, list):
        return " | ".join(str(t) for t in declared)
    return str(declared) if declared else "any"


def describe_arguments(schema: dict[str, Any]) -> list[str]:
    """One line per parameter: "steps: integer = 5", "reason*: string" (* required)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(schema.get("required") or [])
    lines = []
    for name, prop in properties.items():
        line = f"{name}{'*' if name in required else ''}: {_type_label(prop, schema)}"
        if isinstance(prop, dict):
            low, high = (
                prop.get("minimum", prop.get("exclusiveMinimum")),
                prop.get("maximum", prop.get("exclusiveMaximum")),
            )
            if low is not None or high is not None:
                line += f" [{'' if low is None else low}..{'' if high is None else high}]"
            if "default" in prop:
                line += f" = {json.dumps(prop['default'])}"
        lines.append(line)
    return lines


# --- answers to the job's questions (`--answer`, `--answers`) and roots (`--root`) -------------


@dataclass(frozen=True)
class Given:
    """One pre-supplied answer: its value, and the text typed on the command line (`--answer`),
    which is coerced by the field's schema when the question comes (a string field keeps "123")."""

    value: Any
    raw: str | None = None

    def for_field(self, schema: Any, root: dict[str, Any]) -> Any:
        return coerce(self.raw, schema, root) if self.raw is not None else self.value


@dataclass(frozen=True)
class Answers:
    """Answers given before the call, for the forms a job may ask the user to fill in.

    The rule: an answer is matched to a form's field by the field's name (`name=Alice` answers
    every form that has a `name` field); an answer whose value is a JSON object answers the
    question with that key, field by field (`step1={"name": "Alice"}`), and wins over plain
    field names. Question keys reach the client on 2026-07-28 only (the `inputRequests` keys);
    on 2025-11-25 field names are what match. `--answer` goes over `--answers`."""

    fields: dict[str, Given] = field(default_factory=dict)
    questions: dict[str, dict[str, Given]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.fields or self.questions)

    def match(self, key: str | None, schema: dict[str, Any]) -> dict[str, Any]:
        """The given values for the fields of `schema` (a form's `requestedSchema`), by the rule."""
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        keyed = self.questions.get(key, {}) if key is not None else {}
        found: dict[str, Any] = {}
        for name, prop in properties.items():
            given = keyed.get(name) or self.fields.get(name)
            if given is not None:
                found[name] = given.for_field(prop, schema)
        return found


def _add_answer(answers: Answers, key: str, value: Any, raw: str | None) -> None:
    if isinstance(value, dict):
        answers.questions.setdefault(key, {}).update({name: Given(inner) for name, inner in value.items()})
    else:
        answers.fields[key] = Given(value, raw)


def parse_answers(pairs: Sequence[str], file: str | None) -> Answers:
    """`--answers FILE.json` (a JSON object; `-` for stdin), then each `--answer KEY=JSON` over it.
    A `--answer` value is JSON when it parses, else a string (as for `--arg`)."""
    answers = Answers()
    if file is not None:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
            data = json.loads(text)
        except OSError as exc:
            raise click.BadParameter(f"cannot read {file}: {exc.strerror}", param_hint="--answers") from exc
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--answers") from exc
        if not isinstance(data, dict):
            raise click.BadParameter("the answers must be a JSON object ({...})", param_hint="--answers")
        for key, value in data.items():
            _add_answer(answers, key, value, None)
    for key, raw in _split_answers(pairs):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, dict):
            answers.questions.pop(key, None)  # the command line replaces the file's answers to it
        _add_answer(answers, key, value, None if isinstance(value, dict) else raw)
    return answers


def _split_answers(values: Sequence[str]) -> list[tuple[str, str]]:
    try:
        return split_args(values)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="--answer") from exc


def parse_roots(values: Sequence[str]) -> list[tuple[str, str]]:
    """`--root PATH_OR_URI`s as (file:// URI, name): a path is made absolute (it need not exist:
    the server decides what to do with it), a URI must be file:// (roots are, in MCP)."""
    roots: list[tuple[str, str]] = []
    for value in values:
        if "://" in value:
            if not value.startswith("file://"):
                raise click.BadParameter(f"{value!r}: a root is a path or a file:// URI", param_hint="--root")
            uri = value
        else:
            uri = Path(value).expanduser().absolute().as_uri()
        name = uri.rstrip("/").rsplit("/", 1)[-1] or uri
        roots.append((uri, name))
    return roots
