"""Key problems are 401 invalid_api_key with WWW-Authenticate; plan and scope problems are 403 (CONTRACT §2, §3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from structlog.testing import capture_logs

from services.gateway.app import DB_KEY
from services.gateway.store import api_keys

COURSES = "/api/v1/learn/courses"


async def assert_invalid_key(resp) -> dict:
    assert resp.status == 401, await resp.text()
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json()
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
    assert body["error"]["request_id"].startswith("req_")
    return body


async def test_a_request_without_authorization_is_rejected(gw):
    await assert_invalid_key(await gw.api("GET", COURSES, None))


async def test_a_request_with_another_scheme_is_rejected(gw):
    await gw.tenant()
    key = await gw.key()
    await assert_invalid_key(await gw.api("GET", COURSES, None, headers={"Authorization": f"Basic {key['key']}"}))


async def test_a_malformed_key_is_rejected(gw):
    await assert_invalid_key(await gw.api("GET", COURSES, "mc_live_short"))
    await assert_invalid_key(await gw.api("GET", COURSES, "sk_live_" + "a" * 43))


async def test_an_unknown_key_is_rejected(gw):
    await gw.tenant()
    await assert_invalid_key(await gw.api("GET", COURSES, "mc_live_" + "x" * 43))


async def test_a_revoked_key_is_rejected(gw):
    await gw.tenant()
    key = await gw.key()
    assert (await gw.api("GET", COURSES, key["key"])).status == 200
    resp = await gw.client.post(f"/admin/api/v1/tenants/acme/api-keys/{key['id']}/revoke", headers=gw.admin())
    assert resp.status == 200
    body = await assert_invalid_key(await gw.api("GET", COURSES, key["key"]))
    assert "revoked" in body["error"]["message"]


async def test_an_expired_key_is_rejected(gw):
    await gw.tenant()
    soon = datetime.now(UTC) + timedelta(seconds=30)
    key = await gw.key(expires_at=soon.isoformat())
    async with gw.app[DB_KEY].transaction() as session:
        await session.execute(sa.update(api_keys).where(api_keys.c.id == key["id"])
                              .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    body = await assert_invalid_key(await gw.api("GET", COURSES, key["key"]))
    assert "expired" in body["error"]["message"]


async def test_a_key_expiring_while_cached_stops_working_at_its_expiry(gw):
    await gw.tenant()
    key = await gw.key(expires_at=(datetime.now(UTC) + timedelta(seconds=1.5)).isoformat())
    assert (await gw.api("GET", COURSES, key["key"])).status == 200
    import asyncio

    await asyncio.sleep(1.6)
    await assert_invalid_key(await gw.api("GET", COURSES, key["key"]))


async def test_a_key_of_tenant_a_on_the_host_of_tenant_b_is_rejected_without_data(gw):
    await gw.tenant("acme")
    await gw.tenant("globex")
    key = await gw.key("acme")
    resp = await gw.api("GET", COURSES, key["key"], headers={"Host": "globex.localhost:8080"})
    await assert_invalid_key(resp)
    assert gw.echoes["catalog"].seen == []


async def test_a_key_on_its_own_tenant_host_is_accepted(gw):
    await gw.tenant("acme")
    key = await gw.key("acme")
    assert (await gw.api("GET", COURSES, key["key"], headers={"Host": "acme.localhost"})).status == 200


async def test_free_and_starter_plans_are_not_eligible(gw):
    for plan in ("free", "starter"):
        await gw.tenant(f"t-{plan}", plan=plan)
        key = await gw.key(f"t-{plan}")
        resp = await gw.api("GET", COURSES, key["key"])
        assert resp.status == 403
        body = await resp.json()
        assert body["error"]["code"] == "plan_not_eligible"
        assert body["error"]["request_id"] == resp.headers["X-Request-Id"]


async def test_an_upgraded_plan_applies_at_once_on_this_replica(gw):
    await gw.tenant("acme", plan="starter")
    key = await gw.key("acme")
    assert (await gw.api("GET", COURSES, key["key"])).status == 403
    resp = await gw.client.post("/admin/api/v1/tenants/acme", json={"plan": "pro"}, headers=gw.admin())
    assert resp.status == 200
    assert (await gw.api("GET", COURSES, key["key"])).status == 200


async def test_a_missing_scope_is_403_naming_the_scope(gw):
    await gw.tenant()
    key = await gw.key(scopes=["learn:read"])
    resp = await gw.api("POST", COURSES, key["key"], json={"slug": "x", "title": "X"})
    assert resp.status == 403
    body = await resp.json()
    assert body["error"]["code"] == "insufficient_scope"
    assert "learn:write" in body["error"]["message"]
    assert gw.echoes["catalog"].seen == []


async def test_write_does_not_imply_read(gw):
    await gw.tenant()
    key = await gw.key(scopes=["learn:write"])
    resp = await gw.api("GET", COURSES, key["key"])
    assert resp.status == 403
    assert "learn:read" in (await resp.json())["error"]["message"]


async def test_a_suspended_tenant_keys_stop_working(gw):
    await gw.tenant()
    key = await gw.key()
    resp = await gw.client.post("/admin/api/v1/tenants/acme", json={"status": "suspended"}, headers=gw.admin())
    assert resp.status == 200
    await assert_invalid_key(await gw.api("GET", COURSES, key["key"]))


async def test_the_request_id_of_an_error_is_in_the_log_line_of_that_request(gw):
    with capture_logs() as logs:
        resp = await gw.api("GET", COURSES, None)
    rid = resp.headers["X-Request-Id"]
    assert (await resp.json())["error"]["request_id"] == rid
    lines = [entry for entry in logs if entry.get("request_id") == rid]
    assert [entry["status"] for entry in lines] == [401]


async def test_a_client_request_id_is_logged_but_never_used_as_the_id(gw):
    with capture_logs() as logs:
        resp = await gw.api("GET", COURSES, None, headers={"X-Request-Id": "req_client_supplied"})
    rid = resp.headers["X-Request-Id"]
    assert rid != "req_client_supplied"
    assert rid.startswith("req_") and len(rid) >= 28
    assert [e["client_request_id"] for e in logs if e.get("request_id") == rid] == ["req_client_supplied"]
