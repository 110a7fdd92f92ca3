"""Self-service AMQP subscribers (issue 19) through the gateway's admin API, on the real broker: the user made
through RabbitMQ's management API binds its tenant's routing keys and nothing else, is listed without its
password, rotates, and loses its connections when deleted; tenants cannot see or touch each other's; and a
deployment without RabbitMQ says why there are none."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import pytest
from aio_pika.exceptions import ProbableAuthenticationError
from aiormq.exceptions import ChannelAccessRefused

from services.gateway import cli
from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import new_event
from shared.events.directory import UserUpserted
from tests.support import infra

ADMIN = "/admin/api/v1"
#: the broker's management API (the plugin must be enabled: `rabbitmq-plugins enable rabbitmq_management`; .ci/run)
MANAGEMENT = infra.management_url()
API, GUEST = infra.management_api()


async def _management_users(prefix: str) -> list[str]:
    try:
        async with aiohttp.ClientSession(headers=GUEST) as session, session.get(f"{API}/users") as resp:
            assert resp.status == 200, await resp.text()
            users = await resp.json()
    except aiohttp.ClientConnectionError:
        pytest.fail(infra.management_unreachable(API), pytrace=False)
    return [u["name"] for u in users if u["name"].startswith(prefix)]


@pytest.fixture
async def gws(make_gateway, test_env) -> AsyncIterator[Any]:
    """A gateway given the management API; afterwards no user of this test's namespace is left on the broker."""
    await _management_users(test_env.namespace)  # says what is missing when the plugin is off
    gw = await make_gateway(rabbitmq_management_url=MANAGEMENT)
    yield gw
    leftovers = await _management_users(test_env.namespace)
    async with aiohttp.ClientSession(headers=GUEST) as session:
        for name in leftovers:
            async with session.delete(f"{API}/users/{name}"):
                pass
    assert not leftovers, f"users left behind: {leftovers}"


async def call(gw: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    headers = kw.pop("headers", gw.admin())
    resp = await gw.client.request(method, f"{ADMIN}{path}", headers=headers, **kw)
    return resp.status, await resp.json()


def _event(tenant: str, user_id: int) -> Any:
    return new_event("user.upserted", UserUpserted(user_id=user_id, name="N", email="n@example.com", revision=1,
                                                   updated_at="2026-06-02T10:00:00Z"),
                     service="gateway", tenant=tenant, tenant_id=1 if tenant == "acme" else 2)


async def test_a_subscriber_binds_its_tenants_keys_only_rotates_and_is_cut_off_when_deleted(gws, test_env) -> None:
    gw = gws
    await gw.tenant("acme")
    await gw.tenant("globex")
    status, body = await call(gw, "POST", "/tenants/acme/event-subscribers", json={"name": "hr"})
    assert status == 201, body
    created = body["data"]
    assert created["name"] == "hr" and created["tenant"] == "acme" and created["queue_prefix"] == "acme."
    assert created["exchange"] == test_env.namespace + "learn.events"
    url = created["amqp_url"]
    assert url.startswith(f"amqp://{test_env.namespace}learn-sub.acme.hr:") and url.endswith("@127.0.0.1:5672/%2F")

    publisher = AmqpBus(test_env.amqp_url, service="test", namespace=test_env.namespace)
    await publisher.connect()  # declares the exchanges
    connection = await aio_pika.connect(url)
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    queue_name = f"acme.sub-{test_env.token}"
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(created["exchange"], ensure=False)
        queue = await channel.declare_queue(queue_name)  # outlives the connections closed below
        await queue.bind(exchange, routing_key="acme.#")
        acme, globex = _event("acme", 1), _event("globex", 2)
        inbox: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await inbox.put(message.body)

        await queue.consume(on_message)
        await publisher.publish_many([OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in (globex, acme)])
        assert json.loads(await asyncio.wait_for(inbox.get(), timeout=30))["id"] == acme.id

        for key in ("#", "globex.#", "*.user.upserted"):
            other = await connection.channel()
            with pytest.raises(ChannelAccessRefused):
                await (await other.declare_queue(queue_name, passive=True)).bind(
                    await other.get_exchange(created["exchange"], ensure=False), routing_key=key)
        other = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await other.declare_queue(f"globex.spy-{test_env.token}", auto_delete=True)
        other = await connection.channel()
        with pytest.raises(ChannelAccessRefused):  # nor (re)declare the events exchange
            await other.declare_exchange(created["exchange"], aio_pika.ExchangeType.TOPIC, durable=True,
                                         passive=False)

        # listed and read without the password; invisible to another tenant
        status, body = await call(gw, "GET", "/tenants/acme/event-subscribers")
        assert status == 200 and [s["name"] for s in body["data"]] == ["hr"]
        assert "amqp_url" not in body["data"][0] and "password" not in json.dumps(body)
        status, body = await call(gw, "GET", "/tenants/acme/event-subscribers/hr")
        assert status == 200 and body["data"]["username"] == f"{test_env.namespace}learn-sub.acme.hr"
        status, body = await call(gw, "GET", "/tenants/globex/event-subscribers")
        assert status == 200 and body["data"] == []
        for method, path in (("GET", "/hr"), ("DELETE", "/hr"), ("POST", "/hr/rotate")):
            status, body = await call(gw, method, "/tenants/globex/event-subscribers" + path)
            missing_status, missing = await call(gw, method, "/tenants/globex/event-subscribers"
                                                 + path.replace("/hr", "/nope"))
            assert (status, missing_status) == (404, 404), (method, body)
            assert body["error"]["code"] == missing["error"]["code"] == "event_subscriber_not_found"
            assert body["error"]["message"] == missing["error"]["message"]
        assert not closed.is_set()  # globex's calls did nothing to acme's subscriber

        # a name is taken once
        status, body = await call(gw, "POST", "/tenants/acme/event-subscribers", json={"name": "hr"})
        assert status == 409 and body["error"]["code"] == "event_subscriber_exists"

        # rotate: a new password works, the old one does not, the open connection is closed
        status, body = await call(gw, "POST", "/tenants/acme/event-subscribers/hr/rotate")
        assert status == 200, body
        rotated = body["data"]["amqp_url"]
        assert rotated != url
        await asyncio.wait_for(closed.wait(), timeout=30)
        with pytest.raises(ProbableAuthenticationError):
            await aio_pika.connect(url)
        connection = await aio_pika.connect(rotated)
        closed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: closed.set())
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)  # the permissions stayed
        await queue.bind(await channel.get_exchange(created["exchange"], ensure=False), routing_key="acme.course.*")
        other = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await (await other.declare_queue(queue_name, passive=True)).bind(
                await other.get_exchange(created["exchange"], ensure=False), routing_key="#")

        # delete: the user is gone and its open connection is closed
        status, body = await call(gw, "DELETE", "/tenants/acme/event-subscribers/hr")
        assert status == 200 and body["data"]["deleted"] is True, body
        await asyncio.wait_for(closed.wait(), timeout=30)
        with pytest.raises(ProbableAuthenticationError):
            await aio_pika.connect(rotated)
        status, body = await call(gw, "GET", "/tenants/acme/event-subscribers/hr")
        assert status == 404 and body["error"]["code"] == "event_subscriber_not_found"
        assert await _management_users(test_env.namespace) == []
    finally:
        await connection.close()
        await publisher.close()
        async with await aio_pika.connect(test_env.amqp_url) as admin_connection:
            await (await admin_connection.channel()).queue_delete(queue_name)


