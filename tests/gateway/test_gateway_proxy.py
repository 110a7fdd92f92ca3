"""A backend that is down or slow becomes 503/504 service_unavailable; readiness aggregates every service."""

from __future__ import annotations

import socket

from tests.support.infra import wait_until

COURSES = "/api/v1/learn/courses"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_service_that_is_down_is_503_service_unavailable(make_gateway):
    gw = await make_gateway(catalog_url=f"http://127.0.0.1:{free_port()}")
    await gw.tenant()
    key = (await gw.key())["key"]
    resp = await gw.api("GET", COURSES, key)
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
    assert "Traceback" not in await resp.text()


async def test_a_slow_service_is_504_service_unavailable(make_gateway):
    gw = await make_gateway(upstream_read_timeout=0.3)
    gw.echoes["catalog"].delay = 1.0
    await gw.tenant()
    key = (await gw.key())["key"]
    resp = await gw.api("GET", COURSES, key)
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "service_unavailable"


async def test_readiness_needs_every_service(make_gateway):
    gw = await make_gateway()

    async def ready() -> bool:  # the broker connection is made in the background after start-up
        return (await gw.client.get("/readyz")).status == 200

    await wait_until(ready, timeout=10, message="gateway ready")
    body = await (await gw.client.get("/readyz")).json()
    assert set(body["services"]) == {"catalog", "enrollment", "certificates", "scorm", "webhooks"}
    down = await make_gateway(scorm_url=f"http://127.0.0.1:{free_port()}")
    resp = await down.client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["services"]["scorm"].startswith("unreachable")


async def test_health_and_metrics_are_served(gw):
    assert (await gw.client.get("/healthz")).status == 200
    await gw.api("GET", COURSES, None)
    text = await (await gw.client.get("/metrics")).text()
    assert 'learn_http_requests_total{method="GET",route="unmatched",service="gateway",status="401"}' in text
