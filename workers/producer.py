"""The producer side of Celery: what a server needs to queue jobs and revoke them.

A server never runs jobs, so it builds this send-only app instead of the worker's
(`celery_app.create_celery_app`, which registers a task per job and global signal handlers and
imports the job runner). The worker's app is built on top of this one, so both agree on the
broker, its transport options and serialisation.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery

from mcp_jobs.broker import TRANSPORTS
from mcp_jobs.redis_connect import broker_transport_options
from mcp_jobs.settings import Settings

UNACKED_RESTORE_INTERVAL = 5
"""Seconds between a worker's sweeps for unacknowledged messages past the visibility timeout."""


def create_producer_app(settings: Settings) -> Celery:
    """A send-only Celery app: what a server needs to queue jobs (`send_task`) and revoke them,
    without the worker's task registrations and global signal handlers."""
    app = Celery("mcp_jobs", broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        # A worker takes a message only when a slot is free: no job waits reserved behind a busy
        # one (while another worker idles), and no reserved message is left for a lost broker
        # connection to strand (see celery_app's docstring). Celery does this for Redis only.
        worker_disable_prefetch=urlsplit(settings.effective_broker_url).scheme in ("redis", "rediss", "sentinel"),
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            **broker_transport_options(settings),
            "visibility_timeout": settings.visibility_timeout,
            # Kombu sweeps for expired unacknowledged messages every interval x throttle seconds
            # (100 s by default); every 5 s keeps a retry after a dead worker near the visibility timeout.
            "unacked_restore_interval": UNACKED_RESTORE_INTERVAL,
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
    )
    if (transport := TRANSPORTS.get(urlsplit(settings.effective_broker_url).scheme)) is not None:
        app.conf.broker_transport = transport  # kombu's, mended (see broker.py)
    if (use_ssl := broker_tls(settings.effective_broker_url)) is not None:
        app.conf.broker_use_ssl = use_ssl
    return app


def broker_tls(url: str) -> dict[str, Any] | None:
    """TLS options for a `rediss://` broker URL: certificates verified unless the URL says otherwise.

    Celery's Redis transport skips certificate verification when a `rediss://` URL does not say
    `ssl_cert_reqs`, while redis-py (our own connections) verifies by default: make the broker
    verify too. A URL with its own `ssl_cert_reqs=...` (`none` to opt out, for a test setup) wins.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
