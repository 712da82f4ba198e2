"""Results beyond JSON: images, audio, files and mixed content.

A job whose return annotation is content returns it as MCP content blocks instead of
structured JSON (and publishes no output schema), exactly as an ordinary SDK tool would:

| return annotation | what the caller gets |
| --- | --- |
| `Image` (`Image(data=png_bytes)`, `Image(path=...)`) | one `image` block (base64) |
| `Audio` (`Audio(data=wav_bytes, format="wav")`) | one `audio` block |
| `EmbeddedResource` (`embedded_file(...)`) | one `resource` block: a generated PDF, CSV, ... |
| `TextContent` (`text(...)`) | one `text` block |
| `list[TextContent | Image | EmbeddedResource]`, ... | those blocks, in order (mixed content) |
| `ResourceLink` (`progress.artifact(...)`) | a `resource_link` to a file stored with the result (`mcp_jobs.artifacts`) |

On the worker the value is turned into the blocks' JSON form (base64 for binary data) so that it
travels through Celery's JSON serialisation and the job's snapshot like any result; the server
validates them back into content blocks. The blocks count against `MCP_JOBS_MAX_RESULT_BYTES` in
their JSON form, so binary data counts at about 4/3 of its size; a result over the limit fails
with an error saying so.
"""

from __future__ import annotations

import base64
import inspect
import typing
from typing import Any

from mcp.server.mcpserver import Audio, Image
from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)
from pydantic import TypeAdapter

__all__ = [
    "Audio",
    "AudioContent",
    "EmbeddedResource",
    "Image",
    "ImageContent",
    "ResourceLink",
    "TextContent",
    "embedded_file",
    "text",
]

CONTENT_TYPES: tuple[type, ...] = (
    TextContent,
    ImageContent,
    AudioContent,
    ResourceLink,
    EmbeddedResource,
    Image,
    Audio,
)
"""What a content-returning job may return (bare, or in a list or tuple)."""

_BLOCKS: TypeAdapter[list[ContentBlock]] = TypeAdapter(list[ContentBlock])


def text(value: str) -> TextContent:
    """A text block."""
    return TextContent(type="text", text=value)


def embedded_file(uri: str, data: bytes | str, mime_type: str) -> EmbeddedResource:
    """A file embedded in the result: `bytes` travel as base64 (`blob`), `str` as text.

    `uri` names the file for the client (`file:///report.pdf`, `report://2026-11/usage.csv`).
    """
    if isinstance(data, bytes):
        contents: BlobResourceContents | TextResourceContents = BlobResourceContents(
            uri=uri, mime_type=mime_type, blob=base64.b64encode(data).decode()
        )
    else:
        contents = TextResourceContents(uri=uri, mime_type=mime_type, text=data)
    return EmbeddedResource(type="resource", resource=contents)


def returns_content(annotation: Any) -> bool:
    """Whether a return annotation declares content: a content type, bare, in a list or tuple,
    in a union, or `Annotated`."""
    if annotation is inspect.Signature.empty or annotation is None:
        return False
    if typing.get_origin(annotation) is None:
        return isinstance(annotation, type) and issubclass(annotation, CONTENT_TYPES)
    return any(returns_content(arg) for arg in typing.get_args(annotation) if arg is not Ellipsis)


def encode_blocks(result: CallToolResult) -> list[dict[str, Any]]:
    """The JSON form of a result's content blocks (what the worker stores)."""
    return [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]


def decode_blocks(data: Any) -> list[ContentBlock]:
    """Content blocks from their JSON form (what the server returns); `ValidationError` if malformed."""
    return _BLOCKS.validate_python(data)
