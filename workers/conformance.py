"""The official MCP conformance suite's fixture tools, as real jobs.

Loaded only on request (`--jobs mcp_jobs.conformance`, or in `MCP_JOBS_JOB_MODULES`): each tool
runs on a Celery worker like any job, so the suite (npm `@modelcontextprotocol/conformance`)
checks the job path itself, not a stand-in. Names, arguments and results are the ones the
suite's scenarios call for; only the features mcp-jobs offers have fixtures (no sampling,
elicitation, logging, resources or prompts: see `tests/conformance/expected-failures.yml`).
"""

from __future__ import annotations

import base64
from typing import Annotated

from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR
from pydantic import Field

from mcp_jobs import content
from mcp_jobs.errors import JobError
from mcp_jobs.progress import Progress
from mcp_jobs.registry import job

RED_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
SILENT_WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")


@job
def test_simple_text() -> content.TextContent:
    """Return a simple text block."""
    return content.text("This is a simple text response for testing.")


@job
def test_image_content() -> content.Image:
    """Return an image (a 1x1 PNG)."""
    return content.Image(data=RED_PIXEL_PNG, format="png")


@job
def test_audio_content() -> content.Audio:
    """Return audio (a short WAV)."""
    return content.Audio(data=SILENT_WAV, format="wav")


@job
def test_embedded_resource() -> content.EmbeddedResource:
    """Return an embedded text resource."""
    return content.embedded_file("test://embedded-resource", "This is an embedded resource content.", "text/plain")


@job
def test_multiple_content_types() -> list[content.TextContent | content.Image | content.EmbeddedResource]:
    """Return text, an image and an embedded resource together."""
    return [
        content.text("Multiple content types test:"),
        content.Image(data=RED_PIXEL_PNG, format="png"),
        content.embedded_file("test://mixed-content-resource", '{"test":"data","value":123}', "application/json"),
    ]


@job
def test_error_handling() -> str:
    """Fail on purpose, with an error result the model can read."""
    raise JobError("This tool intentionally returns an error for testing")


@job
def test_tool_with_progress(progress: Progress) -> str:
    """Report progress 0, 50 and 100 of 100, a little apart."""
    for value in (0, 50, 100):
        progress.report(value, f"{value}% done", total=100)
        if value < 100:
            progress.sleep(0.05)
    return "Progress test completed"


@job
def test_streaming_elicitation() -> str:
    """Answer at once (mcp-jobs sends no server-to-client requests, on any stream)."""
    return "No elicitation: mcp-jobs jobs do not ask the client for input."


@job
def test_logging_tool() -> str:
    """Answer at once, without log notifications (none was asked for)."""
    return "No log notifications sent."


@job
def test_x_mcp_header(
    region: Annotated[
        str,
        Field(
            description="Routing region, mirrored into Mcp-Param-Region", json_schema_extra={"x-mcp-header": "Region"}
        ),
    ],
) -> str:
    """Echo the region: a parameter mirrored into an HTTP header (SEP-2243)."""
    return f"region {region}"


@job(
    input_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": False,
    }
)
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, str] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """Tool with JSON Schema 2020-12 features (published as written, not derived)."""
    return f"contact {name or 'someone'} by {contactMethod or 'email'}"


# The Tasks extension's fixtures (the suite's tasks-* scenarios).


@job(task="forbidden")
def greet(name: str) -> content.TextContent:
    """Greet `name` at once (never a task)."""
    return content.text(f"Hello, {name}!")


@job(task="optional")
def slow_compute(progress: Progress, seconds: Annotated[float, Field(ge=0, le=600)] = 1, label: str = "job") -> str:
    """Work for `seconds`, reporting each second; a task for clients that opt in."""
    steps = max(1, int(seconds))
    progress.set_total(steps, f"{label}: starting")
    for step in range(1, steps + 1):
        progress.sleep(seconds / steps)
        progress.report(step, f"{label}: {step}/{steps} s")
    return f"{label} computed for {seconds:g} s"


@job(task="required")
def failing_job(progress: Progress) -> str:
    """Run only as a task, and fail with a tool error."""
    progress.report(1, "about to fail", total=1)
    raise JobError("failing_job failed on purpose")


@job(task="required")
def protocol_error_job() -> str:
    """Run only as a task, and end with a protocol (JSON-RPC) error rather than a tool error."""
    raise MCPError(INTERNAL_ERROR, "protocol_error_job raised a protocol error on purpose")
