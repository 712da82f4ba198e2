"""One Redis pub/sub connection per server process, shared by every call, demultiplexed by job id.

Two ways to receive a job's events on a `JobWatch`:

- `replies(job_id)`: for a job this process creates. The listener subscribes once, at start, to
  this process's *reply channel*; the job's snapshot names it (`reply_to`), so the workers'
  writes publish each event there too. A call then needs no Redis command of its own to listen,
  and is safe from its first write on, since the subscription is confirmed before any call runs.
- `watch(job_id)`: for any other job (a `job_result` from another replica, a task's status): a
  subscription to the job's own channel, confirmed by Redis before it is used.

The listener's single reader task routes each message to the watches of its job. When the
connection drops, redis-py reconnects and re-subscribes; the listener then hands every affected
watch a `RESYNC` marker, on which the call re-reads the job's snapshot, since events published
during the outage are lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Final, Protocol

import redis.asyncio as aioredis

from mcp_jobs._events import JobEvent, Keys
from mcp_jobs.redis_connect import REDIS_ERRORS

logger = logging.getLogger(__name__)


class _Resync:
    def __repr__(self) -> str:
        return "RESYNC"


RESYNC: Final = _Resync()
"""Marker put on a watch when its events may have been lost (reconnect): re-read the snapshot."""

RECONNECT_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


def reconnect_delay(failures: int) -> float:
    """Seconds a reader waits before its next try, after `failures` failed ones in a row."""
    return RECONNECT_BACKOFF[min(failures, len(RECONNECT_BACKOFF) - 1)]


WATCH_CAPACITY = 256
"""Events one watch holds before it collapses them into a snapshot read (see `JobWatch.put`)."""


class JobWatch:
    """The events of one job, in arrival order, plus `RESYNC` markers.

    The reader queues events as they came off the wire and `next` parses them, on the follower's
    turn: the one reader every call depends on does no JSON work, and events collapsed by a full
    queue (see `put`) are never parsed at all."""

    def __init__(self, channel: str, capacity: int = WATCH_CAPACITY) -> None:
        self.channel = channel
        self.subscribed = asyncio.Event()
        self._queue: asyncio.Queue[JobEvent | bytes | str | _Resync] = asyncio.Queue(capacity)

    async def next(self, timeout: float | None) -> JobEvent | _Resync | None:
        """The next event or marker; None if nothing (well-formed) arrived within `timeout` seconds.

        What is already queued is taken at once; otherwise one `asyncio.timeout` scope waits (no
        task per wait, as `asyncio.wait_for` makes on Python 3.11)."""
        if not self._queue.empty():
            return self._parsed(self._queue.get_nowait())
        try:
            async with asyncio.timeout(timeout):
                return self._parsed(await self._queue.get())
        except TimeoutError:
            return None

    async def next_raw(self) -> bytes | str | _Resync:
        """The next message as it came off the wire (for a channel whose messages are not job
        events: the events channel), or `RESYNC`."""
        while True:
            item = await self._queue.get()
            if not isinstance(item, JobEvent):
                return item

    def _parsed(self, item: JobEvent | bytes | str | _Resync) -> JobEvent | _Resync | None:
        if not isinstance(item, bytes | str):
            return item
        try:
            return JobEvent.from_message(item)
        except (ValueError, KeyError) as exc:
            logger.warning("dropping malformed event on %s: %r", self.channel, exc)
            return None

    def put(self, item: JobEvent | bytes | str | _Resync) -> None:
        """Queue an item (an event, parsed or as published). A full queue (a fast job, a slow
        client) is emptied for one `RESYNC`: the follower reads the snapshot, which holds the
        latest state, so memory stays bounded."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(RESYNC)


class Listener(Protocol):
    """What a call follows its job's events through: `JobListener` on one Redis (and with
    Sentinel), `ShardedJobListener` on a cluster (`sharded_listener.py`)."""

    @property
    def reply_channel(self) -> str | None:
        """Where the jobs this process creates publish their events too (None: nowhere but their own channel)."""

    @property
    def watching(self) -> int:
        """How many jobs (and channels) are being watched right now."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def replies(self, job_id: str) -> AbstractAsyncContextManager[JobWatch]:
        """Watch a job this process is about to create (with `reply_to=reply_channel`)."""

    def watch(self, job_id: str) -> AbstractAsyncContextManager[JobWatch]:
        """Watch any job, once Redis confirmed the subscription."""

    def watch_channel(self, channel: str) -> AbstractAsyncContextManager[JobWatch]:
        """Watch a channel of raw messages (the events channel)."""


class ChannelWatches:
    """The watches of subscribed channels, by channel, as both listeners keep them: one
    subscription per channel however many calls watch it, confirmed before a watch is used."""

    def __init__(self, keys: Keys, subscribe_timeout: float) -> None:
        self._keys = keys
        self._subscribe_timeout = subscribe_timeout
        self._watches: dict[str, list[JobWatch]] = {}
        """Per channel, every watch of it: two calls may follow one job (say, two `job_result`s)."""

    def watch(self, job_id: str) -> AbstractAsyncContextManager[JobWatch]:
        """Subscribe to a job's channel and yield once Redis confirmed the subscription."""
        return self.watch_channel(self._keys.job(job_id))

    @asynccontextmanager
    async def watch_channel(self, channel: str) -> AsyncIterator[JobWatch]:
        """Subscribe to `channel`; yield once Redis confirmed it (`_confirmed`)."""
        watch = JobWatch(channel)
        watches = self._watches.setdefault(channel, [])
        watches.append(watch)
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                # Subscribing again to a channel already watched is harmless: Redis confirms it again.
                await self._subscribe(channel)
                await watch.subscribed.wait()
            yield watch
        finally:
            watches.remove(watch)
            if not watches:
                del self._watches[channel]
                try:
                    await self._unsubscribe(channel)
                except (*REDIS_ERRORS, OSError) as exc:
                    # Redis is away; the reconnect re-subscribes only channels still watched.
                    logger.debug("unsubscribe of %s failed: %r", channel, exc)

    async def _subscribe(self, channel: str) -> None:
        raise NotImplementedError

    async def _unsubscribe(self, channel: str) -> None:
        raise NotImplementedError

    def _confirmed(self, channel: str) -> None:
        """Redis confirmed a subscription to `channel`: its new watches may go on, and those
        already going re-read their job (a reconnect re-subscribed, events may have been lost)."""
        for watch in self._watches.get(channel, []):
            if watch.subscribed.is_set():
                watch.put(RESYNC)
            else:
                watch.subscribed.set()

    @staticmethod
    def _resync(watched: dict[str, list[JobWatch]]) -> None:
        for watches in watched.values():
            for watch in watches:
                watch.put(RESYNC)


