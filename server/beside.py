"""Awaiting a request's handler with followers running beside it (a listen stream's jobs and tasks).

An anyio task group raises what its body raised inside an exception group, so an `MCPError` of the
handler (a refused listen request, say) would reach the SDK as a grouped error and go out as
-32603. Here the handler's outcome is taken out of the group and raised as itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def beside(followers: Sequence[Callable[[], Coroutine[Any, Any, None]]], body: Callable[[], Awaitable[T]]) -> T:
    """`await body()` with `followers` running until it ends (then cancelled); its error as itself."""
    result: list[T] = []
    error: list[Exception] = []
    async with anyio.create_task_group() as group:
        for follower in followers:
            group.start_soon(follower)
        try:
            result.append(await body())
        except Exception as exc:  # raised below, out of the group
            error.append(exc)
        finally:
            group.cancel_scope.cancel()
    if error:
        raise error[0]
    return result[0]
