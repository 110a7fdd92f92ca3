"""Revocations from other replicas: every replica drops a revoked key from its cache as soon as any replica
revokes one (the cache TTL is the backstop).

Not a work queue of the topology (``shared/bus/topology.QUEUES``): each replica needs every ``api_key.revoked``,
so it listens on a queue of its own, exclusive and gone with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import aio_pika
import structlog

from services.gateway.keys import KeyDirectory
from shared.bus.envelope import CloudEvent
from shared.bus.inprocess import InProcessBus
from shared.bus.topology import EVENTS_EXCHANGE
from shared.config import CommonSettings
from shared.events.directory import ApiKeyRevoked
from shared.service import Bus

log = structlog.get_logger("gateway")

REVOKED_BINDING = "*." + ApiKeyRevoked.event_type


async def listen(common: CommonSettings, bus: Bus, keys_of: Callable[[], KeyDirectory]) -> None:
    """Forget each revoked key on this replica, forever."""

    def on_event(body: bytes) -> None:
        try:
            event = CloudEvent.from_bytes(body)
            keys_of().forget_key(int(event.data["key_id"]))
        except Exception as exc:
            log.warning("revocation_event_unreadable", error=repr(exc))

    if isinstance(bus, InProcessBus):
        taps = bus.tap(REVOKED_BINDING)
        while True:
            on_event(await taps.get())
    assert common.amqp_url is not None
    while True:
        try:
            connection = await aio_pika.connect_robust(
                common.amqp_url, client_properties={"connection_name": "learn-gateway-revocations"}, timeout=10)
            try:
                channel = await connection.channel()
                exchange = await channel.declare_exchange(common.amqp_namespace + EVENTS_EXCHANGE,
                                                          aio_pika.ExchangeType.TOPIC, durable=True)
                # One queue per replica, gone with it: every replica hears every revocation.
                name = f"{common.amqp_namespace}gateway.revocations.{uuid.uuid4().hex[:12]}"
                queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
                await queue.bind(exchange, routing_key=REVOKED_BINDING)
                async with queue.iterator() as messages:
                    async for message in messages:
                        async with message.process():
                            on_event(message.body)
            finally:
                await asyncio.shield(connection.close())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("revocation_listener_failed", error=repr(exc))
            await asyncio.sleep(2)