async def test_bad_requests_are_refused_without_creating_users(gws, test_env) -> None:
    gw = gws
    await gw.tenant("acme")
    for body in ({}, {"name": ""}, {"name": "Has Caps"}, {"name": "a.b"}, {"name": "x" * 64}, {"name": 5},
                 {"name": "ok", "extra": 1}, [], "text"):
        status, answer = await call(gw, "POST", "/tenants/acme/event-subscribers", json=body)
        assert status == 400, (body, answer)
        assert answer["error"]["code"] in ("invalid_argument", "missing_field"), answer
    for raw in (b"[" * 5000 + b"]" * 5000, b"{", b"\xff"):
        status, answer = await call(gw, "POST", "/tenants/acme/event-subscribers", data=raw,
                                    headers={**gw.admin(), "Content-Type": "application/json"})
        assert status == 400 and answer["error"]["code"] == "invalid_argument", answer
    status, answer = await call(gw, "POST", "/tenants/nope/event-subscribers", json={"name": "hr"})
    assert status == 404 and answer["error"]["code"] == "tenant_not_found"
    for path in ("/HR", "/a.b", "/%C2%B2"):
        status, answer = await call(gw, "GET", "/tenants/acme/event-subscribers" + path)
        assert status == 404 and answer["error"]["code"] == "event_subscriber_not_found", (path, answer)
    status, answer = await call(gw, "PATCH", "/tenants/acme/event-subscribers/hr", json={})
    assert status == 405
    # a tenant whose prefix would reach the system's own queues or exchanges gets no AMQP subscriber
    for slug in ("webhooks", "learn", test_env.namespace.rstrip(".")):
        await gw.tenant(slug)
        status, answer = await call(gw, "POST", f"/tenants/{slug}/event-subscribers", json={"name": "hr"})
        assert status == 409 and answer["error"]["code"] == "amqp_subscribers_unavailable", answer
    assert await _management_users(test_env.namespace) == []


