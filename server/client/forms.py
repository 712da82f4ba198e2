"""How `mcp-jobs call` asks its user a job's question on the terminal: one prompt per field of the
form's schema (strings, numbers, booleans, enums, lists of choices), checked as typed, with the
schema's defaults; and the yes/no of a URL-mode question.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.prompt import InvalidResponse, PromptBase
from rich.text import Text, TextType

from mcp_jobs._text import printable

STDIN = 0
FormOutcome = dict[str, Any] | Literal["decline", "cancel"]
"""A filled-in form (accept), or what the user did instead."""

FORM_HINT = "Enter: the (default); empty answer to a required* field: decline; Ctrl-D: cancel"
YES = {"y", "yes", "true", "1"}
NO = {"n", "no", "false", "0"}


class _Empty:
    """An answer left empty, with no default to take."""


EMPTY = _Empty()


@dataclass(frozen=True)
class FormField:
    """One field of an elicitation's `requestedSchema` (flat primitives, enums, enum arrays)."""

    name: str
    schema: dict[str, Any]
    required: bool

    @property
    def kind(self) -> str:
        declared = self.schema.get("type")
        return declared if declared in ("string", "number", "integer", "boolean", "array") else "string"

    @property
    def options(self) -> dict[str, str]:
        """The allowed values (for an enum, or each item of an enum array) and their titles."""
        source = self.schema.get("items", {}) if self.kind == "array" else self.schema
        if not isinstance(source, dict):
            return {}
        if isinstance(source.get("enum"), list):
            names = source.get("enumNames")
            titles = names if isinstance(names, list) and len(names) == len(source["enum"]) else source["enum"]
            return {str(value): str(title) for value, title in zip(source["enum"], titles, strict=True)}
        for key in ("oneOf", "anyOf"):
            if isinstance(source.get(key), list):
                return {
                    str(o["const"]): str(o.get("title", o["const"]))
                    for o in source[key]
                    if isinstance(o, dict) and "const" in o
                }
        return {}

    def fits(self, value: Any) -> bool:
        """Whether a given answer (`--answer`) is of the field's type and among its choices."""
        options = self.options
        if self.kind == "array":
            return isinstance(value, list) and all(isinstance(v, str) and (not options or v in options) for v in value)
        if self.kind == "boolean" or isinstance(value, bool):
            return self.kind == "boolean" and isinstance(value, bool)
        if self.kind in ("integer", "number"):
            return isinstance(value, int) or (self.kind == "number" and isinstance(value, float))
        return isinstance(value, str) and (not options or value in options)

    def parse(self, text: str) -> Any:
        """The typed answer as the field's JSON value; `InvalidResponse` says what is wrong."""
        text = text.strip()
        if not text:
            return EMPTY
        if self.kind == "boolean":
            if text.lower() in YES | NO:
                return text.lower() in YES
            raise InvalidResponse(Text("Please answer y or n", style="prompt.invalid"))
        if self.kind == "array":
            return [self._choice(item.strip()) for item in text.split(",") if item.strip()]
        if self.kind in ("integer", "number"):
            return self._number(text)
        value = self._choice(text)
        _check_range(len(value), self.schema.get("minLength"), self.schema.get("maxLength"), " characters")
        return value

    def _choice(self, text: str) -> str:
        options = self.options
        if not options or text in options:
            return text
        by_title = {title.lower(): value for value, title in options.items()} | {v.lower(): v for v in options}
        if text.lower() in by_title:
            return by_title[text.lower()]
        raise InvalidResponse(Text(f"Please choose from: {', '.join(options)}", style="prompt.invalid.choice"))

    def _number(self, text: str) -> int | float:
        try:
            value: int | float = int(text) if self.kind == "integer" else float(text)
        except ValueError:
            raise InvalidResponse(Text(f"Please enter a valid {self.kind}", style="prompt.invalid")) from None
        if self.kind == "number" and float(value).is_integer() and "." not in text:
            value = int(value)
        _check_range(value, self.schema.get("minimum"), self.schema.get("maximum"))
        return value


