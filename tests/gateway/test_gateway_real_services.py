"""The gateway in front of the real catalog, enrollment, certificates and scorm apps.

Asserts on the gateway's behaviour only: the services accept its credential and tenant headers (never 401), adopt
its request id, and every table route reaches a live service (no 502/503/504 from the gateway).
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack

from aiohttp.test_utils import TestClient, TestServer

from services.catalog.app import create_app as catalog_app
from services.catalog.config import CatalogSettings
from services.certificates.app import create_app as certificates_app
from services.certificates.config import CertificatesSettings
from services.enrollment.app import create_app as enrollment_app
from services.enrollment.config import EnrollmentSettings
from services.gateway.app import create_app as gateway_app
from services.gateway.config import GatewaySettings
from services.gateway.routes import PUBLIC_ROUTES
from services.scorm.app import create_app as scorm_app
from services.scorm.config import ScormSettings
from tests.gateway.conftest import ADMIN_TOKEN

SERVICES = {
    "catalog": (CatalogSettings, catalog_app),
    "enrollment": (EnrollmentSettings, enrollment_app),
    "certificates": (CertificatesSettings, certificates_app),
    "scorm": (ScormSettings, scorm_app),
}


async def test_every_route_reaches_its_real_service_with_the_gateways_identity(test_env):
    async with AsyncExitStack() as stack:
        urls = {}
        for name, (settings_cls, factory) in SERVICES.items():
            server = TestServer(factory(settings_cls(common=test_env.common())))
            await server.start_server()
            stack.push_async_callback(server.close)
            urls[f"{name}_url"] = str(server.make_url("")).rstrip("/")
        gateway = TestClient(TestServer(gateway_app(GatewaySettings(
            common=test_env.common(), admin_token=ADMIN_TOKEN, **urls))))
        await gateway.start_server()
        stack.push_async_callback(gateway.close)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await gateway.post("/admin/api/v1/tenants", json={"slug": "acme", "name": "Acme", "plan": "pro"},
                                   headers=admin)).status == 201
        created = await gateway.post("/admin/api/v1/tenants/acme/api-keys", headers=admin, json={
            "name": "all", "scopes": ["learn:read", "learn:write", "learn:cohorts:grant"]})
        key = (await created.json())["data"]["key"]
        auth = {"Authorization": f"Bearer {key}"}

        problems = []
        for route in PUBLIC_ROUTES:
            path = re.sub(r"\{(\w+)\+?\}", lambda m: "v" * 40 if m.group(1) == "vid" else "999999", route.path)
            resp = await gateway.request(route.method, path, headers=auth,
                                         json={} if route.method == "POST" else None)
            rid = resp.headers.get("X-Request-Id")
            body = await resp.json(content_type=None) if "json" in resp.headers.get("Content-Type", "") else {}
            body = body or {}
            body_rid = body.get("request_id") or body.get("error", {}).get("request_id")
            if route.method == "HEAD":  # no body: the request id is in the header only
                body_rid = rid
            if resp.status in (401, 502, 503, 504) or resp.status >= 500 or body_rid != rid:
                problems.append((route.method, path, resp.status, body))
        assert problems == []

        # A public write goes all the way: created in the catalog, readable through the gateway.
        resp = await gateway.post("/api/v1/learn/courses", headers=auth, json={"slug": "intro", "title": "Intro"})
        if resp.status == 201:
            course = (await resp.json())["data"]
            got = await gateway.get(f"/api/v1/learn/courses/{course['id']}", headers=auth)
            assert got.status == 200
            assert (await got.json())["data"]["slug"] == "intro"
