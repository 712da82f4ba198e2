"""Connections to the Redis that holds the jobs: the one `redis_url` names, or the master that
Redis Sentinel names (`redis_sentinels`), so that after a failover every connection finds the new
master by itself.

Every client of mcp-jobs' own is made here: the server's pool (its pub/sub listener included),
each worker process's client, the `mcp-jobs jobs` view. With sentinels, redis-py's Sentinel
support asks them for the master's address whenever a connection is opened, and a connection
still held to a master that was demoted is dropped at its next command (`READONLY`), so pools,
the listener, worker writes and heartbeats all reconnect to the new master as they would after a
Redis restart. The database, password and TLS still come from `redis_url` (its host and port
are then unused); the sentinels' own credentials are `redis_sentinel_username`/`_password`.
Celery's broker connections go through kombu's own `sentinel://` transport
(`Settings.effective_broker_url`, `broker_transport_options`).

With `redis_cluster`, the clients are redis-py's `RedisCluster`, started from `redis_url`'s node.
Every key of a job carries the job id as a hash tag (`Keys.job`), so each script runs on the
job's own slot; what would cross slots is done otherwise there: events go on sharded pub/sub
(`SPUBLISH` to the job's own channel, `sharded`), the per-caller admission is a step of its own on
the caller's key (`server/admission.py`), and the broker is another server (`broker_url`).
"""

from __future__ import annotations

from typing import Any, Final, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.exceptions import RedisClusterUnreachableError, SlotNotCoveredError
from redis.sentinel import Sentinel

from mcp_jobs.settings import Settings


def sentinel_nodes(settings: Settings) -> list[tuple[str, int]]:
    """The sentinels' addresses, from `host:port` strings (the settings checked their form)."""
    nodes = []
    for node in settings.redis_sentinels:
        host, _, port = node.rpartition(":")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def _master_options(settings: Settings) -> dict[str, Any]:
    """What of `redis_url` applies to the master found through the sentinels: database,
    credentials, TLS and the URL's own query options (not its host and port)."""
    options: dict[str, Any] = dict(parse_url(settings.redis_url))
    options.pop("host", None)
    options.pop("port", None)
    return options


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    if settings.redis_sentinel_username:
        options["username"] = settings.redis_sentinel_username
    if settings.redis_sentinel_password:
        options["password"] = settings.redis_sentinel_password
    return options


REDIS_ERRORS: Final = (redis.RedisError, RedisClusterUnreachableError, SlotNotCoveredError)
"""What a Redis command of ours can raise when Redis fails: redis-py's errors and, from a cluster
client, the two of its `RedisClusterException`s that mean the cluster is out of reach (no node
answers; a slot nobody serves), which are not `RedisError`s. Its other cluster exceptions are
bugs of ours (keys of several slots in one command) and are left to surface as such. Every
`except` that outlives an outage catches these."""

CLUSTER_CONNECTIONS_PER_POOL = 10
"""A cluster client's connections per node, as a multiple of the bound asked for: redis-py's
cluster pools refuse a connection past their bound instead of waiting for one."""


def sync_client(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client (worker processes): of `redis_url`, of the Sentinel-managed master, or
    of the cluster `redis_url` belongs to."""
    if settings.redis_cluster:
        return cast("redis.Redis", RedisCluster.from_url(settings.redis_url, **options))
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    sentinel = Sentinel(sentinel_nodes(settings), sentinel_kwargs=_sentinel_options(settings))
    client: redis.Redis = sentinel.master_for(
        settings.redis_sentinel_master, redis_class=redis.Redis, **(_master_options(settings) | options)
    )
    return client


class _BlockingSentinelPool(AsyncSentinelPool, aioredis.BlockingConnectionPool):
    """The Sentinel-managed pool with `BlockingConnectionPool`'s bound: callers wait for a free
    connection instead of failing over the limit (as the server's standalone pool does)."""


def async_client(settings: Settings, *, max_connections: int | None = None, **options: Any) -> aioredis.Redis:
    """An asyncio client (the server, `mcp-jobs jobs`): of `redis_url`, or of the Sentinel-managed
    master, or of the cluster. With `max_connections`, callers past it wait for a connection
    (`timeout=None`); a cluster's pools hold `CLUSTER_CONNECTIONS_PER_POOL` times as many per node."""
    if settings.redis_cluster:
        if max_connections is not None:
            options["max_connections"] = max_connections * CLUSTER_CONNECTIONS_PER_POOL
        return cast("aioredis.Redis", AsyncRedisCluster.from_url(settings.redis_url, **options))
    if not settings.redis_sentinels:
        if max_connections is None:
            return aioredis.Redis.from_url(settings.redis_url, **options)
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=max_connections, timeout=None, **options
        )
        return aioredis.Redis.from_pool(pool)
    sentinel = AsyncSentinel(sentinel_nodes(settings), sentinel_kwargs=_sentinel_options(settings))
    pooled: dict[str, Any] = {}
    if max_connections is not None:
        pooled = {"connection_pool_class": _BlockingSentinelPool, "max_connections": max_connections, "timeout": None}
    client: aioredis.Redis = sentinel.master_for(
        settings.redis_sentinel_master, redis_class=aioredis.Redis, **pooled, **(_master_options(settings) | options)
    )
    return client


def is_cluster(client: object) -> bool:
    """Whether `client` talks to a Redis Cluster (events then go on sharded pub/sub)."""
    return isinstance(client, RedisCluster | AsyncRedisCluster)


def publish(client: Any, channel: str, message: str) -> Any:
    """Publish a server-wide message (the events channel): sharded on a cluster, where the
    listeners subscribe to every channel so (`server/sharded_listener.py`). Returns the
    client's awaitable for an asyncio client, the receivers' count for a blocking one."""
    return client.spublish(channel, message) if is_cluster(client) else client.publish(channel, message)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """What kombu's `sentinel://` transport needs beside the URLs: the master's name and the
    sentinels' credentials (empty for any other broker)."""
    if settings.broker_url or not settings.redis_sentinels:
        return {}
    options: dict[str, Any] = {"master_name": settings.redis_sentinel_master}
    credentials = {k: v for k, v in _sentinel_options(settings).items() if k in ("username", "password")}
    if credentials:
        options["sentinel_kwargs"] = credentials
    return options


def replicated(settings: Settings) -> bool:
    """Whether the jobs' Redis has replicas that a failover promotes (Sentinel): a job's final
    write then waits for one to acknowledge it (`WAIT`), so a result a worker saw written is not
    lost when the master dies right after."""
    return bool(settings.redis_sentinels)
