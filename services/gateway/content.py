"""The content origin: the learner's player, package files and runtime endpoints, and nothing else.

SCORM content is arbitrary third-party JavaScript. It runs on an origin of its own (``LEARN_CONTENT_URL``), served
by the gateway on a listener of its own (``LEARN_GATEWAY_CONTENT_PORT``), so that no package can read or drive
what holds authority: the admin UI and its session, the admin API, the public API (docs/security.md). This app
answers only the ``/learn/...`` routes (``CONTENT_ROUTES``); ``/admin``, ``/api`` and ``/verify`` are 404 here,
as the ``/learn/...`` routes are on the API origin.

Every response of this origin:

- sets no cookie (a ``Set-Cookie`` from upstream is dropped: nothing on this origin may carry a credential);
- carries ``X-Content-Type-Options: nosniff``;
- may be framed only by the content origin itself and by the admin origin that previews it (``frame-ancestors``,
  added to the service's policy when it has none).

Requests reach the scorm service with the internal credential and the client's safe headers only (never a
``Cookie`` or ``Authorization``): the runtime token in the path is the only credential the runtime accepts.

With ``{tenant}`` in ``LEARN_CONTENT_URL`` (``https://{tenant}.content.learn.example.com``) every tenant has its
own content origin: the request's host names the tenant, and the scorm service refuses a token of another tenant
(``X-Learn-Content-Tenant``), so one tenant's package never runs on, or reads the storage of, another's origin.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from aiohttp import web

from services.gateway.config import GatewaySettings
from services.gateway.domain import CausalTracker
from services.gateway.pipeline import NOT_FOUND, Gateway, Observer, failure, new_request_id
from services.gateway.proxy import Upstreams
from services.gateway.routes import CONTENT_TABLE
from shared.http import (
    SERVICE_NAME_KEY,
    ApiError,
    error_middleware,
    install_protocol_error_envelope,
)

H_CONTENT_TENANT = "X-Learn-Content-Tenant"
CONTENT_GATEWAY_KEY = web.AppKey("content_gateway", Gateway)
HOST_PATTERN_KEY = web.AppKey("content_host_pattern", re.Pattern)


def frame_ancestors(settings: GatewaySettings) -> str:
    return f"frame-ancestors 'self' {settings.common.public_origin}"


def host_pattern(content_url: str) -> re.Pattern[str] | None:
    """With ``{tenant}`` in the content URL: a pattern matching its hosts, the slug as group 1 (else None)."""
    netloc = urlsplit(content_url).netloc.lower()
    if "{tenant}" not in netloc:
        return None
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    before, after = (re.escape(part) for part in host.split("{tenant}", 1))
    return re.compile(f"{before}([a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?){after}(?::[0-9]+)?")


def create_content_app(settings: GatewaySettings, causal: CausalTracker | None = None) -> web.Application:
    """The content origin's app; ``causal``: the API listener's read-your-writes memory in the same process (a
    runtime commit here is then waited for by the next API read, ADR 0010)."""
    common = settings.common
    install_protocol_error_envelope()  # aiohttp's own parser refusals answer the envelope here too
    app = web.Application(middlewares=[error_middleware], client_max_size=common.json_body_limit + 1024)
    app[SERVICE_NAME_KEY] = "gateway"
    gateway = Gateway(internal_secret=common.resolved_internal_secret(), admin_token="",
                      base_domain=common.base_domain, json_body_limit=common.json_body_limit,
                      observer=Observer(settings.access_log), consistency=settings.consistency,
                      consistency_window=settings.consistency_window)
    if causal is not None:
        gateway.causal = causal
    gateway.upstreams = Upstreams({"scorm": settings.scorm_url}, connect_timeout=settings.upstream_connect_timeout,
                                  read_timeout=settings.upstream_read_timeout, pool_size=settings.upstream_pool_size)
    app[CONTENT_GATEWAY_KEY] = gateway
    pattern = host_pattern(common.content_url)
    policy = frame_ancestors(settings)

    async def content(request: web.Request) -> web.StreamResponse:
        extra: dict[str, str] = {}
        if pattern is not None:
            found = pattern.fullmatch(request.host.lower())
            if found is None:
                started, rid = time.perf_counter(), new_request_id()
                response = failure(NOT_FOUND, rid)
                gateway.observer.done(request, "content_host_unknown", response.status, started, rid)
                return response
            extra[H_CONTENT_TENANT] = found.group(1)
        return await gateway._forward_table(request, CONTENT_TABLE, extra)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "gateway", "origin": "content"})

    async def not_here(_request: web.Request) -> web.Response:
        raise ApiError(404, "not_found", "No such route.")

    async def headers(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers.popall("Set-Cookie", None)
        response.headers["X-Content-Type-Options"] = "nosniff"
        csp = response.headers.get("Content-Security-Policy")
        if not csp:
            response.headers["Content-Security-Policy"] = policy
        elif "frame-ancestors" not in csp:
            response.headers["Content-Security-Policy"] = f"{csp}; {policy}"
        response.headers.setdefault("Referrer-Policy", "no-referrer")

    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", r"/learn/{tail:[\s\S]*}", content)
    app.router.add_route("*", r"/{tail:[\s\S]*}", not_here)
    app.on_response_prepare.append(headers)

    async def upstreams_ctx(_app: web.Application) -> AsyncIterator[None]:
        await gateway.upstreams.start()
        yield
        await gateway.upstreams.close()

    app.cleanup_ctx.append(upstreams_ctx)
    return app