class JobListener(ChannelWatches):
    """Owns the process's pub/sub connection and routes messages to `JobWatch`es."""

    def __init__(self, client: aioredis.Redis, keys: Keys, subscribe_timeout: float = 10.0) -> None:
        super().__init__(keys, subscribe_timeout)
        self._pubsub = client.pubsub()
        self.reply_channel = keys.replies(uuid.uuid4().hex)
        """Where the jobs this process creates publish their events too (`replies`)."""
        self._replies_ready = asyncio.Event()
        self._replies: dict[str, list[JobWatch]] = {}
        """Per job key, the watches fed from the reply channel."""
        self._reader: asyncio.Task[None] | None = None

    @property
    def watching(self) -> int:
        """How many jobs are being watched right now."""
        return len(self._watches) + len(self._replies)

    async def start(self) -> None:
        try:
            await self._pubsub.connect()  # now, so calls never race the reader to create the connection
            await self._pubsub.subscribe(self.reply_channel)
        except (*REDIS_ERRORS, OSError) as exc:
            logger.warning("Redis is unavailable at start-up (%r); the listener keeps trying", exc)
        self._reader = asyncio.create_task(self._read_forever(), name="mcp-jobs-listener")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()

    @asynccontextmanager
    async def replies(self, job_id: str) -> AsyncIterator[JobWatch]:
        """Watch a job that will be created with `reply_to=self.reply_channel`: no Redis command,
        once the reply channel's subscription is confirmed (at start, or after an outage)."""
        async with asyncio.timeout(self._subscribe_timeout):
            await self._replies_ready.wait()
        key = self._keys.job(job_id)
        watch = JobWatch(key)
        watches = self._replies.setdefault(key, [])
        watches.append(watch)
        try:
            yield watch
        finally:
            watches.remove(watch)
            if not watches:
                del self._replies[key]

    async def _subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)

    async def _unsubscribe(self, channel: str) -> None:
        await self._pubsub.unsubscribe(channel)

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._pubsub.connect()
                subscribed = self._pubsub.channels
                if self.reply_channel not in subscribed and self.reply_channel.encode() not in subscribed:
                    # Redis was away at start-up (later, redis-py re-subscribes on reconnect itself)
                    await self._pubsub.subscribe(self.reply_channel)
                while True:
                    # `get_message` is `parse_response` + `handle_message`; an event (nearly every
                    # reply) skips the latter's dict and bookkeeping, which only the subscription
                    # replies need.
                    reply = await self._pubsub.parse_response(block=True)
                    failures = 0
                    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                        self._route_event(reply[1], reply[2])
                    elif (message := await self._pubsub.handle_message(reply)) is not None:
                        self._route(message)
            except asyncio.CancelledError:
                raise
            except (*REDIS_ERRORS, OSError) as exc:
                if failures == 0:
                    # Events may be lost from here on, and Redis may be gone: every follower reads
                    # its job now, which tells it whether Redis answers (see `deadlines.py`).
                    self._resync(self._replies)
                    self._resync(self._watches)
                delay = reconnect_delay(failures)
                failures += 1
                logger.warning("pub/sub connection lost (%r); reconnecting in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            except Exception:
                delay = reconnect_delay(failures)
                failures += 1
                logger.exception("unexpected error in the pub/sub reader; continuing in %.1f s", delay)
                await asyncio.sleep(delay)

    def _route_event(self, channel: bytes | str, data: bytes | str) -> None:
        """Queue an event for the watches of its job (unparsed: see `JobWatch`)."""
        name = channel.decode() if isinstance(channel, bytes) else channel
        if name == self.reply_channel:
            key, _, data = (data.encode() if isinstance(data, str) else data).partition(b"\n")
            watches = self._replies.get(key.decode(), [])
        else:
            watches = self._watches.get(name, [])
        for watch in watches:
            watch.put(data)

    def _route(self, message: dict[str, object]) -> None:
        """Act on a reply other than an event: a subscription confirmed, first or again."""
        channel, kind = message.get("channel"), message["type"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind == "message" and isinstance(channel, str) and isinstance(message["data"], bytes | str):
            self._route_event(channel, message["data"])
        elif kind != "subscribe":
            return
        elif channel == self.reply_channel:
            if self._replies_ready.is_set():  # re-subscribed after a reconnect: re-read the snapshots
                self._resync(self._replies)
            self._replies_ready.set()
        elif isinstance(channel, str):
            self._confirmed(channel)
