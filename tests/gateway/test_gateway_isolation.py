"""Tenant isolation is enforced by what the gateway forwards: the tenant comes from the key, never the client."""

from __future__ import annotations

from urllib.parse import unquote

COURSES = "/api/v1/learn/courses"


async def test_the_forwarded_identity_is_the_keys_tenant(gw):
    acme = await gw.tenant("acme")
    globex = await gw.tenant("globex")
    key_a = (await gw.key("acme"))["key"]
    key_b = (await gw.key("globex"))["key"]
    a = (await (await gw.api("GET", COURSES, key_a)).json())["data"]["headers"]
    b = (await (await gw.api("GET", COURSES, key_b)).json())["data"]["headers"]
    assert (a["X-Learn-Tenant-Id"], a["X-Learn-Tenant"]) == (str(acme["id"]), "acme")
    assert (b["X-Learn-Tenant-Id"], b["X-Learn-Tenant"]) == (str(globex["id"]), "globex")
    assert a["X-Learn-Internal"] == gw.env.internal_secret


async def test_client_sent_learn_headers_are_stripped(gw):
    acme = await gw.tenant("acme")
    globex = await gw.tenant("globex")
    key = await gw.key("acme", scopes=["learn:read"])
    forged = {
        "X-Learn-Tenant-Id": str(globex["id"]), "X-Learn-Tenant": "globex", "X-Learn-Tenant-Name": "Globex",
        "X-Learn-Scopes": "learn:read learn:write admin", "X-Learn-Internal": "guess", "X-Learn-Key-Id": "999",
        "X-Learn-Owner-Id": "1", "X-Learn-Owner-Name": "Mallory", "X-Learn-Anything": "x",
    }
    resp = await gw.api("GET", COURSES, key["key"], headers=forged)
    headers = (await resp.json())["data"]["headers"]
    assert headers["X-Learn-Tenant-Id"] == str(acme["id"])
    assert headers["X-Learn-Tenant"] == "acme"
    assert unquote(headers["X-Learn-Tenant-Name"]) == "Acme"
    assert headers["X-Learn-Scopes"] == "learn:read"
    assert headers["X-Learn-Key-Id"] == str(key["id"])
    assert headers["X-Learn-Internal"] == gw.env.internal_secret
    assert "X-Learn-Owner-Id" not in headers and "X-Learn-Anything" not in headers


async def test_the_key_owner_is_forwarded_when_the_key_names_its_creating_user(gw):
    await gw.tenant("acme")
    resp = await gw.client.put("/admin/api/v1/tenants/acme/users/42", json={"name": "Ada Lovelace",
                                                                            "email": "ada@example.com"},
                               headers=gw.admin())
    assert resp.status == 201
    key = await gw.key("acme", created_by=42)
    headers = (await (await gw.api("GET", COURSES, key["key"])).json())["data"]["headers"]
    assert headers["X-Learn-Owner-Id"] == "42"
    assert unquote(headers["X-Learn-Owner-Name"]) == "Ada Lovelace"


async def test_the_gateway_request_id_is_forwarded_and_a_client_one_is_not(gw):
    await gw.tenant()
    key = await gw.key()
    resp = await gw.api("GET", COURSES, key["key"], headers={"X-Request-Id": "req_forged"})
    body = await resp.json()
    assert body["data"]["headers"]["X-Request-Id"] == resp.headers["X-Request-Id"] != "req_forged"


async def test_cookies_set_by_a_service_never_reach_another_request(gw):
    await gw.tenant("acme")
    await gw.tenant("globex")
    key_a = (await gw.key("acme"))["key"]
    key_b = (await gw.key("globex"))["key"]
    await gw.api("GET", COURSES, key_a)  # the echo service answers with Set-Cookie
    headers = (await (await gw.api("GET", COURSES, key_b)).json())["data"]["headers"]
    assert "Cookie" not in headers


async def test_pass_through_routes_carry_the_credential_but_no_tenant(gw):
    await gw.tenant()
    resp = await gw.client.get("/verify/" + "v" * 40, headers={"X-Learn-Tenant-Id": "1", "X-Learn-Tenant": "acme"})
    assert resp.status == 200
    headers = (await resp.json())["data"]["headers"]
    assert headers["X-Learn-Internal"] == gw.env.internal_secret
    assert headers["X-Request-Id"] == resp.headers["X-Request-Id"]
    assert not any(h.startswith("X-Learn-Tenant") for h in headers)
    assert (await resp.json())["data"]["service"] == "certificates"
