"""Dead-letter queues: list, inspect, replay and purge (the admin API's ``/dlq`` and ``learnctl dlq``).

RabbitMQ: plain AMQP through aio-pika (``basic.get``), no management plugin needed. Inspecting takes messages
without acking them and closes the channel, which hands them back. Replaying republishes the body unchanged
(same event id) to ``learn.events`` with its original routing key; consumers' inboxes make that safe.
The embedded default keeps dead letters in the in-process bus; the same operations work on it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import aio_pika
import structlog

from shared.bus.amqp import OutgoingMessage
from shared.bus.envelope import CloudEvent
from shared.bus.topology import EVENTS_EXCHANGE, QUEUES, QueueSpec

log = structlog.get_logger("gateway.dlq")


class DeadLetters(Protocol):
    async def summary(self, service: str | None) -> list[dict[str, Any]]: ...
    async def peek(self, spec: QueueSpec, limit: int) -> list[dict[str, Any]]: ...
    async def replay(self, spec: QueueSpec, limit: int) -> int: ...
    async def purge(self, spec: QueueSpec) -> int: ...


def spec_of(name: str) -> QueueSpec | None:
    """The queue a name (``<service>.<purpose>``, or its ``.dlq``) stands for; None if there is none."""
    base = name.removesuffix(".dlq")
    for spec in QUEUES:
        if spec.name == base:
            return spec
    return None


def specs_for(service: str | None) -> list[QueueSpec]:
    return [s for s in QUEUES if service is None or s.service == service]


def _describe(body: bytes, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"bytes": len(body)}
    try:
        event = CloudEvent.from_bytes(body)
        info.update(event_id=event.id, type=event.event_type, tenant=event.tenant, subject=event.subject,
                    time=event.time, request_id=event.requestid, routing_key=event.routing_key, data=event.data)
    except Exception:
        info["body"] = body[:2000].decode("utf-8", "replace")
    deaths = (headers or {}).get("x-death")
    if deaths:
        first = deaths[0]
        info["death"] = {"reason": str(first.get("reason", "")), "queue": str(first.get("queue", "")),
                         "count": int(first.get("count", 0) or 0)}
    return info


def _original_routing_key(body: bytes, headers: dict[str, Any] | None) -> str:
    deaths = (headers or {}).get("x-death") or []
    for death in deaths:
        keys = death.get("routing-keys") or []
        if keys:
            return str(keys[0])
    return CloudEvent.from_bytes(body).routing_key


class AmqpDeadLetters:
    def __init__(self, url: str, namespace: str):
        self.url = url
        self.namespace = namespace
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def _conn(self) -> aio_pika.abc.AbstractRobustConnection:
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(
                self.url, client_properties={"connection_name": "learn-gateway-dlq"}, timeout=10)
        return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def _queue(self, channel: aio_pika.abc.AbstractChannel, spec: QueueSpec) -> Any:
        return await channel.declare_queue(self.namespace + spec.dead_letter_name, passive=True)

    async def summary(self, service: str | None) -> list[dict[str, Any]]:
        conn = await self._conn()
        out = []
        for spec in specs_for(service):
            channel = await conn.channel()
            try:
                queue = await self._queue(channel, spec)
                count: int | None = queue.declaration_result.message_count
            except aio_pika.exceptions.ChannelClosed:
                count = None  # not declared yet: its service never started on this broker
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
            out.append({"queue": spec.name, "dead_letter_queue": spec.dead_letter_name, "service": spec.service,
                        "messages": count or 0, "declared": count is not None})
        return out

    async def peek(self, spec: QueueSpec, limit: int) -> list[dict[str, Any]]:
        conn = await self._conn()
        channel = await conn.channel()
        out = []
        try:
            queue = await self._queue(channel, spec)
            for _ in range(limit):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                out.append(_describe(message.body, dict(message.headers or {})))
        except aio_pika.exceptions.ChannelClosed:
            return []
        finally:
            with contextlib.suppress(Exception):
                await channel.close()  # unacked messages go back to the queue, in order
        return out

    async def replay(self, spec: QueueSpec, limit: int) -> int:
        conn = await self._conn()
        channel = await conn.channel(publisher_confirms=True)
        replayed = 0
        try:
            queue = await self._queue(channel, spec)
            exchange = await channel.get_exchange(self.namespace + EVENTS_EXCHANGE)
            for _ in range(limit):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                key = _original_routing_key(message.body, dict(message.headers or {}))
                await exchange.publish(
                    aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     message_id=message.message_id, content_type="application/cloudevents+json"),
                    routing_key=key,
                )
                await message.ack()  # only after the broker confirmed the republish
                replayed += 1
                log.info("dead_letter_replayed", queue=spec.dead_letter_name, routing_key=key,
                         message_id=message.message_id)
        except aio_pika.exceptions.ChannelClosed:
            return replayed
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return replayed

    async def purge(self, spec: QueueSpec) -> int:
        conn = await self._conn()
        channel = await conn.channel()
        try:
            queue = await self._queue(channel, spec)
            result = await queue.purge()
            return int(getattr(result, "message_count", 0) or 0)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        finally:
            with contextlib.suppress(Exception):
                await channel.close()


class InProcessDeadLetters:
    """The embedded default's dead letters, held by the shared in-process bus."""

    def __init__(self, bus: Any):
        self.bus = bus

    def _letters(self, spec: QueueSpec) -> list[bytes]:
        queue = self.bus.queues.get(spec.name)
        return queue.dead_letters if queue is not None else []

    async def summary(self, service: str | None) -> list[dict[str, Any]]:
        return [{"queue": s.name, "dead_letter_queue": s.dead_letter_name, "service": s.service,
                 "messages": len(self._letters(s)), "declared": s.name in self.bus.queues}
                for s in specs_for(service)]

    async def peek(self, spec: QueueSpec, limit: int) -> list[dict[str, Any]]:
        return [_describe(body) for body in self._letters(spec)[:limit]]

    async def replay(self, spec: QueueSpec, limit: int) -> int:
        letters = self._letters(spec)
        taken = letters[:limit]
        for body in taken:
            event = CloudEvent.from_bytes(body)
            await self.bus.publish_many([OutgoingMessage(event.routing_key, body, event.id)])
        del letters[: len(taken)]
        return len(taken)

    async def purge(self, spec: QueueSpec) -> int:
        letters = self._letters(spec)
        count = len(letters)
        letters.clear()
        return count
