"""Where the jobs' Redis is found: one URL, or a master named by sentinels (and the broker with it)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import SentinelConnectionPool

from mcp_jobs.redis_connect import async_client, broker_transport_options, replicated, sentinel_nodes, sync_client
from mcp_jobs.settings import Settings


def sentinel_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": "redis://:s3cret@ignored-host:6390/4",
        "redis_sentinels": "10.0.0.1:26379, sentinel-2:26380,[::1]:26381",
        "redis_sentinel_master": "jobs",
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


def test_without_sentinels_the_url_is_the_redis_and_the_broker() -> None:
    settings = Settings(redis_url="redis://:pw@cache:6379/2")
    assert settings.effective_broker_url == "redis://:pw@cache:6379/2" and settings.broker_shares_redis
    assert broker_transport_options(settings) == {} and not replicated(settings)
    assert sync_client(settings).connection_pool.connection_kwargs["host"] == "cache"


def test_sentinels_are_parsed_and_checked() -> None:
    assert sentinel_nodes(sentinel_settings()) == [("10.0.0.1", 26379), ("sentinel-2", 26380), ("::1", 26381)]
    for bad in ("no-port", "host:", ":26379", "host:port"):
        with pytest.raises(ValidationError, match="host:port"):
            sentinel_settings(redis_sentinels=bad)


def test_with_sentinels_the_broker_is_kombus_sentinel_transport_with_the_urls_credentials_and_database() -> None:
    settings = sentinel_settings(redis_sentinel_password="sentinel-pw")
    assert settings.effective_broker_url == (
        "sentinel://:s3cret@10.0.0.1:26379/4;sentinel://:s3cret@sentinel-2:26380/4;sentinel://:s3cret@[::1]:26381/4"
    )
    assert settings.broker_shares_redis and replicated(settings)
    assert broker_transport_options(settings) == {"master_name": "jobs", "sentinel_kwargs": {"password": "sentinel-pw"}}


def test_a_broker_of_its_own_is_left_alone() -> None:
    settings = sentinel_settings(broker_url="amqp://guest@rabbit//")
    assert settings.effective_broker_url == "amqp://guest@rabbit//" and not settings.broker_shares_redis
    assert broker_transport_options(settings) == {}


def test_clients_ask_the_sentinels_for_the_master_with_the_urls_database_and_password() -> None:
    settings = sentinel_settings()
    for client, pool_class in (
        (sync_client(settings), SentinelConnectionPool),
        (async_client(settings), AsyncSentinelPool),
    ):
        pool = client.connection_pool
        assert isinstance(pool, pool_class) and pool.service_name == "jobs"
        assert pool.connection_kwargs["db"] == 4 and pool.connection_kwargs["password"] == "s3cret"
        assert "host" not in pool.connection_kwargs
    bounded = async_client(settings, max_connections=7).connection_pool
    assert isinstance(bounded, AsyncSentinelPool) and bounded.max_connections == 7 and bounded.timeout is None
