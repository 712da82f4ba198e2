"""Unit tests start no process: each runs in this interpreter, on fakes and its own clock.

The guard below makes that a rule rather than a habit: a unit test that starts a subprocess
(a Redis, a worker, the server) fails at once instead of quietly turning end-to-end.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a unit test started a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield
