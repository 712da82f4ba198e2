"""Artifacts: files a job makes, stored with its result and handed to the caller by link.

A job that produces a 50 MB CSV or a PDF should not put it in the model's context. It calls
`progress.artifact(name, data, mime_type)`, which stores the bytes in Redis beside the job's
snapshot (`<ns>:job:<id>:artifact:<name>`, listed in `<ns>:job:<id>:artifacts`, both with the
result's TTL) and returns an MCP `resource_link` block naming `mcp-jobs://jobs/<id>/artifacts/<name>`.
The job returns that block in its content (inline results stay as they are); the client reads the
file with `resources/read` when and if it wants, from any server replica, as the caller who ran
the job (`mcp_jobs.server.resources`). An artifact is capped by `MCP_JOBS_MAX_ARTIFACT_BYTES`
(64 MB), apart from the inline result's cap.

An object store would plug in here: store the bytes there and keep only the link's metadata in
Redis; `resources/read` would then stream from it.
"""

from __future__ import annotations

import json
import mimetypes
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp.types import ResourceLink

from mcp_jobs._events import Keys, as_text

if TYPE_CHECKING:
    import redis

SCHEME = "mcp-jobs"
JOB_URI = SCHEME + "://jobs/{job_id}"
ARTIFACT_URI = SCHEME + "://jobs/{job_id}/artifacts/{name}"

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
"""An artifact's name: a file name without a path (letters, digits, `_.-`; no leading dot)."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What a job's listing says of one of its files."""

    name: str
    mime_type: str
    size: int

    def link(self, job_id: str) -> ResourceLink:
        return ResourceLink(
            type="resource_link",
            uri=artifact_uri(job_id, self.name),
            name=self.name,
            mime_type=self.mime_type,
            size=self.size,
        )


def artifact_uri(job_id: str, name: str) -> str:
    return ARTIFACT_URI.format(job_id=job_id, name=name)


def job_uri(job_id: str) -> str:
    return JOB_URI.format(job_id=job_id)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(
            f"an artifact name must be a file name of letters, digits, '_', '.' and '-' (1-128, no leading dot), "
            f"not {name!r}"
        )
    return name


def as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    raise TypeError(f"artifact data must be bytes or str, not {type(data).__name__}")


def guess_type(name: str, data: bytes | str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or ("text/plain" if isinstance(data, str) else "application/octet-stream")


def store(
    client: redis.Redis, keys: Keys, job_id: str, name: str, data: bytes, mime_type: str, ttl: int
) -> ArtifactInfo:
    """Write one artifact and its listing entry, in one round trip."""
    info = ArtifactInfo(name, mime_type, len(data))
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.artifact(job_id, name), data, ex=ttl)
    pipe.hset(keys.artifacts(job_id), name, json.dumps({"mimeType": mime_type, "size": info.size}))
    pipe.expire(keys.artifacts(job_id), ttl)
    pipe.execute()
    return info


def keep(client: redis.Redis, keys: Keys, job_id: str, names: list[str], ttl: int) -> None:
    """Give a job's artifacts the TTL of its result, from now (the job's outcome was just written)."""
    pipe = client.pipeline(transaction=False)
    pipe.expire(keys.artifacts(job_id), ttl)
    for name in names:
        pipe.expire(keys.artifact(job_id, name), ttl)
    pipe.execute()


def parse_listing(fields: dict[Any, Any]) -> list[ArtifactInfo]:
    """A job's artifacts from its listing hash (entries not as a worker writes them are skipped)."""
    found = []
    for raw_name, raw in fields.items():
        name = as_text(raw_name)
        try:
            meta = json.loads(as_text(raw))
            found.append(ArtifactInfo(check_name(name), str(meta["mimeType"]), int(meta["size"])))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda info: info.name)
