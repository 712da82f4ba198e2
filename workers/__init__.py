"""mcp-jobs: run long MCP tool calls as Celery jobs, with live progress.

Everything a job author or an operator uses is importable from here:

```python
from mcp_jobs import JobError, Progress, job

@job(time_limit=60)
def resize_images(progress: Progress, urls: list[str]) -> int:
    \"\"\"Resize the images at `urls`.\"\"\"
    progress.set_total(len(urls))
    for url in urls:
        if not url.startswith("https://"):
            raise JobError(f"{url} is not an https URL")
        ...
        progress.advance(message=f"resized {url}")
    return len(urls)
```

The server side lives in `mcp_jobs.server` (the `mcp-jobs` command). Modules whose names start
with an underscore (`_contract`, `_events`, `_store`, `_runner`: the names and wire protocol
between worker and server and the Redis key layout) are internal and may change in any release.

The names below are loaded on first use (PEP 562), so that importing one module of the package
(the `call` client, the contract) does not load Celery and the rest.
"""

import typing as _typing
from importlib import import_module as _import_module

if _typing.TYPE_CHECKING:
    from mcp_jobs.celery_app import create_celery_app
    from mcp_jobs.errors import JobCancelled, JobEnded, JobError
    from mcp_jobs.fanout import PartFailed
    from mcp_jobs.progress import Progress
    from mcp_jobs.registry import JobSpec, job, load_jobs
    from mcp_jobs.settings import Settings, get_settings
    from mcp_jobs.testing import RecordedUpdate, RecordingProgress

    __version__: str

_LAZY = {
    "JobCancelled": "mcp_jobs.errors",
    "JobEnded": "mcp_jobs.errors",
    "JobError": "mcp_jobs.errors",
    "JobSpec": "mcp_jobs.registry",
    "PartFailed": "mcp_jobs.fanout",
    "Progress": "mcp_jobs.progress",
    "RecordedUpdate": "mcp_jobs.testing",
    "RecordingProgress": "mcp_jobs.testing",
    "Settings": "mcp_jobs.settings",
    "create_celery_app": "mcp_jobs.celery_app",
    "get_settings": "mcp_jobs.settings",
    "job": "mcp_jobs.registry",
    "load_jobs": "mcp_jobs.registry",
}

__all__ = [
    "JobCancelled",
    "JobEnded",
    "JobError",
    "JobSpec",
    "PartFailed",
    "Progress",
    "RecordedUpdate",
    "RecordingProgress",
    "Settings",
    "__version__",
    "create_celery_app",
    "get_settings",
    "job",
    "load_jobs",
]


def __getattr__(name: str) -> _typing.Any:
    if name == "__version__":
        from importlib.metadata import version

        value: _typing.Any = version("mcp-jobs")
    elif name in _LAZY:
        value = getattr(_import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'mcp_jobs' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
