"""An external subscriber with a tenant-scoped RabbitMQ user sees its tenant's events and nothing else."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused

from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import new_event
from shared.events.directory import UserUpserted
from tests.support.infra import wait_until


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def acme_user(test_env):
    # hex: a password from token_urlsafe may start with "-", which rabbitmqctl reads as an option (exit 64)
    user, password = f"acme-sub-{test_env.token}", secrets.token_hex(12)
    ns = test_env.namespace.replace(".", r"\.")
    exchange = test_env.namespace + "learn.events"
    rabbitmqctl("add_user", user, password)
    try:
        # own queues named acme.* only; may read (bind from) the events exchange; may write nowhere else
        rabbitmqctl("set_permissions", "-p", "/", user, r"^acme\..*", r"^acme\..*", rf"^(acme\..*|{ns}learn\.events)$")
        rabbitmqctl("set_topic_permissions", "-p", "/", user, exchange, r"^acme\.", r"^acme\.")
        yield user, password
    finally:
        rabbitmqctl("delete_user", user)


def _event(tenant: str, user_id: int):
    return new_event("user.upserted", UserUpserted(user_id=user_id, name="N", email="n@example.com", revision=1,
                                                   updated_at="2026-06-02T10:00:00Z"),
                     service="gateway", tenant=tenant, tenant_id=1 if tenant == "acme" else 2)


async def test_tenant_scoped_user_receives_its_tenant_events_and_cannot_bind_another(test_env, acme_user):
    user, password = acme_user
    publisher = AmqpBus(test_env.amqp_url, service="test", namespace=test_env.namespace)
    await publisher.connect()  # declares the exchanges
    queue_name = f"acme.sub-{test_env.token}"
    url = test_env.amqp_url.replace("guest:guest", f"{user}:{password}")
    connection = await aio_pika.connect(url)
    received: list[dict] = []
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(test_env.namespace + "learn.events", ensure=False)
        queue = await channel.declare_queue(queue_name, auto_delete=True)
        await queue.bind(exchange, routing_key="acme.#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                received.append(json.loads(message.body))

        await queue.consume(on_message)
        acme, globex = _event("acme", 1), _event("globex", 2)
        await publisher.publish_many([OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in (globex, acme)])
        await wait_until(lambda: received, timeout=10, message="acme's event")
        await asyncio.sleep(0.5)
        assert [e["id"] for e in received] == [acme.id]
        assert received[0]["tenant"] == "acme"

        other = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await queue.bind(await other.get_exchange(test_env.namespace + "learn.events", ensure=False),
                             routing_key="globex.#")
        third = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await third.declare_queue("globex.spy", auto_delete=True)
    finally:
        await connection.close()
        await publisher.close()
