"""Who is calling: every job, task and handed-off job records its caller, and every request that
reaches an existing job (task status, results, cancellation) must come from the same caller.

Without authentication every caller is the same anonymous one (""); the authentication layer
makes this the verified token's subject, so caller A never reaches caller B's work.
"""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

CALLER_FIELD = "caller"
"""The snapshot field holding the caller of a job."""


def caller_of(ctx: object) -> str:
    """The caller of the request behind `ctx` (an SDK request context): the verified token's
    subject, else its client id; "" without authentication (and on stdio)."""
    request = getattr(ctx, "request", None) or getattr(getattr(ctx, "request_context", None), "request", None)
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    token = user.access_token if isinstance(user, AuthenticatedUser) else get_access_token()
    if token is None:
        return ""
    return token.subject or token.client_id
