"""Key storage, revocation across replicas, usage stamps, and the directory events (user.upserted, api_key.revoked)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from services.gateway.app import DB_KEY, GATEWAY_KEY
from services.gateway.store import api_keys
from tests.support.infra import wait_until

COURSES = "/api/v1/learn/courses"


async def test_the_database_dump_does_not_contain_the_key(gw):
    await gw.tenant()
    created = await gw.key()
    plain = created["key"]
    assert plain.startswith("mc_live_") and len(plain) >= 48
    assert created["prefix"] == plain[:12]
    assert (await gw.api("GET", COURSES, plain)).status == 200
    url = make_url(gw.app[DB_KEY].url).set(drivername="postgresql")
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump (postgresql-client) is needed for this test"
    proc = await asyncio.create_subprocess_exec(
        pg_dump, "--data-only", "-d", url.render_as_string(hide_password=False),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    dump, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = dump.decode()
    assert "acme" in text  # the dump really holds the directory
    secret_part = plain[12:]
    assert plain not in text and secret_part not in text and secret_part[:16] not in text
    assert hashlib.sha256(plain.encode()).hexdigest() not in text  # not even an unkeyed hash


async def test_the_key_is_shown_once_and_never_listed(gw):
    await gw.tenant()
    created = await gw.key()
    listed = await (await gw.client.get("/admin/api/v1/tenants/acme/api-keys", headers=gw.admin())).json()
    one = await (await gw.client.get(f"/admin/api/v1/tenants/acme/api-keys/{created['id']}",
                                     headers=gw.admin())).json()
    for view in (listed["data"][0], one["data"]):
        assert "key" not in view
        assert view["prefix"] == created["prefix"]
        assert created["key"] not in str(view)


async def test_last_used_at_is_written_once_per_minute_not_per_request(gw):
    await gw.tenant()
    created = await gw.key()
    for _ in range(5):
        assert (await gw.api("GET", COURSES, created["key"])).status == 200
    await gw.app[GATEWAY_KEY].usage.flush()
    db = gw.app[DB_KEY]

    async def stamp():
        async with db.transaction() as session:
            return (await session.execute(sa.select(api_keys.c.last_used_at).where(
                api_keys.c.id == created["id"]))).scalar_one()

    first = await stamp()
    assert first is not None
    await asyncio.sleep(0.05)
    assert (await gw.api("GET", COURSES, created["key"])).status == 200
    await gw.app[GATEWAY_KEY].usage.flush()
    assert await stamp() == first
    listed = await (await gw.client.get("/admin/api/v1/tenants/acme/api-keys", headers=gw.admin())).json()
    assert listed["data"][0]["last_used_at"] is not None


async def test_a_revoked_key_fails_on_another_replica_within_five_seconds(make_gateway, events):
    one = await make_gateway()
    other = await make_gateway(key_cache_ttl=5.0)
    await one.tenant()
    created = await one.key()
    await wait_until(lambda: other.app[GATEWAY_KEY].keys is not None)
    assert (await other.api("GET", COURSES, created["key"])).status == 200  # now cached on the other replica
    started = time.monotonic()
    resp = await one.client.post(f"/admin/api/v1/tenants/acme/api-keys/{created['id']}/revoke", headers=one.admin())
    assert resp.status == 200
    assert (await resp.json())["data"]["status"] == "revoked"

    async def refused() -> bool:
        return (await other.api("GET", COURSES, created["key"])).status == 401

    await wait_until(refused, timeout=5.0, interval=0.1, message="revoked key refused on the other replica")
    assert time.monotonic() - started < 5.0
    revoked = await events.wait_for("api_key.revoked")
    assert revoked[0].data["key_id"] == created["id"]
    assert revoked[0].tenant == "acme"
    assert revoked[0].requestid == resp.headers["X-Request-Id"]


async def test_the_revocation_event_clears_other_replicas_before_the_ttl(make_gateway):
    one = await make_gateway()
    other = await make_gateway()
    await one.tenant()
    created = await one.key()
    other_keys = other.app[GATEWAY_KEY].keys
    other_keys.ttl = 3600.0  # only the event can clear it now
    assert (await other.api("GET", COURSES, created["key"])).status == 200
    await asyncio.sleep(0.5)  # the other replica's revocation queue is bound by now
    await one.client.post(f"/admin/api/v1/tenants/acme/api-keys/{created['id']}/revoke", headers=one.admin())

    async def refused() -> bool:
        return (await other.api("GET", COURSES, created["key"])).status == 401

    await wait_until(refused, timeout=5.0, interval=0.1, message="event-driven cache drop")


async def test_revoking_twice_returns_the_key_unchanged_and_publishes_once(gw, events):
    await gw.tenant()
    created = await gw.key()
    url = f"/admin/api/v1/tenants/acme/api-keys/{created['id']}/revoke"
    first = await (await gw.client.post(url, headers=gw.admin())).json()
    second = await (await gw.client.post(url, headers=gw.admin())).json()
    assert first["data"]["revoked_at"] == second["data"]["revoked_at"]
    await events.wait_for("api_key.revoked")
    await asyncio.sleep(0.5)
    assert len(events.of_type("api_key.revoked")) == 1


async def test_upserting_a_user_publishes_user_upserted_with_a_growing_revision(gw, events):
    await gw.tenant()
    url = "/admin/api/v1/tenants/acme/users/123"
    created = await gw.client.put(url, json={"name": "Ada", "email": "ada@example.com"}, headers=gw.admin())
    assert created.status == 201
    same = await gw.client.put(url, json={"name": "Ada", "email": "ada@example.com"}, headers=gw.admin())
    assert same.status == 200
    changed = await gw.client.put(url, json={"name": "Ada L.", "email": "ada@example.com"}, headers=gw.admin())
    assert changed.status == 200
    assert (await changed.json())["data"]["revision"] == 2
    upserts = await events.wait_for("user.upserted", count=2)
    await asyncio.sleep(0.3)
    assert [(e.data["user_id"], e.data["name"], e.data["revision"]) for e in events.of_type("user.upserted")] == [
        (123, "Ada", 1), (123, "Ada L.", 2)]
    assert upserts[0].routing_key == "acme.user.upserted"
    assert upserts[0].requestid == created.headers["X-Request-Id"]
