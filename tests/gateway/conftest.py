"""Gateway fixtures: the real gateway on PostgreSQL + RabbitMQ, in front of small echo services.

The echo services stand for catalog, enrollment, certificates and scorm: they answer every path with what the
gateway forwarded (method, path, identity headers, body size), so tests can assert on the gateway alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.support.env import TestEnv

ADMIN_TOKEN = "test-admin-token"
UPSTREAMS = ("catalog", "enrollment", "certificates", "scorm", "webhooks")


@dataclass
class Echo:
    """A fake service: records each request and echoes it back in the success envelope."""

    name: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/readyz":
            return web.json_response({"status": "ready"})
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
        seen = {
            "service": self.name,
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": {k.title(): v for k, v in request.headers.items()},
            "body_bytes": size,
        }
        self.seen.append(seen)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.path.endswith("/pdf"):
            # A large streamed answer with no Content-Length.
            response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
            await response.prepare(request)
            for _ in range(40):
                await response.write(b"%" * 65536)
            await response.write_eof()
            return response
        rid = request.headers.get("X-Request-Id", "")
        return web.Response(text=json.dumps({"data": seen, "next_cursor": None, "request_id": rid}),
                            content_type="application/json", headers={"Set-Cookie": "tenant=leak"})


@dataclass
class Harness:
    client: TestClient
    echoes: dict[str, Echo]
    env: TestEnv
    app: web.Application

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def tenant(self, slug: str = "acme", plan: str = "pro") -> dict[str, Any]:
        resp = await self.client.post("/admin/api/v1/tenants", json={"slug": slug, "name": slug.title(), "plan": plan},
                                      headers=self.admin())
        assert resp.status == 201, await resp.text()
        return (await resp.json())["data"]

    async def key(self, slug: str = "acme", scopes: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        body = {"name": "test key", "scopes": scopes if scopes is not None else ["learn:read", "learn:write"], **extra}
        resp = await self.client.post(f"/admin/api/v1/tenants/{slug}/api-keys", json=body, headers=self.admin())
        assert resp.status == 201, await resp.text()
        return (await resp.json())["data"]

    async def api(self, method: str, path: str, key: str | None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return await self.client.request(method, path, headers=headers, **kw)


@pytest.fixture
async def echo_servers() -> AsyncIterator[dict[str, tuple[Echo, TestServer]]]:
    servers: dict[str, tuple[Echo, TestServer]] = {}
    for name in UPSTREAMS:
        echo = Echo(name)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", echo.handle)
        server = TestServer(app)
        await server.start_server()
        servers[name] = (echo, server)
    yield servers
    for _, server in servers.values():
        await server.close()


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def make_gateway(test_env: TestEnv, echo_servers) -> AsyncIterator[GatewayFactory]:
    clients: list[TestClient] = []

    async def make(**overrides: Any) -> Harness:
        urls = {f"{name}_url": str(server.make_url("")).rstrip("/") for name, (_, server) in echo_servers.items()}
        values: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "rate_limit_per_second": 1000.0,
                                  "rate_limit_burst": 1000, **urls}
        common_overrides = overrides.pop("common", {})
        values.update(overrides)
        settings = GatewaySettings(common=test_env.common(**common_overrides), **values)
        app = create_app(settings)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Harness(client, {n: e for n, (e, _) in echo_servers.items()}, test_env, app)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Harness:
    return await make_gateway()
