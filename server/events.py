"""The `subscriptions/listen` bus over Redis pub/sub, so that any replica's streams hear an event.

The SDK's `ListenHandler` serves each 2026-07-28 listen stream from a `SubscriptionBus`; its own
is in-process. This one publishes server-wide events (a tool, prompt or resource list changed) on
the namespace's events channel (`<ns>:events`), where every server process relays them to its
local streams, and a worker can publish too (the message is the notification's method, and its
`uri` for a resource). A job's own changes (`ResourceUpdated` for `mcp-jobs://` URIs) are not
broadcast: the replica holding a stream follows those jobs through Redis itself
(`resources.py`) and publishes them to its local streams only (`publish_here`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
import redis.asyncio as aioredis
from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent
from mcp.shared.subscriptions import event_from_wire, event_to_notification

from mcp_jobs.redis_connect import REDIS_ERRORS, publish
from mcp_jobs.server.listener import Listener

logger = logging.getLogger(__name__)

RELAY_RETRY = 1.0
"""Seconds before the relay tries again to subscribe while Redis is away."""


def encode(event: ServerEvent) -> str:
    """An event as the events channel carries it: its notification's method (and `uri`)."""
    notification = event_to_notification(event, {}).model_dump(by_alias=True, mode="json", exclude_none=True)
    params = {key: value for key, value in (notification.get("params") or {}).items() if key == "uri"}
    return json.dumps({"method": notification["method"], "params": params}, separators=(",", ":"))


def decode(raw: bytes | str) -> ServerEvent | None:
    """The event a message of the events channel announces (None: not one)."""
    try:
        data = json.loads(raw)
        return event_from_wire(str(data["method"]), data.get("params"))
    except (ValueError, KeyError, TypeError):
        return None


class RedisSubscriptionBus:
    """A `SubscriptionBus` whose events reach the listen streams of every server process."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._local = InMemorySubscriptionBus()
        self._client: aioredis.Redis | None = None

    async def publish(self, event: ServerEvent) -> None:
        """Publish to every replica (to this process only until the relay runs)."""
        if self._client is None:
            await self._local.publish(event)
            return
        try:
            await publish(self._client, self._channel, encode(event))
        except REDIS_ERRORS as exc:
            logger.warning("could not publish %r to the other replicas (%r); publishing here", event, exc)
            await self._local.publish(event)

    async def publish_here(self, event: ServerEvent) -> None:
        """Publish to this process's streams only."""
        await self._local.publish(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        return self._local.subscribe(listener)

    async def relay(self, listener: Listener, client: aioredis.Redis) -> None:
        """Deliver the events channel to this process's streams, for as long as the server runs,
        on the process's one pub/sub connection (events published while Redis is away are lost,
        as the spec allows: clients refetch). Redis away at the start is waited out."""
        self._client = client
        while True:
            try:
                async with listener.watch_channel(self._channel) as watch:
                    while True:
                        item = await watch.next_raw()
                        if isinstance(item, bytes | str) and (event := decode(item)) is not None:
                            await self._local.publish(event)
            except (*REDIS_ERRORS, OSError, TimeoutError) as exc:
                logger.warning("could not subscribe to the events channel (%r); trying again", exc)
                await anyio.sleep(RELAY_RETRY)
