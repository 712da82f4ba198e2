"""Text from others made safe to show: control characters replaced by visible escapes.

A job's messages and errors, tool names, a server's answers to `mcp-jobs call`: all of it may come
from someone who would like to write escape sequences to an operator's terminal (clear the
screen, forge coloured text, plant an OSC-8 link) or a line break into a log (forge a log line).
Whatever the CLIs render and the text log format writes goes through `printable` first.

Standard library only: the client (`mcp_jobs.server.client`) uses it too.
"""

from __future__ import annotations

import re

_JSON_UNESCAPED_CONTROL = re.compile(r"[\x7f-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(code, f"\\x{code:02x}")


def printable(text: str, *, keep_layout: bool = False) -> str:
    """`text` with every C0 and C1 control character (ESC, CSI, BEL, CR, DEL, ...) written as a
    visible escape (`\\x1b`, `\\r`). With `keep_layout`, line feeds and tabs stay (for multi-line
    text printed as a block, such as a tool's result); one line of a table or a log keeps none."""
    return (_CONTROL_BUT_LAYOUT if keep_layout else _CONTROL).sub(_escaped, text)


def json_safe(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with DEL and the C1 controls, which
    JSON leaves raw, written as `\\u00XX` escapes: the same JSON, safe to print."""
    return _JSON_UNESCAPED_CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
