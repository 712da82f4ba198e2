"""kombu's Redis transports, with one mend: a channel closed after its connection was lost no
longer crashes the worker's consumer.

Seen with kombu 5.7 on a Sentinel failover (tests/test_failover.py): when the broker connection
drops while the worker holds an unacknowledged message (a `retry_safe` job running, acknowledged
late), Celery closes the connection, then its default channel; the channel has already let go
of its connection pool, and putting the unacknowledged message back needs a new one, built from
connection details the closed connection no longer has: `AttributeError` inside
`Connection.close()`, which Celery's consumer does not survive (it stops consuming, and every
job queued after waits for nothing). Here that attempt raises the connection error it is (kombu
ignores those while closing): the message stays in the transport's unacknowledged set, whose
job acknowledges it as usual when it ends (or which the visibility timeout restores, as for any
lost worker). `producer.create_producer_app` picks these classes for `redis://` and `sentinel://`
brokers (`rediss://` keeps kombu's own, whose TLS set-up follows from that scheme).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class _Closable:
    """The mend, for both channel classes (see the module docstring)."""

    connection: Any

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous)  # type: ignore[misc]


class Channel(_Closable, kombu_redis.Channel):
    pass


class SentinelChannel(_Closable, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORTS = {"redis": f"{__name__}:Transport", "sentinel": f"{__name__}:SentinelTransport"}
"""The transport class for each Redis broker URL scheme."""
