"""`_text`: what others wrote, made safe to show; and the text log format built on it."""

from __future__ import annotations

import io
import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from mcp_jobs._text import json_safe, printable
from mcp_jobs.logs import TEXT_FORMAT, ControlSafe, JsonFormatter


def test_control_characters_become_visible_escapes() -> None:
    assert printable("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
    assert printable("\x1b]8;;https://x\x07link\x1b]8;;\x07") == "\\x1b]8;;https://x\\x07link\\x1b]8;;\\x07"
    assert printable("a\r\nb\tc\x9b2J\x7f\x00") == "a\\r\\nb\\tc\\x9b2J\\x7f\\x00"
    assert printable("a\r\nb\tc\x1b[0m", keep_layout=True) == "a\\r\nb\tc\\x1b[0m"


@given(st.text())
def test_nothing_printable_leaves_a_control_character(text: str) -> None:
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in printable(text))
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in printable(text, keep_layout=True))


@given(st.dictionaries(st.text(), st.text()))
def test_json_stays_the_same_json(data: dict[str, str]) -> None:
    text = json_safe(json.dumps(data, ensure_ascii=False))
    assert json.loads(text) == data and not any(0x7F <= ord(c) <= 0x9F for c in text)


def _logged(formatter: logging.Formatter, emit: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("mcp_jobs.test_text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_text_log_line_cannot_be_forged_from_what_it_quotes() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.error("job failed: %s", "bad\n2026-01-01 00:00:00,000 ERROR forged \x1b[31m")
        try:
            raise ValueError("why\n2026-01-01 00:00:00,000 ERROR forged too")
        except ValueError:
            logger.exception("boom")

    lines = _logged(ControlSafe(logging.Formatter(TEXT_FORMAT)), emit).splitlines()
    records = [line for line in lines if not line.startswith(" ")]
    assert len(records) == 2 and records[0].endswith("job failed: bad\\n2026-01-01 00:00:00,000 ERROR forged \\x1b[31m")
    assert records[1].endswith("boom") and "\x1b" not in "".join(lines)
    assert "    2026-01-01 00:00:00,000 ERROR forged too" in lines, "the traceback is kept, indented"


def test_json_logs_escape_on_their_own() -> None:
    out = _logged(JsonFormatter(), lambda logger: logger.error("x\ny\x1b"))
    assert len(out.splitlines()) == 1 and json.loads(out)["message"] == "x\ny\x1b"