def _check_range(value: float, low: Any, high: Any, unit: str = "") -> None:
    """`InvalidResponse` when `value` is out of the schema's bounds (those that are numbers)."""
    low = low if isinstance(low, int | float) and not isinstance(low, bool) else None
    high = high if isinstance(high, int | float) and not isinstance(high, bool) else None
    if (low is None or value >= low) and (high is None or value <= high):
        return
    if low is not None and high is not None:
        wanted = f"from {low} to {high}{unit}"
    else:
        wanted = f"at least {low}{unit}" if low is not None else f"at most {high}{unit}"
    raise InvalidResponse(Text(f"Please enter {wanted}", style="prompt.invalid"))


def form_fields(schema: dict[str, Any]) -> list[FormField]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(schema.get("required") or [])
    return [
        FormField(name, prop if isinstance(prop, dict) else {}, name in required) for name, prop in properties.items()
    ]


class FieldPrompt(PromptBase[Any]):
    """rich's prompt for one form field: the field's name, description, choices and default; an
    invalid answer is asked again; an empty one is `EMPTY` (or the default, when there is one);
    end of input (Ctrl-D) raises `EOFError`, from the terminal or a `stream` alike.

    The terminal is read with `os.read` on stdin's descriptor, not `input()`: a prompt the user
    walked away from (Ctrl-C cancelled the call) is left blocked in its thread, and one blocked in
    `sys.stdin` would hold its lock and abort the interpreter's exit. The terminal's own line
    editing (backspace, Ctrl-U, Ctrl-W) still applies."""

    response_type = object  # any default is shown

    def __init__(self, form_field: FormField, console: Console) -> None:
        prompt = Text(printable(form_field.name), style="bold") + Text("*" if form_field.required else "")
        description = form_field.schema.get("description") or form_field.schema.get("title")
        if isinstance(description, str) and description:
            prompt += Text(f" ({printable(description)})", style="dim")
        options = form_field.options
        choices = ["y", "n"] if form_field.kind == "boolean" else [printable(o) for o in options] or None
        super().__init__(prompt, console=console, choices=choices)
        self.field = form_field

    def render_default(self, default: Any) -> Text:
        if self.field.kind == "boolean":
            return Text("(y)" if default else "(n)", style="prompt.default")
        shown = ", ".join(map(str, default)) if isinstance(default, list) else default
        return Text(f"({printable(shown if isinstance(shown, str) else json.dumps(shown))})", style="prompt.default")

    @classmethod
    def get_input(cls, console: Console, prompt: TextType, password: bool, stream: TextIO | None = None) -> str:
        console.print(prompt, end="")
        line = stream.readline() if stream is not None else os.read(STDIN, 65536).decode(errors="replace")
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def process_response(self, value: str) -> Any:
        return self.field.parse(value)


def ask_form(
    console: Console, message: str, schema: dict[str, Any], given: dict[str, Any], stream: TextIO | None = None
) -> FormOutcome:
    """Ask the user, on `console`, each field of a form `given` does not answer already. It
    blocks on input: run it off the event loop, with the progress display paused."""
    console.print(Text("? ", style="bold cyan") + Text(printable(message, keep_layout=True), style="bold"))
    console.print(Text(FORM_HINT, style="dim"))
    content: dict[str, Any] = {}
    for form_field in form_fields(schema):
        if form_field.name in given:
            content[form_field.name] = given[form_field.name]
            console.print(
                Text(f"{printable(form_field.name)}: {printable(json.dumps(given[form_field.name]))} (given)")
            )
            continue
        options = form_field.options
        if any(value != title for value, title in options.items()):
            console.print(Text("  " + ", ".join(f"{v} = {t}" for v, t in options.items()), style="dim"))
        default = form_field.schema.get("default", ...)
        try:
            answer = FieldPrompt(form_field, console)(default=default, stream=stream)
        except EOFError:
            console.print()
            return "cancel"
        if answer is EMPTY:
            if form_field.required:
                return "decline"
            continue
        content[form_field.name] = answer
    return content


def ask_url(console: Console, message: str, url: str, stream: TextIO | None = None) -> bool | Literal["cancel"]:
    """A URL-mode question: the user opens the URL themselves; whether they agree to (y/n)."""
    console.print(Text("? ", style="bold cyan") + Text(printable(message, keep_layout=True), style="bold"))
    console.print(Text(f"  {printable(url)}", style="underline"))
    yes_no = FormField("open it and go on", {"type": "boolean"}, required=True)
    try:
        answer = FieldPrompt(yes_no, console)(default=False, stream=stream)
    except EOFError:
        console.print()
        return "cancel"
    return bool(answer)
