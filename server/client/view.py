"""How `mcp-jobs call` shows a call's progress on stderr: a live rich bar on a terminal (value/total,
percentage, elapsed time, rate, the step message), one plain line per update otherwise, or nothing;
paused while the user answers a job's question (`forms.py`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from mcp_jobs._text import printable

RATE_WINDOW = 30.0
"""Seconds of progress samples the rate is estimated over."""

ProgressMode = Literal["auto", "bar", "lines", "off"]


def format_number(value: float) -> str:
    rounded = round(value, 2)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.2f}".rstrip("0")


def format_size(size: int) -> str:
    """A byte count for people: "512 B", "2.0 KiB", "20.0 MiB" (binary units, as `ls -h`)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


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
