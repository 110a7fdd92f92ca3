"""Per-key token bucket (429 with RateLimit headers, then recovery) and body limits (413)."""

from __future__ import annotations

import asyncio

COURSES = "/api/v1/learn/courses"


async def test_a_burst_over_the_limit_is_429_with_the_headers_and_recovers(make_gateway):
    gw = await make_gateway(rate_limit_per_second=5.0, rate_limit_burst=5)
    await gw.tenant()
    key = (await gw.key())["key"]
    statuses = []
    for _ in range(8):
        resp = await gw.api("GET", COURSES, key)
        statuses.append(resp.status)
        assert resp.headers["RateLimit-Policy"] == '"per-key";q=5;w=1'
        assert resp.headers["RateLimit"].startswith('"per-key";r=')
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    limited = await gw.api("GET", COURSES, key)
    assert limited.status == 429
    body = await limited.json()
    assert body["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit"].startswith('"per-key";r=0;')
    assert len(gw.echoes["catalog"].seen) == statuses.count(200)
    await asyncio.sleep(1.1)
    assert (await gw.api("GET", COURSES, key)).status == 200


async def test_keys_have_their_own_buckets(make_gateway):
    gw = await make_gateway(rate_limit_per_second=1.0, rate_limit_burst=2)
    await gw.tenant()
    first = (await gw.key())["key"]
    second = (await gw.key())["key"]
    for _ in range(3):
        await gw.api("GET", COURSES, first)
    assert (await gw.api("GET", COURSES, first)).status == 429
    assert (await gw.api("GET", COURSES, second)).status == 200


async def test_a_json_body_over_one_mib_is_413(gw):
    await gw.tenant()
    key = (await gw.key())["key"]
    big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    resp = await gw.api("POST", COURSES, key, data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert gw.echoes["catalog"].seen == []


async def test_a_chunked_body_over_the_limit_is_413(gw):
    await gw.tenant()
    key = (await gw.key())["key"]

    async def chunks():
        for _ in range(20):
            yield b" " * 65536

    resp = await gw.api("POST", COURSES, key, data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"


async def test_a_scorm_upload_streams_through_up_to_the_upload_limit(make_gateway):
    gw = await make_gateway(max_upload_bytes=3 * 1024 * 1024)
    tenant = await gw.tenant()

    async def zip_body(size: int):
        sent = 0
        while sent < size:
            yield b"P" * 65536
            sent += 65536

    ok = await gw.client.post("/admin/api/v1/tenants/acme/scorm-packages", data=zip_body(2 * 1024 * 1024),
                              headers={**gw.admin(), "Content-Type": "application/zip"})
    assert ok.status == 200, await ok.text()
    seen = (await ok.json())["data"]
    assert seen["body_bytes"] == 2 * 1024 * 1024
    assert seen["path_qs"] == "/admin/v1/scorm-packages"
    assert seen["headers"]["X-Learn-Tenant-Id"] == str(tenant["id"])
    assert seen["headers"]["Content-Type"] == "application/zip"
    too_big = await gw.client.post("/admin/api/v1/tenants/acme/scorm-packages", data=b"P" * (3 * 1024 * 1024 + 1),
                                   headers={**gw.admin(), "Content-Type": "application/zip"})
    assert too_big.status == 413
    assert (await too_big.json())["error"]["code"] == "payload_too_large"


async def test_a_large_pdf_streams_back_unchanged(gw):
    await gw.tenant()
    key = (await gw.key(scopes=["learn:read"]))["key"]
    resp = await gw.api("GET", "/api/v1/learn/certificates/3/pdf", key)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/pdf"
    total = 0
    async for chunk in resp.content.iter_chunked(65536):
        total += len(chunk)
    assert total == 40 * 65536
