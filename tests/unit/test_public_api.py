"""The public surface is curated: what job authors and operators import, and nothing else.

(After httpx's `test_exported_members.py`.) Adding a name to `__all__` is an API decision; this
test makes it a visible one.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import ssl
import types

import mcp_jobs
import mcp_jobs.server
from mcp_jobs import Settings, create_celery_app
from mcp_jobs.settings import redact_url

PUBLIC = {
    "JobCancelled",
    "JobEnded",
    "JobError",
    "JobSpec",
    "PartFailed",
    "Progress",
    "RecordedUpdate",
    "RecordingProgress",
    "Settings",
    "__version__",
    "create_celery_app",
    "get_settings",
    "job",
    "load_jobs",
}
SERVER_PUBLIC = {"JOB_ID_META_KEY", "Runtime", "build_http_app", "build_mcp_server"}


def test_exported_members() -> None:
    assert set(mcp_jobs.__all__) == PUBLIC
    assert set(mcp_jobs.server.__all__) == SERVER_PUBLIC
    for name in PUBLIC:
        assert getattr(mcp_jobs, name) is not None
    for name in SERVER_PUBLIC:
        assert getattr(mcp_jobs.server, name) is not None
    assert mcp_jobs.__version__ == "0.1.0"


def test_nothing_public_leaks_past_all() -> None:
    """Every public attribute of a package is a name in its `__all__` (or one of its modules):
    a helper imported at the top of `__init__` would otherwise become API by accident."""
    for package in (mcp_jobs, mcp_jobs.server):
        for name in mcp_jobs.__all__ if package is mcp_jobs else mcp_jobs.server.__all__:
            getattr(package, name)  # load them all, then look at what the package holds
        leaked = {
            name
            for name, value in vars(package).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType) and name not in package.__all__
        }
        assert not leaked, f"{package.__name__} exposes {sorted(leaked)} outside __all__"
    assert sorted(dir(mcp_jobs)) == dir(mcp_jobs) and set(dir(mcp_jobs)) >= PUBLIC


def test_modules_and_loggers_live_under_mcp_jobs() -> None:
    # Walked package by package: in an editable install `mcp_jobs.server` is mapped, not nested.
    found = [
        *pkgutil.iter_modules(mcp_jobs.__path__, "mcp_jobs."),
        *pkgutil.iter_modules(mcp_jobs.server.__path__, "mcp_jobs.server."),
    ]
    modules = [m.name for m in found if not m.name.endswith("__main__")]
    assert {"mcp_jobs._events", "mcp_jobs._store", "mcp_jobs._runner", "mcp_jobs.server.cli"} <= set(modules)
    for name in modules:
        logger = getattr(importlib.import_module(name), "logger", None)
        if isinstance(logger, logging.Logger):
            assert logger.name.startswith("mcp_jobs"), (name, logger.name)


def test_urls_are_redacted_in_messages_and_settings_reprs() -> None:
    assert redact_url("redis://:hunter2@redis.internal:6380/0") == "redis://:***@redis.internal:6380/0"
    assert redact_url("rediss://app:hunter2@[::1]/1?x=1") == "rediss://app:***@[::1]/1?x=1"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    settings = Settings(_env_file=None, redis_url="redis://:hunter2@h/0", broker_url="amqp://u:hunter2@h//")  # type: ignore[call-arg]
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_tls_brokers_verify_certificates_unless_the_url_opts_out() -> None:
    def broker_ssl(url: str) -> object:
        app = create_celery_app(Settings(_env_file=None, redis_url=url), jobs={})  # type: ignore[call-arg]
        return app.connection_for_write().ssl

    assert broker_ssl("rediss://:pw@redis.example:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert not broker_ssl("redis://redis.example:6379/0")
    opted_out = broker_ssl("rediss://redis.example:6380/0?ssl_cert_reqs=none")
    assert opted_out in (None, False) or opted_out.get("ssl_cert_reqs") == ssl.CERT_NONE  # type: ignore[union-attr]
