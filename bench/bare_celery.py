"""The baseline: a bare Celery app on the same broker, with Celery's own Redis result backend.

Worker: `celery -A bench.bare_celery worker`; the broker comes from `MCP_JOBS_REDIS_URL`.
"""

from __future__ import annotations

import os

from celery import Celery

url = os.environ.get("MCP_JOBS_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bare", broker=url, backend=url)
app.conf.update(
    task_serializer="json", accept_content=["json"], result_serializer="json",
    worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True, task_default_queue="bare",
)  # fmt: skip


@app.task(name="bare.noop")
def noop() -> int:
    return 0
