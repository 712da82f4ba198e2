"""Who is calling: every job, task and handed-off job records its caller, and every request that
reaches an existing job (task status, results, cancellation) must come from the same caller.

Without authentication every caller is the same anonymous one (""); the authentication layer
makes this the verified token's subject, so caller A never reaches caller B's work.
"""

from __future__ import annotations

CALLER_FIELD = "caller"
"""The snapshot field holding the caller of a job."""


def caller_of(ctx: object) -> str:
    """The caller of the request behind `ctx` (an SDK request context)."""
    return ""
