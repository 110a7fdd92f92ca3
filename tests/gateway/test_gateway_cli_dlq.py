"""learnctl against a running gateway, and the dead-letter operations behind ``learnctl dlq`` on RabbitMQ."""

from __future__ import annotations

import asyncio
import json

import aio_pika

from services.gateway.cli import main as learnctl
from shared.bus.amqp import AmqpBus
from shared.bus.envelope import new_event
from shared.bus.topology import queue as queue_spec
from tests.gateway.conftest import ADMIN_TOKEN


async def ctl(gw, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    url = str(gw.client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(learnctl, ["--url", url, "--token", ADMIN_TOKEN, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_learnctl_makes_a_tenant_and_a_key_that_works(gw, capsys):
    code, out, _ = await ctl(gw, capsys, "tenants", "create", "acme", "--name", "Acme", "--plan", "pro")
    assert code == 0 and "acme" in out
    code, out, _ = await ctl(gw, capsys, "--json", "keys", "create", "acme", "--name", "shop",
                             "--scope", "learn:read,learn:write")
    assert code == 0
    key = json.loads(out)["key"]
    assert (await gw.api("GET", "/api/v1/learn/courses", key)).status == 200
    code, out, _ = await ctl(gw, capsys, "keys", "list", "acme")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split()[:3] == ["ID", "NAME", "PREFIX"]
    assert key[:12] in row and key not in out


async def test_learnctl_lists_updates_and_revokes(gw, capsys):
    await gw.tenant("acme")
    created = await gw.key("acme")
    code, out, _ = await ctl(gw, capsys, "tenants", "update", "acme", "--plan", "sovereign")
    assert code == 0 and "sovereign" in out
    code, out, _ = await ctl(gw, capsys, "--json", "tenants", "list")
    assert [t["slug"] for t in json.loads(out)] == ["acme"]
    code, out, _ = await ctl(gw, capsys, "users", "upsert", "acme", "7", "--name", "Ada", "--email", "ada@example.com")
    assert code == 0
    code, out, _ = await ctl(gw, capsys, "--json", "users", "list", "acme")
    assert json.loads(out)[0]["name"] == "Ada"
    code, out, _ = await ctl(gw, capsys, "keys", "revoke", "acme", str(created["id"]))
    assert code == 0 and "revoked" in out
    assert (await gw.api("GET", "/api/v1/learn/courses", created["key"])).status == 401


async def test_learnctl_reports_api_errors_readably(gw, capsys):
    code, _, err = await ctl(gw, capsys, "tenants", "get", "nope")
    assert code == 1
    assert "tenant_not_found" in err and "req_" in err
    url = str(gw.client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(learnctl, ["--url", url, "--token", "wrong", "tenants", "list"])
    assert code == 1
    assert "invalid_api_key" in capsys.readouterr().err


async def dead_letter(env, event) -> None:
    """Put ``event`` in certificates.issue's dead-letter queue, as the broker would after too many failures."""
    bus = AmqpBus(env.amqp_url, service="test", namespace=env.namespace)
    await bus.connect(retry_forever=False)
    try:
        channel = await bus._connection.channel()  # type: ignore[union-attr]
        spec = queue_spec("certificates", "issue")
        await bus.declare_queue(channel, spec)
        await channel.default_exchange.publish(
            aio_pika.Message(event.to_bytes(), message_id=event.id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=env.namespace + spec.dead_letter_name)
        await channel.close()
    finally:
        await bus.close()


async def test_dead_letters_are_listed_shown_replayed_and_purged(gw, capsys, events):
    event = new_event("enrollment.completed", {"enrollment_id": 1}, service="enrollment", tenant="acme", tenant_id=1)
    await dead_letter(gw.env, event)
    await dead_letter(gw.env, new_event("enrollment.completed", {"enrollment_id": 2}, service="enrollment",
                                        tenant="acme", tenant_id=1))
    code, out, _ = await ctl(gw, capsys, "--json", "dlq", "list", "--service", "certificates")
    counts = {q["queue"]: q["messages"] for q in json.loads(out)}
    assert counts["certificates.issue"] == 2
    code, out, _ = await ctl(gw, capsys, "--json", "dlq", "show", "--queue", "certificates.issue")
    shown = json.loads(out)[0]["messages"]
    assert [m["event_id"] for m in shown][:1] == [event.id]
    code, out, _ = await ctl(gw, capsys, "dlq", "show", "--queue", "certificates.issue")
    assert "2 message(s)" in out  # showing does not consume
    code, out, _ = await ctl(gw, capsys, "dlq", "replay", "--queue", "certificates.issue", "--limit", "1")
    assert "replayed 1" in out
    replayed = await events.wait_for("enrollment.completed")
    assert replayed[0].id == event.id and replayed[0].routing_key == "acme.enrollment.completed"
    code, _, err = await ctl(gw, capsys, "dlq", "purge", "--service", "certificates")
    assert code == 1 and "--yes" in err
    code, out, _ = await ctl(gw, capsys, "dlq", "purge", "--queue", "certificates.issue", "--yes")
    assert "purged 1" in out
    code, out, _ = await ctl(gw, capsys, "--json", "dlq", "list", "--service", "certificates")
    assert {q["queue"]: q["messages"] for q in json.loads(out)}["certificates.issue"] == 0


async def test_an_unknown_dead_letter_queue_is_404(gw):
    resp = await gw.client.get("/admin/api/v1/dlq/nope.nothing", headers=gw.admin())
    assert resp.status == 404
