"""Workers announce themselves in Redis, so that a server can tell whether each queue it routes
to has a live worker (`/readyz`, and the `mcp_jobs_workers_alive` metric).

Key (under the namespace): `<ns>:worker:<hostname>`, a JSON `{"queues": [...], "pid": n}` with a
TTL of `worker_lost_after` seconds, refreshed every `heartbeat_interval` by a thread of the
worker's main process, and deleted when the worker shuts down.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable

import redis

from mcp_jobs._events import Keys
from mcp_jobs.redis_connect import REDIS_ERRORS

logger = logging.getLogger(__name__)


class Presence:
    """The announcing thread of one worker process."""

    def __init__(self, client: Callable[[], redis.Redis], keys: Keys, interval: float, ttl: float) -> None:
        self._client = client
        self._keys = keys
        self._interval = interval
        self._ttl = ttl
        self._stop = threading.Event()
        self._key = ""
        self._value = ""

    def start(self, hostname: str, queues: list[str]) -> None:
        self._key = self._keys.worker(hostname)
        self._value = json.dumps({"queues": sorted(queues), "pid": os.getpid()})
        threading.Thread(target=self._run, name="mcp-jobs-presence", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._key:
            try:
                self._client().delete(self._key)
            except REDIS_ERRORS as exc:
                logger.warning("could not withdraw the worker's presence (%r)", exc)

    def _run(self) -> None:
        while True:
            try:
                self._client().set(self._key, self._value, px=int(self._ttl * 1000))
            except REDIS_ERRORS as exc:
                logger.warning("could not announce the worker's presence (%r)", exc)
            if self._stop.wait(self._interval):
                return
