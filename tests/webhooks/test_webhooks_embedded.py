"""The webhooks service in the embedded default (SQLite, in-process bus): an event on the bus reaches an endpoint,
signed, and the delivery log records it (the same queries as on PostgreSQL, through SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime

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
