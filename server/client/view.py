"""How `mcp-jobs call` shows a call's progress on stderr: a live rich bar on a terminal (value/total,
percentage, elapsed time, rate, the step message), one plain line per update otherwise, or nothing;
and how it asks the user a job's questions there (`ask_form`), with the display paused meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TimeElapsedColumn
from rich.prompt import InvalidResponse, PromptBase
from rich.table import Column
from rich.text import Text, TextType

from mcp_jobs._text import printable

RATE_WINDOW = 30.0
"""Seconds of progress samples the rate is estimated over."""

ProgressMode = Literal["auto", "bar", "lines", "off"]


def format_number(value: float) -> str:
    rounded = round(value, 2)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.2f}".rstrip("0")


@dataclass
class ProgressState:
    """What the caller has heard so far, and the rate it implies (over the last `RATE_WINDOW` s)."""

    started: float = field(default_factory=time.monotonic)
    value: float | None = None
    total: float | None = None
    message: str | None = None
    samples: deque[tuple[float, float]] = field(default_factory=deque)

    def update(self, value: float | None, total: float | None, message: str | None) -> None:
        now = time.monotonic()
        if value is not None:
            self.value = value
            self.samples.append((now, value))
            while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW:
                self.samples.popleft()
        if total is not None:
            self.total = total
        if message is not None:
            self.message = printable(message)  # the server's words: no escape sequences on our terminal

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, v0), (t1, v1) = self.samples[0], self.samples[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else None

    def fraction(self) -> str:
        if self.value is None:
            return ""
        if self.total:
            return f"{format_number(self.value)}/{format_number(self.total)}"
        return format_number(self.value)

    def percent(self) -> str:
        return f"{self.value / self.total:.0%}" if self.value is not None and self.total else ""

    def summary(self) -> str:
        """The progress as mcp-jobs' task status messages put it: "[3/5] 60% step 3/5 done"."""
        parts = [f"[{self.fraction()}]"] if self.value is not None else []
        if self.percent():
            parts.append(self.percent())
        if self.message:
            parts.append(self.message)
        return " ".join(parts) or "working"

    def line(self) -> str:
        """One plain progress line: "[3/5] 60% step 3/5 done  (1.2 s, 2.5/s)"."""
        timing = f"{self.elapsed:.1f} s"
        if (rate := self.rate) is not None:
            timing += f", {rate:.3g}/s"
        return f"{self.summary()}  ({timing})"


class _FieldColumn(ProgressColumn):
    """Renders one of the view's `ProgressState` strings, as plain text (never rich markup)."""

    def __init__(self, render: Callable[[], str], style: str = "", column: Column | None = None) -> None:
        super().__init__(table_column=column)
        self._render = render
        self._style = style

    def render(self, task: Task) -> Text:
        return Text(self._render(), style=self._style)


class ProgressView:
    """The call's progress on stderr: a live rich bar, plain lines, or nothing."""

    def __init__(self, tool: str, mode: ProgressMode, console: Console) -> None:
        if mode == "auto":
            mode = "bar" if console.is_terminal and not console.is_dumb_terminal else "lines"
        self.mode = mode
        self.console = console
        self.state = ProgressState()
        self._tool = tool
        self._last_line: str | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._held: list[Text] | None = None

    def start(self) -> None:
        self.state = ProgressState()
        if self.mode != "bar":
            return
        state = self.state
        self._progress = Progress(
            SpinnerColumn(),
            _FieldColumn(lambda: self._tool, "bold"),
            BarColumn(bar_width=20),
            _FieldColumn(state.fraction, "progress.download"),
            _FieldColumn(state.percent, "progress.percentage"),
            TimeElapsedColumn(),
            _FieldColumn(lambda: f"{rate:.3g}/s" if (rate := state.rate) is not None else "", "progress.data.speed"),
            _FieldColumn(
                lambda: state.message or "",
                column=Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=20),
            ),
            console=self.console,
            transient=False,
            refresh_per_second=10,
            expand=True,
        )
        self._task = self._progress.add_task(self._tool, total=None)
        self._progress.start()

    def update(self, value: float | None, total: float | None, message: str | None) -> None:
        self.state.update(value, total, message)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.state.value or 0, total=self.state.total)
        elif self.mode == "lines" and self._held is None:
            self._print_line()

    def _print_line(self) -> None:
        summary = self.state.summary()
        if summary != self._last_line:  # a task polled twice in the same state says it once
            self._last_line = summary
            self.console.print(Text(self.state.line()), soft_wrap=True)

    def note(self, text: str, style: str = "") -> None:
        """A line for the user (above the bar while it runs); shown in every mode. Notes quote the
        server (a task id, the SDK's warnings about what it sent): no control characters. While
        the user is being asked something they wait, so as not to land in the middle of the prompt."""
        line = Text(printable(text), style=style)
        if self._held is not None:
            self._held.append(line)
        else:
            self.console.print(line, soft_wrap=True)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing drawn on the console meanwhile (the user is typing there): the live bar is
        stopped (and started again after), progress lines and notes wait; the latest state is
        shown when it ends. Not re-entrant: one question is asked at a time."""
        progress = self._progress
        if progress is not None:
            progress.stop()
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for line in held:
                self.console.print(line, soft_wrap=True)
            if progress is not None and progress is self._progress:
                progress.start()
            elif self.mode == "lines" and self.state.value is not None:
                self._print_line()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class LogToView(logging.Handler):
    """The SDK's warnings as one line each, without tracebacks, where the user looks."""

    def __init__(self, view: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._view = view

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._view(f"warning: {record.getMessage()}")
        except Exception:
            pass  # logging must never break the call


# --- asking the user a job's questions -----------------------------------------------------------

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
