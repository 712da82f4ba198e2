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
