"""mcp-jobs, worker side: define jobs, report progress, run them on Celery.

```python
from workers import Progress, job

@job(time_limit=60)
def resize_images(progress: Progress, urls: list[str]) -> int:
    \"\"\"Resize the images at `urls`.\"\"\"
    progress.set_total(len(urls))
    for url in urls:
        ...
        progress.advance(message=f"resized {url}")
    return len(urls)
```
"""

from workers.celery_app import create_celery_app, task_name
from workers.errors import JobCancelled, JobError
from workers.events import JobEvent, JobState, Keys
from workers.progress import Progress
from workers.registry import JobSpec, job, load_jobs
from workers.settings import Settings, get_settings

__all__ = [
    "JobCancelled",
    "JobError",
    "JobEvent",
    "JobSpec",
    "JobState",
    "Keys",
    "Progress",
    "Settings",
    "create_celery_app",
    "get_settings",
    "job",
    "load_jobs",
    "task_name",
]
