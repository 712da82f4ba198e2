"""The pub/sub listener on a Redis Cluster: sharded channels, one reader per node.

On a cluster a job's events are published with `SPUBLISH` on the job's own channel (its snapshot
key), which only the node serving the job's slot delivers; a server-wide channel (the events
channel) is sharded too, on its own slot. redis-py's `ClusterPubSub` keeps one connection per
node, routes each `SSUBSCRIBE` to the node that owns the channel's slot, re-subscribes after a
reconnect and moves channels whose slot migrated. What it has no way to do is wait on all its
nodes at once: `get_sharded_message` polls them in turn, in slices of its timeout, which would
add up to a slice to every event. So this listener runs one reader task per node, each blocking
on that node's connection alone (`target_node`), and routes what it reads to the `JobWatch`es of
its channel, as `JobListener` does on one Redis.

There is no reply channel here: a reply channel lives on one slot, a job on another, so a job
created by this process is followed through its own channel (`replies` subscribes, one round
trip per call, before the job's first write).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from mcp_jobs._events import Keys
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.server.listener import RECONNECT_BACKOFF, RESYNC, ChannelWatches, JobWatch

logger = logging.getLogger(__name__)


class ShardedJobListener(ChannelWatches):
    """Owns the process's sharded subscriptions on a cluster and routes them to `JobWatch`es."""

    reply_channel: str | None = None
    """None: jobs are followed on their own channels (see the module doc)."""

    def __init__(self, client: RedisCluster, keys: Keys, subscribe_timeout: float = 10.0) -> None:
        super().__init__(keys, subscribe_timeout)
        self._pubsub: ClusterPubSub = client.pubsub()
        self._readers: dict[str, asyncio.Task[None]] = {}
        """Per node name, the task that reads its connection."""

    @property
    def watching(self) -> int:
        return len(self._watches)

    async def start(self) -> None:
        """Nothing to subscribe before a call: each job's channel is subscribed by its watch."""

    async def stop(self) -> None:
        readers = list(self._readers.values())
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with suppress(asyncio.CancelledError):
                await reader
        await self._pubsub.aclose()

    def replies(self, job_id: str) -> AbstractAsyncContextManager[JobWatch]:
        """Watch a job this process is about to create: its own channel, as `watch`."""
        return self.watch(job_id)

    async def _subscribe(self, channel: str) -> None:
        await self._pubsub.ssubscribe(channel)
        self._read_every_node()

    async def _unsubscribe(self, channel: str) -> None:
        await self._pubsub.sunsubscribe(channel)

    def _read_every_node(self) -> None:
        """A reader for every node connection redis-py holds (a new node after a slot moved, too)."""
        for name in list(self._pubsub.node_pubsub_mapping):
            reader = self._readers.get(name)
            if reader is None or reader.done():
                self._readers[name] = asyncio.create_task(self._read_node(name), name=f"mcp-jobs-listener-{name}")

    async def _read_node(self, name: str) -> None:
        """Read one node's connection until redis-py retires it (its channels moved elsewhere)."""
        failures = 0
        while True:
            node = self._pubsub.cluster.get_node(node_name=name)
            per_node = self._pubsub.node_pubsub_mapping.get(name)
            if node is None or per_node is None or per_node.connection is None:
                self._readers.pop(name, None)
                return
            try:
                message = await self._pubsub.get_sharded_message(target_node=node, timeout=None)
                failures = 0
                if message is not None:
                    self._route(message)
            except asyncio.CancelledError:
                raise
            except (*REDIS_ERRORS, OSError) as exc:
                if failures == 0:
                    self._resync_channels(per_node.shard_channels)  # events may be lost while it reconnects
                delay = RECONNECT_BACKOFF[min(failures, len(RECONNECT_BACKOFF) - 1)]
                failures += 1
                logger.warning("sharded pub/sub connection to %s lost (%r); reconnecting in %.1f s", name, exc, delay)
                await asyncio.sleep(delay)
                self._read_every_node()

    def _resync_channels(self, channels: dict[Any, Any]) -> None:
        names = {channel.decode() if isinstance(channel, bytes) else channel for channel in channels}
        self._resync({name: watches for name, watches in self._watches.items() if name in names})

    def _route(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        name = channel.decode() if isinstance(channel, bytes) else channel
        watches = self._watches.get(name, [])
        if kind == "smessage" and isinstance(message["data"], bytes | str):
            for watch in watches:
                watch.put(message["data"])
        elif kind == "ssubscribe":
            self._confirmed(name)
        elif kind == "sunsubscribe" and watches:
            for watch in watches:
                watch.put(RESYNC)  # its slot moved: redis-py subscribes it on the new owner
