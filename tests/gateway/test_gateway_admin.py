"""The admin API: the admin token, tenants, keys, users, and forwarding of the services' admin routes."""

from __future__ import annotations

ADMIN = "/admin/api/v1"


async def test_the_admin_api_needs_the_admin_token(gw):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic test-admin-token"}):
        resp = await gw.client.get(f"{ADMIN}/tenants", headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"]["code"] == "invalid_api_key"
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/courses/1/modules", json={"title": "M"})
    assert resp.status == 401
    assert all(not echo.seen for echo in gw.echoes.values())


async def test_a_tenant_is_created_read_listed_and_updated(gw):
    created = await gw.tenant("acme", plan="pro")
    assert created["slug"] == "acme" and created["status"] == "active" and created["plan"] == "pro"
    got = await (await gw.client.get(f"{ADMIN}/tenants/acme", headers=gw.admin())).json()
    assert got["data"]["id"] == created["id"]
    resp = await gw.client.post(f"{ADMIN}/tenants/acme", json={"name": "Acme Inc", "plan": "sovereign"},
                                headers=gw.admin())
    assert (await resp.json())["data"]["name"] == "Acme Inc"
    await gw.tenant("globex")
    listed = await (await gw.client.get(f"{ADMIN}/tenants?limit=1", headers=gw.admin())).json()
    assert [t["slug"] for t in listed["data"]] == ["globex"]
    page2 = await (await gw.client.get(f"{ADMIN}/tenants?limit=1&cursor={listed['next_cursor']}",
                                       headers=gw.admin())).json()
    assert [t["slug"] for t in page2["data"]] == ["acme"] and page2["next_cursor"] is None


async def test_bad_tenant_input_is_rejected(gw):
    await gw.tenant("acme")
    cases = [
        ({"slug": "acme", "name": "Again", "plan": "pro"}, 400, "invalid_argument"),
        ({"slug": "Bad.Slug", "name": "X", "plan": "pro"}, 400, "invalid_argument"),
        ({"slug": "ok-slug", "name": "X", "plan": "platinum"}, 400, "invalid_argument"),
        ({"slug": "ok-slug", "plan": "pro"}, 400, "missing_field"),
        ({"slug": "ok-slug", "name": "X", "plan": "pro", "id": 5}, 400, "invalid_argument"),
    ]
    for body, status, code in cases:
        resp = await gw.client.post(f"{ADMIN}/tenants", json=body, headers=gw.admin())
        assert resp.status == status, body
        assert (await resp.json())["error"]["code"] == code, body
    assert (await gw.client.get(f"{ADMIN}/tenants/nope", headers=gw.admin())).status == 404


async def test_bad_key_input_is_rejected(gw):
    await gw.tenant()
    cases = [
        {"name": "k", "scopes": ["learn:everything"]},
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": ["learn:read"], "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "k", "scopes": ["learn:read"], "created_by": 999},
    ]
    for body in cases:
        resp = await gw.client.post(f"{ADMIN}/tenants/acme/api-keys", json=body, headers=gw.admin())
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == "invalid_argument", body
    resp = await gw.client.post(f"{ADMIN}/tenants/nope/api-keys", json={"name": "k", "scopes": ["learn:read"]},
                                headers=gw.admin())
    assert resp.status == 404


async def test_a_key_of_another_tenant_answers_like_a_missing_one(gw):
    await gw.tenant("acme")
    await gw.tenant("globex")
    key = await gw.key("acme")
    for path in (f"{ADMIN}/tenants/globex/api-keys/{key['id']}", f"{ADMIN}/tenants/globex/api-keys/99999"):
        resp = await gw.client.get(path, headers=gw.admin())
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "api_key_not_found"
    resp = await gw.client.post(f"{ADMIN}/tenants/globex/api-keys/{key['id']}/revoke", headers=gw.admin())
    assert resp.status == 404


async def test_a_test_mode_key_has_the_test_prefix(gw):
    await gw.tenant()
    key = await gw.key(mode="test")
    assert key["key"].startswith("mc_test_")
    assert (await gw.api("GET", "/api/v1/learn/courses", key["key"])).status == 200


async def test_users_are_upserted_and_listed(gw):
    await gw.tenant()
    for uid in (5, 9):
        resp = await gw.client.put(f"{ADMIN}/tenants/acme/users/{uid}",
                                   json={"name": f"User {uid}", "email": f"u{uid}@example.com"}, headers=gw.admin())
        assert resp.status == 201
    listed = await (await gw.client.get(f"{ADMIN}/tenants/acme/users", headers=gw.admin())).json()
    assert [u["id"] for u in listed["data"]] == [9, 5]
    bad = await gw.client.put(f"{ADMIN}/tenants/acme/users/5", json={"name": "X", "email": "nope"},
                              headers=gw.admin())
    assert bad.status == 400


async def test_service_admin_routes_are_forwarded_as_the_tenants_admin(gw):
    tenant = await gw.tenant()
    cases = [
        ("POST", "courses/5/modules", "catalog"), ("POST", "modules/3", "catalog"), ("DELETE", "modules/3", "catalog"),
        ("POST", "modules/3/lessons", "catalog"), ("POST", "lessons/4/activities", "catalog"),
        ("DELETE", "activities/8", "catalog"), ("POST", "courses/5/reorder", "catalog"),
        ("GET", "courses?limit=2", "catalog"), ("POST", "cohorts", "enrollment"),
        ("POST", "cert-templates", "certificates"), ("POST", "cert-templates/2", "certificates"),
        ("GET", "certificates", "certificates"), ("GET", "scorm-packages/1", "scorm"),
        ("GET", "scorm-scos", "catalog"),
    ]
    for method, rest, service in cases:
        resp = await gw.client.request(method, f"{ADMIN}/tenants/acme/{rest}", headers=gw.admin(),
                                       json={"title": "x"} if method == "POST" else None)
        assert resp.status == 200, (method, rest)
        seen = (await resp.json())["data"]
        assert seen["service"] == service and seen["method"] == method
        assert seen["path_qs"] == f"/admin/v1/{rest}"
        assert seen["headers"]["X-Learn-Scopes"] == "admin"
        assert seen["headers"]["X-Learn-Tenant-Id"] == str(tenant["id"])
        assert seen["headers"]["X-Learn-Internal"] == gw.env.internal_secret


async def test_admin_routes_of_unknown_tenants_or_resources_are_404(gw):
    await gw.tenant()
    resp = await gw.client.post(f"{ADMIN}/tenants/nope/courses/1/modules", json={}, headers=gw.admin())
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "tenant_not_found"
    resp = await gw.client.get(f"{ADMIN}/tenants/acme/secrets", headers=gw.admin())
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await gw.client.get(f"{ADMIN}/nothing", headers=gw.admin())
    assert resp.status == 404
    resp = await gw.client.delete(f"{ADMIN}/tenants/acme/api-keys", headers=gw.admin())
    assert resp.status == 405
    assert all(not echo.seen for echo in gw.echoes.values())
