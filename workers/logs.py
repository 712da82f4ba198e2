"""Logging for server and workers: plain text by default, one JSON object per line on request
(`MCP_JOBS_LOG_FORMAT=json`), to stderr (on stdio, stdout belongs to the protocol).

JSON lines carry `time`, `level`, `logger`, `message`, where the code passed them as `extra`,
`job_id`, `tool` and `caller`, and where an OpenTelemetry span is current (a request, a job's
run: see `tracing.py`), its `trace_id` and `span_id`, so a log line leads to its trace. Arguments,
results and tokens are never logged.

Text lines are made safe from what they quote (`ControlSafe`): a job's error or a caller's
argument that holds a line break or an escape sequence cannot forge a log line or write to the
reader's terminal. Control characters in a message are escaped (`\n`, `\x1b`), and the lines of
a traceback are indented, so only a record's own first line starts at the beginning of a line.
JSON lines need none of this: `json.dumps` escapes them.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from datetime import UTC, datetime

from mcp_jobs._text import printable
from mcp_jobs.tracing import log_ids

CONTEXT_FIELDS = ("job_id", "tool", "caller")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None) is not None}
        ids = log_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class ControlSafe(logging.Formatter):
    """Wraps a text formatter (ours, or Celery's worker formatter) so that a record's message and
    traceback cannot forge log lines or carry escape sequences (see the module docstring)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        safe = copy.copy(record)
        safe.msg, safe.args = printable(record.getMessage()), None
        if record.exc_info and record.exc_info[0] is not None:
            safe.exc_text = _indented(self._inner.formatException(record.exc_info))
        elif record.exc_text:
            safe.exc_text = _indented(record.exc_text)
        if record.stack_info:
            safe.stack_info = _indented(record.stack_info)
        return self._inner.format(safe)


def _indented(text: str) -> str:
    return "\n".join("    " + printable(line) for line in text.splitlines())


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ControlSafe(logging.Formatter(TEXT_FORMAT)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
