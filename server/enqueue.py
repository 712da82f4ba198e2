"""Putting a job on the broker: Celery's task message, queued in the same script as the job's
first snapshot when the broker is the Redis that holds the snapshots (the default).

Celery builds the message (`create_task_message`) and kombu's Redis channel routes and wraps it
exactly as `send_task` would: Celery sends a direct queue's message through kombu's anonymous
exchange, so its delivery is one LPUSH onto the queue's list. That LPUSH then runs inside the
script that writes the job's first snapshot (`AsyncJobStore.write(enqueue=...)`). Why: measured
on the server, `send_task` costs ~0.9 ms of Python per job (kombu makes a redis-py client per
publish) plus a round trip, and it blocks, so it ran on a worker thread (another ~0.3-1.5 ms hop
under load). In the script the job is queued if and only if its snapshot was written, in one round
trip from the event loop, and no thread is involved.

Any other broker (RabbitMQ, a second Redis), or a delivery kombu would make some other way than
one LPUSH (queue expiry, a global key prefix), goes through Celery's own `send_task` on a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from celery import Celery
from kombu.serialization import dumps

PERSISTENT = 2
"""kombu's delivery mode for a message that survives a broker restart (Celery's default)."""


def arguments_repr(job_id: str, arguments: dict[str, Any]) -> str:
    """What Celery shows of a job's arguments (`argsrepr`: worker logs, Flower, task events): their
    names, not their values, which can be anything a caller sent (a token, personal data). Also
    spares Celery a `saferepr` of every call's arguments."""
    return f"({job_id!r}, {{{', '.join(f'{name!r}: ...' for name in arguments)}}})"


@dataclass(frozen=True)
class QueueMessage:
    """One job's broker message, ready to push: the queue's list key and kombu's envelope."""

    key: str
    payload: str


class _Collector:
    """Stands in for kombu's Redis `PublishBatch`: the channel routes and serialises the message,
    then hands over the Redis commands that deliver it, which the caller runs itself."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))


class TaskMessages:
    """Builds jobs' messages with Celery and kombu's own Redis channel (opened once, on a thread:
    kombu pings Redis when it opens a channel)."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery
        # Read once: each lookup in Celery's layered configuration costs microseconds per call.
        self._serializer = str(celery.conf.task_serializer)
        self._sent_event = bool(celery.conf.task_send_sent_event)
        self._channel: Any = None
        self._opening = anyio.Lock()

    async def message(
        self, name: str, job_id: str, arguments: dict[str, Any], queue: str, headers: Mapping[str, str] | None = None
    ) -> QueueMessage | None:
        """The message that runs task `name` for `job_id` with `arguments` from `queue`, as
        `send_task(name, (job_id, arguments), argsrepr=arguments_repr(...), headers=headers)`
        would queue it (`headers`: the trace context, see `tracing.py`); None when kombu would
        deliver it otherwise than with one LPUSH (then `send_task` must)."""
        channel = await self._open()
        app = self._celery
        message_headers, properties, body, _ = app.amqp.create_task_message(
            job_id,
            name,
            (job_id, arguments),
            reply_to=app.thread_oid,
            create_sent_event=self._sent_event,
            ignore_result=None,  # as send_task leaves it: the task decides
            argsrepr=arguments_repr(job_id, arguments),
        )
        if headers:
            message_headers.update(headers)
        content_type, content_encoding, data = dumps(body, serializer=self._serializer)
        properties["delivery_mode"] = PERSISTENT
        envelope = channel.prepare_message(data, 0, content_type, content_encoding, message_headers, properties)
        collector = _Collector()
        channel.basic_publish(envelope, exchange="", routing_key=queue, _publish_batch=collector)
        match collector.commands:
            case [("lpush", (str() as key, str() as payload))] if not channel.global_keyprefix:
                return QueueMessage(key, payload)
            case _:
                return None

    async def _open(self) -> Any:
        if self._channel is not None:
            return self._channel
        async with self._opening:
            if self._channel is None:
                connection = self._celery.connection_for_write()
                self._channel = await anyio.to_thread.run_sync(lambda: connection.default_channel)
        return self._channel
