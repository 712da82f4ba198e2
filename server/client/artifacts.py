"""`mcp-jobs call --save-artifacts DIR`: the files a tool result links to (`resource_link` blocks),
read with `resources/read` on the call's connection and written into DIR.

The server names the files, and the server may be hostile: a name is only a suggestion. It is
made a plain file name (`safe_file_name`: path separators become `_`, `.` and `..` segments and
control characters go, never empty), opened with `O_CREAT | O_EXCL` inside DIR (so an existing
file, or a symlink planted there, is never written through; a clash gets `-1`, `-2`... before
the extension), and checked to lie in DIR before a byte is written.

One read is held in memory once (the SDK's response cache is bypassed, so it does not keep a
second copy): a blob is base64-decoded and a text UTF-8-encoded chunk by chunk straight into the
file, never as a whole second copy. A read that fails is reported and the others go on; a file
left half-written (a failed write, Ctrl-C) is removed.
"""

from __future__ import annotations

import base64
import binascii
import os
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

ReadResource = Callable[[str], Awaitable[types.ReadResourceResult]]
"""`resources/read` for one URI (the SDK client's `read_resource`, or a test's fake)."""

FALLBACK_NAME = "artifact"
NAME_MAX_BYTES = 200
"""Room under the usual 255-byte file name limit for a `-N` clash suffix."""
CLASH_MAX = 10_000
CHUNK_CHARS = 4 * 1024 * 1024
"""Characters decoded or encoded at a time; a multiple of 4, so base64 chunks decode alone."""
WHITESPACE = ("\n", "\r", " ", "\t")
UNSAFE = frozenset('/\\<>:"|?*')
"""Path separators, and what Windows refuses in a name (the same links may be saved there)."""
READ_ERRORS = (MCPError, OSError, ValidationError, ValueError, TimeoutError)
"""What a failed read or write raises (ValueError: bad base64, text that is no Unicode); a
failure of anything else is a bug, and surfaces."""


@dataclass(frozen=True)
class SavedArtifact:
    uri: str
    name: str
    """The link's name as the server gave it."""
    path: Path
    bytes: int
    declared_size: int | None = None

    @property
    def size_mismatch(self) -> bool:
        return self.declared_size is not None and self.declared_size != self.bytes

    def as_json(self) -> dict[str, object]:
        return {"uri": self.uri, "name": self.name, "path": str(self.path), "bytes": self.bytes}


@dataclass(frozen=True)
class FailedArtifact:
    uri: str
    name: str
    error: str

    def as_json(self) -> dict[str, object]:
        return {"uri": self.uri, "name": self.name, "error": self.error}


@dataclass
class ArtifactReport:
    saved: list[SavedArtifact] = field(default_factory=list)
    failed: list[FailedArtifact] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        """What `--json-output` adds to the result: `savedArtifacts` and `failedArtifacts`."""
        return {
            "savedArtifacts": [saved.as_json() for saved in self.saved],
            "failedArtifacts": [failed.as_json() for failed in self.failed],
        }


def resource_links(result: types.CallToolResult) -> list[types.ResourceLink]:
    return [block for block in result.content if isinstance(block, types.ResourceLink)]


def prepare_directory(directory: Path) -> Path:
    """DIR, made if missing, as an absolute path (raises OSError when it cannot be: a file there)."""
    directory.mkdir(parents=True, exist_ok=True)
    return directory.absolute()


# --- names ---------------------------------------------------------------------------------------


def safe_file_name(name: str | None, uri: str) -> str:
    """A plain file name for a link: its `name`, else the URI's last path segment, else
    `FALLBACK_NAME`; whichever first gives something once made safe (`_clean`)."""
    for candidate in (name, _last_segment(uri)):
        if candidate and (cleaned := _clean(candidate)):
            return cleaned
    return FALLBACK_NAME


def _last_segment(uri: str) -> str:
    try:
        path = urlsplit(uri).path
    except ValueError:
        return ""
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


def _clean(name: str) -> str:
    """Control and format characters (a right-to-left override too) dropped, each run of path
    separators (and Windows' reserved characters) one `_`, `.`/`..` segments gone, trimmed, and
    cut to `NAME_MAX_BYTES` (the extension kept); "" when nothing is left."""
    text = unicodedata.normalize("NFC", name)
    text = "".join(char for char in text if not unicodedata.category(char).startswith("C"))
    segments = "".join("/" if char in UNSAFE else char for char in text).split("/")
    kept = [segment.strip() for segment in segments if segment.strip() not in ("", ".", "..")]
    joined = "_".join(kept).strip(" .") if kept else ""
    return _truncate(joined)