async def test_the_routes_need_the_admin_token(gws) -> None:
    gw = gws
    await gw.tenant("acme")
    for method, path in (("POST", ""), ("GET", ""), ("GET", "/hr"), ("DELETE", "/hr"), ("POST", "/hr/rotate")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer mc_live_x"}):
            resp = await gw.client.request(method, f"{ADMIN}/tenants/acme/event-subscribers{path}",
                                           json={"name": "hr"}, headers=headers)
            assert resp.status == 401, (method, path)
            assert (await resp.json())["error"]["code"] == "invalid_api_key"


async def test_without_rabbitmq_or_its_management_api_the_answer_says_why(make_gateway, test_env) -> None:
    embedded = await make_gateway(common={"amqp_url": None}, rabbitmq_management_url=MANAGEMENT)
    await embedded.tenant("acme")
    status, body = await call(embedded, "POST", "/tenants/acme/event-subscribers", json={"name": "hr"})
    assert status == 409 and body["error"]["code"] == "amqp_subscribers_unavailable"
    assert "RabbitMQ" in body["error"]["message"] and "webhook" in body["error"]["message"]
    status, body = await call(embedded, "GET", "/tenants/acme/event-subscribers")
    assert status == 409 and body["error"]["code"] == "amqp_subscribers_unavailable"

    unconfigured = await make_gateway()
    status, body = await call(unconfigured, "GET", "/tenants/acme/event-subscribers")
    assert status == 409 and "LEARN_RABBITMQ_MANAGEMENT_URL" in body["error"]["message"]

    unreachable = await make_gateway(rabbitmq_management_url="http://guest:guest@127.0.0.1:9")
    status, body = await call(unreachable, "POST", "/tenants/acme/event-subscribers", json={"name": "hr"})
    assert status == 503 and body["error"]["code"] == "service_unavailable", body
    assert "management" in body["error"]["message"]

    wrong = await make_gateway(rabbitmq_management_url="http://guest:wrong@127.0.0.1:15672")
    status, body = await call(wrong, "GET", "/tenants/acme/event-subscribers")
    assert status == 503 and body["error"]["code"] == "service_unavailable", body
    assert await _management_users(test_env.namespace) == []


async def test_learnctl_subscribers(gws, test_env, capsys: pytest.CaptureFixture[str]) -> None:
    gw = gws
    await gw.tenant("acme")
    base = str(gw.client.make_url("")).rstrip("/")

    async def learnctl(*args: str, code: int = 0) -> Any:
        capsys.readouterr()
        result = await asyncio.to_thread(cli.main, ["--url", base, "--token", "test-admin-token", "--json",
                                                    "subscribers", *args])
        out = capsys.readouterr()
        assert result == code, out.err
        return json.loads(out.out) if code == 0 else out.err

    created = await learnctl("create", "acme", "crm")
    assert created["name"] == "crm" and created["amqp_url"].startswith("amqp://")
    (listed,) = await learnctl("list", "acme")
    assert listed["name"] == "crm" and "amqp_url" not in listed
    rotated = await learnctl("rotate", "acme", "crm")
    assert rotated["amqp_url"] != created["amqp_url"]
    async with await aio_pika.connect(rotated["amqp_url"]):
        pass
    assert (await learnctl("delete", "acme", "crm"))["deleted"] is True
    assert "event_subscriber_not_found" in await learnctl("delete", "acme", "crm", code=1)
    assert await learnctl("list", "acme") == []


def test_the_url_permissions_and_reserved_prefixes_without_a_broker(tmp_path) -> None:
    from services.gateway.config import GatewaySettings
    from services.gateway.subscribers import AdminSubscribers
    from shared.config import CommonSettings

    common = CommonSettings(amqp_url="amqp://svc:secret@rabbit.internal:5672/learn", data_dir=tmp_path)
    settings = GatewaySettings(common=common, admin_token="t", api_key_pepper="p",
                               rabbitmq_management_url="http://admin:pw@rabbit.internal:15672",
                               rabbitmq_public_url="amqps://broker.example.com:5671")
    subs = AdminSubscribers(settings, lambda: None)  # type: ignore[arg-type,return-value]
    assert subs.vhost == "learn" and subs.prefix("acme") == "learn-sub.acme."
    url = subs.url_for("learn-sub.acme.hr", "a/b c")
    assert url == "amqps://learn-sub.acme.hr:a%2Fb%20c@broker.example.com:5671/learn"
    assert "secret" not in url and "svc" not in url
    permissions, topic = subs.permissions("acme-eu")
    assert permissions == {"configure": r"^acme-eu\..*", "write": r"^acme-eu\..*",
                           "read": r"^(acme-eu\..*|learn\.events)$"}
    assert topic == {"exchange": "learn.events", "write": r"^acme-eu\.", "read": r"^acme-eu\."}
    assert {"learn", "catalog", "enrollment", "certificates", "scorm", "webhooks", "gateway", "amq"} <= \
        subs.reserved_segments()
    assert "acme" not in subs.reserved_segments()

    default = AdminSubscribers(GatewaySettings(common=CommonSettings(amqp_url="amqp://svc:s@rabbit:5672/",
                                                                     data_dir=tmp_path),
                                               admin_token="t", api_key_pepper="p"), lambda: None)  # type: ignore
    assert default.url_for("u", "p") == "amqp://u:p@rabbit:5672/%2F"
