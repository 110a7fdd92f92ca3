"""The webhooks service in the embedded default (SQLite, in-process bus): an event on the bus reaches an endpoint,
signed, and the delivery log records it (the same queries as on PostgreSQL, through SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import Webhook

from services.webhooks import handlers
from services.webhooks.app import create_app
from services.webhooks.config import WebhooksSettings
from shared.bus.amqp import OutgoingMessage
from shared.bus.envelope import Origin, build_event
from shared.bus.inprocess import InProcessBus
from shared.config import CommonSettings
from shared.events.directory import TenantUpdated
from shared.service import DB_KEY
from shared.uow import UnitOfWork
from tests.support.infra import wait_until


async def test_an_event_is_delivered_signed_in_the_embedded_default(tmp_path) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=200)

    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", hook)
    receiver = TestServer(receiver_app, host="127.0.0.1")
    await receiver.start_server()
    bus = InProcessBus()
    common = CommonSettings(data_dir=tmp_path / "data", log_json=True)
    settings = WebhooksSettings(common=common, allow_http=True, allowed_networks="127.0.0.1/32", poll_interval=0.1)
    client = TestClient(TestServer(create_app(settings, bus=bus)))
    await client.start_server()
    try:
        await wait_until(lambda: "webhooks.events" in bus.queues, message="the webhooks consumer subscribed")
        uow = UnitOfWork(client.app[DB_KEY], deps=handlers.Deps(settings))
        origin = Origin(7, "solo")
        endpoint, secret = await handlers.create_endpoint(
            uow, origin, handlers.NewEndpoint(str(receiver.make_url("/hook")), event_types=["tenant.*"]))
        event = build_event(origin, TenantUpdated(status="suspended", updated_at=datetime.now(UTC)), service="test")
        await bus.publish_many([OutgoingMessage(event.routing_key, event.to_bytes(), event.id)])

        await wait_until(lambda: received, timeout=10, message="the webhook")
        body, headers = received[0]
        assert Webhook(secret).verify(body, headers)["id"] == event.id

        async def logged() -> bool:
            rows, tries = await handlers.list_messages(uow, origin, endpoint.id, 10, None, None)
            return rows[0].status == "delivered" and len(tries[rows[0].id]) == 1

        await wait_until(logged, message="the delivery logged")
    finally:
        await client.close()
        await receiver.close()
        await bus.close()


async def test_a_change_to_an_endpoint_applies_to_the_next_delivery(tmp_path) -> None:
    """The delivery loop keeps endpoint rows between claims (read again when their updated_at moves): after a
    delivery, a new URL and a rotated secret apply to the very next message."""
    received: dict[str, list[tuple[bytes, dict[str, str]]]] = {"/one": [], "/two": []}

    async def hook(request: web.Request) -> web.Response:
        received[request.path].append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    receiver_app = web.Application()
    receiver_app.router.add_post("/one", hook)
    receiver_app.router.add_post("/two", hook)
    receiver = TestServer(receiver_app, host="127.0.0.1")
    await receiver.start_server()
    bus = InProcessBus()
    common = CommonSettings(data_dir=tmp_path / "data", log_json=True)
    settings = WebhooksSettings(common=common, allow_http=True, allowed_networks="127.0.0.1/32", poll_interval=0.1)
    client = TestClient(TestServer(create_app(settings, bus=bus)))
    await client.start_server()
    origin = Origin(8, "solo")

    async def publish() -> str:
        event = build_event(origin, TenantUpdated(status="active", updated_at=datetime.now(UTC)), service="test")
        await bus.publish_many([OutgoingMessage(event.routing_key, event.to_bytes(), event.id)])
        return event.id

    try:
        await wait_until(lambda: "webhooks.events" in bus.queues, message="the webhooks consumer subscribed")
        uow = UnitOfWork(client.app[DB_KEY], deps=handlers.Deps(settings))
        endpoint, first_secret = await handlers.create_endpoint(
            uow, origin, handlers.NewEndpoint(str(receiver.make_url("/one"))))
        first = await publish()
        await wait_until(lambda: received["/one"], timeout=10, message="the first webhook")
        assert Webhook(first_secret).verify(*received["/one"][0])["id"] == first

        await handlers.update_endpoint(uow, origin, endpoint.id,
                                       handlers.EndpointChanges(url=str(receiver.make_url("/two"))))
        _, second_secret = await handlers.rotate_secret(uow, origin, endpoint.id)
        second = await publish()
        await wait_until(lambda: received["/two"], timeout=10, message="the second webhook, at the new URL")
        body, headers = received["/two"][0]
        assert len(headers["webhook-signature"].split(" ")) == 2  # the new secret and, in the overlap, the old
        assert Webhook(second_secret).verify(body, headers)["id"] == second
        assert Webhook(first_secret).verify(body, headers)["id"] == second
        assert len(received["/one"]) == 1
    finally:
        await client.close()
        await receiver.close()
        await bus.close()


async def test_a_batch_of_events_fans_out_at_commit_and_a_rollback_writes_nothing(tmp_path) -> None:
    """The consumer runs the handler for every event of a batch in one transaction; the delivery rows are written
    when it commits (one insert for the batch), per tenant and filter, and not at all when it rolls back."""
    common = CommonSettings(data_dir=tmp_path / "data", log_json=True)
    settings = WebhooksSettings(common=common, allow_http=True, allowed_networks="127.0.0.1/32", poll_interval=60)
    client = TestClient(TestServer(create_app(settings, bus=InProcessBus())))
    await client.start_server()
    try:
        db = client.app[DB_KEY]
        uow = UnitOfWork(db, deps=handlers.Deps(settings))
        a, b = Origin(21, "alpha"), Origin(22, "beta")
        every_a, _ = await handlers.create_endpoint(uow, a, handlers.NewEndpoint("http://127.0.0.1:9/a"))
        users_a, _ = await handlers.create_endpoint(
            uow, a, handlers.NewEndpoint("http://127.0.0.1:9/u", event_types=["user.*"]))
        every_b, _ = await handlers.create_endpoint(uow, b, handlers.NewEndpoint("http://127.0.0.1:9/b"))

        payload = TenantUpdated(status="active", updated_at=datetime.now(UTC))

        def tenant_event(origin: Origin) -> Any:
            return build_event(origin, payload, service="test")

        batch = [tenant_event(a), tenant_event(b), tenant_event(a)]
        async with db.transaction() as session:
            for event in batch:
                await handlers.event_received(UnitOfWork.joined(session, deps=handlers.Deps(settings)), event, payload)

        async def webhook_ids(origin: Origin, endpoint_id: int) -> list[str]:
            rows, _ = await handlers.list_messages(uow, origin, endpoint_id, 100, None, None)
            return sorted(r.webhook_id for r in rows)

        assert await webhook_ids(a, every_a.id) == sorted([batch[0].id, batch[2].id])
        assert await webhook_ids(a, users_a.id) == []  # filtered to user.*
        assert await webhook_ids(b, every_b.id) == [batch[1].id]

        lost = tenant_event(b)
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                await handlers.event_received(UnitOfWork.joined(session, deps=handlers.Deps(settings)), lost, payload)
                raise RuntimeError("the consumer's transaction fails")
        assert await webhook_ids(b, every_b.id) == [batch[1].id]
    finally:
        await client.close()