def _truncate(name: str) -> str:
    if len(name.encode()) <= NAME_MAX_BYTES:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix.encode()) > 16:
        stem, suffix = name, ""
    tail = f".{suffix}" if suffix else ""
    budget = NAME_MAX_BYTES - len(tail.encode())
    return stem.encode()[:budget].decode(errors="ignore").rstrip(" .") + tail


def _candidates(name: str) -> Iterator[str]:
    """`name`, then `stem-1.ext`, `stem-2.ext`..."""
    yield name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    tail = f".{suffix}" if suffix else ""
    for number in range(1, CLASH_MAX):
        yield f"{stem}-{number}{tail}"


def open_new_file(directory: Path, name: str) -> tuple[Path, BinaryIO]:
    """A file created anew in `directory` (an absolute path) for `name` (a `safe_file_name`), or
    its first free `-N` variant; never one that exists, nor anything a symlink points to."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for candidate in _candidates(name):
        path = directory / candidate
        if path.parent != directory or candidate in ("", ".", ".."):
            raise ValueError(f"refusing the file name {candidate!r}: not a plain name")  # _clean makes none
        try:
            descriptor = os.open(path, flags, 0o644)
        except FileExistsError:
            continue
        return path, os.fdopen(descriptor, "wb")
    raise FileExistsError(f"no free file name for {name!r} in {directory}")


# --- contents --------------------------------------------------------------------------------------


def pick_contents(
    result: types.ReadResourceResult, uri: str
) -> types.TextResourceContents | types.BlobResourceContents:
    """The contents for `uri` (a read may return several: the one with that URI, else the first)."""
    if not result.contents:
        raise ValueError("the server returned no contents")
    return next((item for item in result.contents if item.uri == uri), result.contents[0])


def write_contents(contents: types.TextResourceContents | types.BlobResourceContents, file: BinaryIO) -> int:
    """The contents' bytes into `file`, chunk by chunk; how many were written."""
    written = 0
    for chunk in _chunks(contents):
        file.write(chunk)
        written += len(chunk)
    return written


def _chunks(contents: types.TextResourceContents | types.BlobResourceContents) -> Iterator[bytes]:
    if isinstance(contents, types.TextResourceContents):
        text = contents.text
        for start in range(0, len(text), CHUNK_CHARS):
            yield text[start : start + CHUNK_CHARS].encode("utf-8")
        return
    blob = contents.blob
    if any(space in blob for space in WHITESPACE):  # wrapped base64 (not the spec's, but seen)
        blob = "".join(blob.split())  # a second copy, of this rare kind only
    for start in range(0, len(blob), CHUNK_CHARS):
        try:
            yield base64.b64decode(blob[start : start + CHUNK_CHARS], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"the blob is not valid base64 ({exc})") from exc


# --- saving ------------------------------------------------------------------------------------------


async def save_artifact(link: types.ResourceLink, directory: Path, read: ReadResource) -> SavedArtifact:
    """Read one link and write it into `directory`; raises one of `READ_ERRORS` on failure,
    having removed any half-written file."""
    result = await read(link.uri)
    contents = pick_contents(result, link.uri)
    path, file = open_new_file(directory, safe_file_name(link.name, link.uri))
    try:
        with file:
            written = write_contents(contents, file)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SavedArtifact(link.uri, link.name, path, written, link.size)


async def save_artifacts(
    links: Sequence[types.ResourceLink],
    directory: Path,
    read: ReadResource,
    on_saved: Callable[[SavedArtifact], None] = lambda saved: None,
    on_failed: Callable[[FailedArtifact], None] = lambda failed: None,
) -> ArtifactReport:
    """Each link saved in turn (one in memory at a time); a failure is reported and the rest go on."""
    report = ArtifactReport()
    for link in links:
        try:
            saved = await save_artifact(link, directory, read)
        except READ_ERRORS as exc:
            failed = FailedArtifact(link.uri, link.name, describe_failure(exc))
            report.failed.append(failed)
            on_failed(failed)
        else:
            report.saved.append(saved)
            on_saved(saved)
    return report


def describe_failure(error: BaseException) -> str:
    if isinstance(error, MCPError):
        return f"{error.message} (JSON-RPC error {error.code})"
    if isinstance(error, ValidationError) and (errors := error.errors()):
        where = ".".join(str(part) for part in errors[0]["loc"])
        return f"the server sent an invalid answer: {errors[0]['msg']}" + (f" ({where})" if where else "")
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error) or type(error).__name__
