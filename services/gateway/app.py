"""The API gateway: the only door into the system (skeleton: health and aggregated readiness)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from services.gateway.config import GatewaySettings
from shared.service import SETTINGS_KEY, ServiceSpec, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"
HTTP_KEY = web.AppKey("http", aiohttp.ClientSession)


async def readyz_all(request: web.Request) -> web.Response:
    """Ready only when the gateway itself and every service are ready."""
    settings: GatewaySettings = request.app[SETTINGS_KEY]  # type: ignore[assignment]
    session = request.app[HTTP_KEY]

    async def probe(name: str, base: str) -> tuple[str, str]:
        try:
            async with session.get(base + "/readyz", timeout=aiohttp.ClientTimeout(total=3)) as resp:
                return name, "ok" if resp.status == 200 else f"not ready ({resp.status})"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return name, f"unreachable ({type(exc).__name__})"

    results = dict(await asyncio.gather(*(probe(n, u) for n, u in settings.upstreams().items())))
    ready = all(v == "ok" for v in results.values())
    return web.json_response({"status": "ready" if ready else "not_ready", "services": results},
                             status=200 if ready else 503)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/readyz/all", readyz_all)


def create_app(settings: GatewaySettings | None = None, *, bus: Any = None) -> web.Application:
    spec = ServiceSpec(name="gateway", migrations_dir=MIGRATIONS, setup_routes=setup_routes)
    app = create_service_app(settings or GatewaySettings(), spec, bus=bus)

    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        app[HTTP_KEY] = aiohttp.ClientSession()
        yield
        await app[HTTP_KEY].close()

    app.cleanup_ctx.append(http_ctx)
    return app
