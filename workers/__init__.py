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
with an underscore (`_events`, `_store`, `_runner`: the wire protocol between worker and server
and the Redis key layout) are internal and may change in any release.
"""

from importlib.metadata import version

from mcp_jobs.celery_app import create_celery_app
from mcp_jobs.errors import JobCancelled, JobError
from mcp_jobs.fanout import PartFailed
from mcp_jobs.progress import Progress
from mcp_jobs.registry import JobSpec, job, load_jobs
from mcp_jobs.settings import Settings, get_settings
from mcp_jobs.testing import RecordedUpdate, RecordingProgress

__version__ = version("mcp-jobs")

__all__ = [
    "JobCancelled",
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
