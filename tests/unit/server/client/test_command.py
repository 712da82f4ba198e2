"""What `mcp-jobs call` shows of a server's text: escaped, on a terminal as on a pipe."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from mcp_jobs.server.client.command import _fail, _print_json
from mcp_jobs.server.client.view import ProgressView

HOSTILE = "caf\u00e9 \x1b]8;;https://evil.example\x07click\x1b]8;;\x07\x1b[2J\x9b31m\x7f\r\n"
STYLING = re.compile(r"\x1b\[[0-9;]*m")  # what a terminal console adds itself: colours
CONTROLS = {chr(code) for code in (*range(0x20), *range(0x7F, 0xA0))} - {"\n"}


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=200, highlight=False), out


def test_json_on_a_terminal_is_the_same_json_with_no_control_character() -> None:
    console, out = terminal()
    _print_json(console, {"text": HOSTILE})
    shown = STYLING.sub("", out.getvalue())
    assert not CONTROLS & set(shown), repr(shown)
    assert json.loads(shown) == {"text": HOSTILE} and "caf\u00e9" in shown, "readable, and still exact JSON"


def test_errors_notes_and_step_messages_are_escaped() -> None:
    console, out = terminal()
    _fail(console, 1, f"the tool said {HOSTILE}")
    view = ProgressView("tool", "lines", console)
    view.note(f"task {HOSTILE} created")
    view.start()
    view.update(1, 2, HOSTILE)
    shown = STYLING.sub("", out.getvalue())
    assert not CONTROLS & set(shown), repr(shown)
    assert shown.count("\\x1b]8;;https://evil.example\\x07click") == 3, shown
