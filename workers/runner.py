"""Running one job inside a worker: validate arguments, call the function, record how it ended.

Every way a job can end is written to its snapshot as a terminal state, which is what ends the
caller's `tools/call` on the server:

- returned: `succeeded` with the JSON form of the return value;
- raised `JobError`: `failed` with the job's own message (meant for the model to read);
- cancelled by the caller: `cancelled`;
- exceeded its time limit: `failed`, naming the limit;
- raised anything else: `failed`, naming the exception type and the job id only. The traceback
  goes to the worker log, never to the client, since exception text can carry secrets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from workers.errors import JobCancelled, JobError
from workers.events import JobState
from workers.progress import Progress
from workers.registry import JobSpec
from workers.store import JobStore

logger = logging.getLogger(__name__)


def run_job(spec: JobSpec, store: JobStore, job_id: str, arguments: dict[str, Any], worker: str = "") -> None:
    """Run `spec` for `job_id` and write its terminal state; never raises for a job's own failure."""
    start = store.write(job_id, JobState.RUNNING, message="started", extra={"worker": worker})
    if start.seq == 0:
        logger.info("job %s (%s) already finished; skipping", job_id, spec.name)
        return
    if start.cancel_requested:
        store.write(job_id, JobState.CANCELLED, message="cancelled before it started")
        return
    try:
        result = _call(spec, store, job_id, arguments)
    except JobCancelled:
        logger.info("job %s (%s) cancelled", job_id, spec.name)
        store.write(job_id, JobState.CANCELLED, message="cancelled")
    except JobError as exc:
        logger.info("job %s (%s) failed: %s", job_id, spec.name, exc)
        store.write(job_id, JobState.FAILED, error=str(exc) or type(exc).__name__, error_type="JobError")
    except SoftTimeLimitExceeded:
        error = f"Job {spec.name} exceeded its time limit of {spec.time_limit:g} s and was stopped (job id {job_id})."
        logger.warning(error)
        store.write(job_id, JobState.FAILED, error=error, error_type="TimeLimitExceeded")
    except ValidationError as exc:
        # The server validated these arguments already: a mismatch means the two sides run different code.
        logger.error("job %s (%s) got arguments its signature rejects: %s", job_id, spec.name, exc)
        error = f"Job {spec.name} rejected its arguments on the worker (job id {job_id}); is the worker up to date?"
        store.write(job_id, JobState.FAILED, error=error, error_type="ValidationError")
    except Exception as exc:
        logger.exception("job %s (%s) raised", job_id, spec.name)
        name = type(exc).__name__
        error = f"Job {spec.name} failed with an unexpected {name} (job id {job_id}); details are in the worker log."
        store.write(job_id, JobState.FAILED, error=error, error_type=name)
    else:
        store.write(job_id, JobState.SUCCEEDED, progress=None, result=result, message="done")


def _call(spec: JobSpec, store: JobStore, job_id: str, arguments: dict[str, Any]) -> Any:
    kwargs = spec.validate_arguments(arguments)
    if spec.progress_param:
        kwargs[spec.progress_param] = Progress(store, job_id)
    if spec.is_async:
        value = asyncio.run(spec.fn(**kwargs))
    else:
        value = spec.fn(**kwargs)
    return to_jsonable_python(value, by_alias=True)
