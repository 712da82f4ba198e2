"""Exceptions a job raises, or that the reporter raises inside a job."""

from __future__ import annotations


class JobError(Exception):
    """A failure the caller should read: its message is returned to the client as the tool error.

    Raise it for expected problems a model can act on ("folder /x does not exist"). Any other
    exception is reported only by type and job id, with the traceback kept in the worker log.
    """


class JobCancelled(Exception):
    """Raised by the `Progress` reporter inside a job once the caller has cancelled it.

    Jobs normally let it propagate; catching it to clean up is fine, but re-raise it.
    """


class JobEnded(Exception):
    """Raised by the `Progress` reporter inside a job that was ended while it ran, not by its
    caller: the server gave up on it (no heartbeat reached Redis for too long, so it counted its
    worker as lost), or it was ended from outside. The message says how it ended. Nothing the job
    returns is recorded any more, so it should stop; like `JobCancelled`, re-raise it.
    """
