async def test_a_key_made_in_the_admin_api_reaches_the_catalog_with_the_tenant(gw):
    tenant = await gw.tenant("acme")
    key = await gw.key("acme")
    resp = await gw.api("GET", "/api/v1/learn/courses?limit=5", key["key"])
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    seen = body["data"]
    assert seen["service"] == "catalog"
    assert seen["path_qs"] == "/api/v1/learn/courses?limit=5"
    assert seen["headers"]["X-Learn-Tenant-Id"] == str(tenant["id"])
    assert body["request_id"] == resp.headers["X-Request-Id"]
