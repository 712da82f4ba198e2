"""The pub/sub listener on a Redis Cluster: sharded channels, one reader per node.

On a cluster a job's events are published with `SPUBLISH` on the job's own channel (its snapshot
key), which only the node serving the job's slot delivers; a server-wide channel (the events
channel) is sharded too, on its own slot. redis-py's `ClusterPubSub` keeps one connection per
node, routes each `SSUBSCRIBE` to the node that owns the channel's slot, re-subscribes after a
reconnect and moves channels whose slot migrated to a connection to their new owner. What it
has no way to do is wait on all its nodes at once: `get_sharded_message` polls them in turn, in
slices of its timeout, which would add up to a slice to every event. So this listener runs one
reader task per node connection, each blocking on that connection alone (`target_node`), and
routes what it reads to the `JobWatch`es of its channel, as `JobListener` does on one Redis. A
supervisor looks every `SUPERVISE_INTERVAL` for connections redis-py opened by itself (a channel
moved to a new owner after a failover or a slot migration) and gives them a reader.

redis-py closes a node's connection when its last channel is unsubscribed, which would make the
next call to a quiet master connect afresh (a TLS handshake, with `rediss://`). So the listener
holds an *anchor*: a channel of its own on every master, subscribed at start and never published
to, which keeps each connection and its reader open.

There is no reply channel here: a reply channel lives on one slot, a job on another, so a job
created by this process is followed through its own channel (`replies` subscribes, one round
trip per call, before the job's first write).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from mcp_jobs._events import Keys
from mcp_jobs.redis_connect import REDIS_ERRORS
from mcp_jobs.server.listener import RESYNC, ChannelWatches, JobWatch, reconnect_delay

logger = logging.getLogger(__name__)

SUPERVISE_INTERVAL = 1.0
"""Seconds between the supervisor's looks for node connections without a reader."""

ANCHOR_SEARCH = 100_000
"""Most hash tags tried to find a slot of each master for its anchor channel."""


class ShardedJobListener(ChannelWatches):
    """Owns the process's sharded subscriptions on a cluster and routes them to `JobWatch`es."""

    reply_channel: str | None = None
    """None: jobs are followed on their own channels (see the module doc)."""

    def __init__(self, client: RedisCluster, keys: Keys, subscribe_timeout: float = 10.0) -> None:
        super().__init__(keys, subscribe_timeout)
        self._client = client
        self._pubsub: ClusterPubSub = client.pubsub()
        self._anchor = f"{keys.replies(uuid.uuid4().hex)}:anchor"
        """The prefix of this process's anchor channels (see the module doc)."""
        self._anchored = False
        self._readers: dict[str, asyncio.Task[None]] = {}
        """Per node name, the task that reads its connection."""
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def watching(self) -> int:
        return len(self._watches)

    async def start(self) -> None:
        """Anchor a connection on every master (see the module doc), and start the supervisor."""
        await self._anchor_every_master()
        self._supervisor = asyncio.create_task(self._supervise(), name="mcp-jobs-listener-supervisor")

    async def stop(self) -> None:
        tasks = [task for task in (self._supervisor, *self._readers.values()) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        await self._pubsub.aclose()

    async def _anchor_every_master(self) -> None:
        """Subscribe one anchor channel on each master: `<anchor>:{n}`, with the first `n` whose
        slot that master serves."""
        try:
            await self._client.initialize()
            wanted = {node.name for node in self._client.get_primaries()}
            anchors = []
            for n in range(ANCHOR_SEARCH):
                channel = f"{self._anchor}:{{{n}}}"
                owner = self._client.get_node_from_key(channel)
                if owner is not None and owner.name in wanted:
                    wanted.discard(owner.name)
                    anchors.append(channel)
                if not wanted:
                    break
            for channel in anchors:
                await self._pubsub.ssubscribe(channel)
            self._read_every_node()
            self._anchored = True
        except (*REDIS_ERRORS, OSError) as exc:
            logger.warning("Redis Cluster is unavailable at start-up (%r); the listener keeps trying", exc)

    async def _supervise(self) -> None:
        """Give a reader to every node connection, also those redis-py opened by itself."""
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL)
            if not self._anchored:
                await self._anchor_every_master()
            self._read_every_node()

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
        for name, per_node in list(self._pubsub.node_pubsub_mapping.items()):
            if per_node.connection is None:
                continue  # not connected yet (its first SSUBSCRIBE is on the way), or closed
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
                # Retired: its channels moved to another node's connection, which needs a reader.
                self._readers.pop(name, None)
                self._read_every_node()
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
                delay = reconnect_delay(failures)
                failures += 1
                logger.warning("sharded pub/sub connection to %s lost (%r); reconnecting in %.1f s", name, exc, delay)
                await asyncio.sleep(delay)
                self._read_every_node()
            except Exception:
                delay = reconnect_delay(failures)
                failures += 1
                logger.exception(
                    "unexpected error reading the sharded pub/sub of %s; continuing in %.1f s", name, delay
                )
                await asyncio.sleep(delay)

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
                watch.put(RESYNC)  # its slot moved: redis-py subscribes it on the new owner, the supervisor reads it
