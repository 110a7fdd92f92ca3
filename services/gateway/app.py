"""The API gateway: the only door into the system.

It owns the directory (tenants, users, API keys), authenticates and authorises every public request, limits its
rate and forwards it to the service that owns the route (see ``routes.py``). Its admin API manages the directory
and forwards the other services' admin writes.

It is a service like the others (``shared.service.create_service_app``: database, bus, outbox relay, health,
readiness, metrics), as the edge one: it does not use the services' internal-credential, consistency and
idempotency middlewares (it is the one that adds the credential), and its request pipeline (``pipeline.py``)
identifies, observes and answers each request itself, on the lean path of ADR 0003.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import structlog
from aiohttp import web

from services.gateway import revocations
from services.gateway import staff as staff_routes
from services.gateway.admin import ADMIN, AdminApi, AdminDeadLetters, AdminProxy
from services.gateway.config import GatewaySettings
from services.gateway.dlq import AmqpDeadLetters, DeadLetters, InProcessDeadLetters
from services.gateway.domain import FailureLimiter, Passwords
from services.gateway.keys import KeyDirectory, RateLimiter, RedisRateLimiter, UsageRecorder
from services.gateway.mail import Mailer
from services.gateway.openapi import build_document
from services.gateway.pipeline import Gateway, Observer
from services.gateway.proxy import TRUSTED_PROXIES_KEY, TrustedProxies, Upstreams
from services.gateway.store import ReplicaFanout
from services.gateway.subscribers import subscriber_routes
from services.gateway.ui import setup_admin_ui
from shared.bus.amqp import AmqpBus
from shared.bus.wiring import EventTable
from shared.db import listen_dsn
from shared.http import ApiError
from shared.idempotency import Idempotency
from shared.service import (
    BUS_KEY,
    CURSOR_KEY,
    DB_KEY,
    IDEMPOTENCY_KEY,
    ServiceSpec,
    create_service_app,
)

MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger("gateway")

GATEWAY_KEY = web.AppKey("gateway", Gateway)
DLQ_KEY = web.AppKey("gateway_dlq", DeadLetters)
STAFF_API_KEY = web.AppKey("gateway_staff_api", staff_routes.StaffApi)
__all__ = ["BUS_KEY", "DB_KEY", "DLQ_KEY", "EVENT_HANDLERS", "GATEWAY_KEY", "IDEMPOTENCY_KEY", "MIGRATIONS",
           "announce_admin_token", "create_app"]

#: The gateway consumes no work queue of the topology. It hears ``api_key.revoked`` on a queue of each
#: replica's own (every replica needs every revocation): ``revocations.py``, run as a background job.
EVENT_HANDLERS: EventTable = {}

_announced: set[str] = set()


def create_app(settings: GatewaySettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or GatewaySettings()
    common = settings.common
    secret = common.resolved_internal_secret()
    admin_token = settings.resolved_admin_token()
    pepper = settings.resolved_pepper()
    proxies = TrustedProxies.parse(settings.trusted_proxies)
    gateway = Gateway(internal_secret=secret, admin_token=admin_token, base_domain=common.base_domain,
                      json_body_limit=common.json_body_limit, observer=Observer(settings.access_log),
                      consistency=settings.consistency, consistency_window=settings.consistency_window,
                      proxies=proxies, upload_body_limit=settings.max_upload_bytes,
                      admin_failures=FailureLimiter(settings.admin_auth_max_failures, settings.admin_auth_window))
    gateway.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)  # until the app starts
    gateway.upstreams = Upstreams(settings.upstreams(), connect_timeout=settings.upstream_connect_timeout,
                                  read_timeout=settings.upstream_read_timeout, pool_size=settings.upstream_pool_size)

    access = staff_routes.StaffAccess(admin_token, common.base_domain)
    gateway.staff = access
    passwords = Passwords()
    mailer = Mailer(settings.smtp_url, settings.mail_from) if settings.smtp_url else None

    def setup_routes(app: web.Application) -> None:
        access.db_of = lambda: app[DB_KEY]
        app[TRUSTED_PROXIES_KEY] = proxies
        app[GATEWAY_KEY] = gateway
        admin_api = AdminApi(lambda: app[DB_KEY], app[CURSOR_KEY], lambda: gateway.keys, pepper.encode())
        admin_proxy = AdminProxy(gateway, lambda: app[DB_KEY], secret, settings.max_upload_bytes,
                                 settings.admin_json_body_limit)
        staff_api = staff_routes.StaffApi(
            lambda: app[DB_KEY], app[CURSOR_KEY], passwords=passwords, mailer=mailer, public_url=common.public_url,
            base_domain=common.base_domain, link_ttl=settings.staff_link_ttl, session_ttl=settings.staff_session_ttl,
            max_failures=settings.staff_sign_in_max_failures, window=settings.staff_sign_in_window, proxies=proxies)
        app[STAFF_API_KEY] = staff_api
        staff_routes.setup(app, gateway, staff_api, app[IDEMPOTENCY_KEY], _admin_scope)
        _routes(app, gateway, admin_api, admin_proxy, AdminDeadLetters(lambda: app[DLQ_KEY]), app[IDEMPOTENCY_KEY],
                subscriber_routes(settings, lambda: app[DB_KEY]))  # AMQP subscribers (subscribers.py)
        # the admin web UI under /admin (a client of the admin API; sessions in this database)
        setup_admin_ui(app, settings, db_of=lambda: app[DB_KEY], staff_api_of=lambda: app[STAFF_API_KEY])

    async def directory_ctx(app: web.Application) -> AsyncIterator[None]:
        """The key cache, the last-used stamps and the consistency fanout to the other replicas."""
        db = app[DB_KEY]
        fanout_task: asyncio.Task[None] | None = None
        if db.is_postgres and settings.consistency:
            # Other replicas hear of this one's writes (best effort; the Consistency-Token is the guarantee).
            gateway.causal.fanout = ReplicaFanout(gateway.causal.record_header, db, listen_dsn(db.url))
            fanout_task = asyncio.create_task(gateway.causal.fanout.run(), name="gateway-consistency-fanout")
        gateway.keys = KeyDirectory(db, pepper, secret, ttl=settings.key_cache_ttl)
        gateway.usage = UsageRecorder(db, settings.last_used_resolution)
        flusher = asyncio.create_task(gateway.usage.run(), name="gateway-last-used")
        await access.start()
        yield
        await access.close()
        for task in (flusher, fanout_task):
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        gateway.causal.fanout = None
        with contextlib.suppress(Exception):
            await gateway.usage.flush()

    async def dead_letters_ctx(app: web.Application) -> AsyncIterator[None]:
        the_bus = app[BUS_KEY]
        dead_letters = (AmqpDeadLetters(common.amqp_url or "", common.amqp_namespace)
                        if isinstance(the_bus, AmqpBus) else InProcessDeadLetters(the_bus))
        app[DLQ_KEY] = dead_letters
        yield
        if isinstance(dead_letters, AmqpDeadLetters):
            await dead_letters.close()

    async def upstreams_ctx(_app: web.Application) -> AsyncIterator[None]:
        await gateway.upstreams.start()
        yield
        await gateway.upstreams.close()

    async def rate_limit_ctx(_app: web.Application) -> AsyncIterator[None]:
        """The shared rate limit's Redis client, made in the serving process (each worker has its own)."""
        if settings.redis_url:
            gateway.limiter = RedisRateLimiter.from_url(settings.redis_url, settings.rate_limit_per_second,
                                                        settings.rate_limit_burst, prefix=settings.redis_prefix,
                                                        timeout=settings.redis_timeout)
        yield
        limiter, gateway.limiter = gateway.limiter, RateLimiter(settings.rate_limit_per_second,
                                                                settings.rate_limit_burst)
        with contextlib.suppress(Exception):
            await limiter.close()

    async def revocations_job(app: web.Application) -> None:
        if settings.consumers_enabled:
            await revocations.listen(common, app[BUS_KEY], lambda: gateway.keys)

    async def readiness(_app: web.Application) -> dict[str, dict[str, str]]:
        """Ready only when every service is ready too."""

        async def probe(name: str, base: str) -> tuple[str, str]:
            try:
                async with gateway.upstreams.session.get(base.rstrip("/") + "/readyz",
                                                         timeout=aiohttp.ClientTimeout(total=3)) as resp:
                    return name, "ok" if resp.status == 200 else f"not ready ({resp.status})"
            except (aiohttp.ClientError, TimeoutError) as exc:
                return name, f"unreachable ({type(exc).__name__})"

        services = await asyncio.gather(*(probe(n, u) for n, u in settings.upstreams().items()))
        return {"services": dict(services)}

    spec = ServiceSpec(
        name="gateway", migrations_dir=MIGRATIONS, setup_routes=setup_routes, event_handlers=EVENT_HANDLERS,
        background=[revocations_job], client_max_size=common.json_body_limit + 1024, edge=True,
        contexts=[directory_ctx, dead_letters_ctx, upstreams_ctx, rate_limit_ctx], readiness=readiness,
    )
    app = create_service_app(settings, spec, bus=bus)
    token_file = str(Path(common.data_dir).resolve() / "admin_token")

    async def announce(app: web.Application) -> None:
        if settings.admin_token or admin_token in _announced:
            return
        _announced.add(admin_token)  # once per process, not once per app
        announce_admin_token(admin_token, token_file)

    app.on_startup.append(announce)
    return app


def announce_admin_token(admin_token: str, token_file: str, terminal: TextIO | None = None) -> None:
    """Say where the generated admin token is; show the token itself only on an interactive terminal.

    Never in the JSON log, and never on a stream that is not a terminal (a container's stderr is collected into
    the log pipeline): there the operator reads it from the file (``learnctl`` does so by itself)."""
    log.warning("admin_token_generated", file=token_file)
    stream = terminal or sys.stderr
    if stream.isatty():
        stream.write(f"\nmobieusLearn admin token (LEARN_ADMIN_TOKEN): {admin_token}\n"
                     f"  (also in {token_file}; it is not written to the log)\n\n")
    else:
        stream.write(f"\nmobieusLearn generated an admin token (LEARN_ADMIN_TOKEN) into {token_file}\n\n")
    stream.flush()


def _admin_scope(request: web.Request) -> str:
    """The admin's Idempotency-Keys are the admin's, per tenant: the same key for two tenants is two keys."""
    slug = request.match_info.get("slug")
    return f"admin:{slug}" if slug else "admin"


def _routes(app: web.Application, gateway: Gateway, api: AdminApi, proxy: AdminProxy, dlq: AdminDeadLetters,
            idempotency: Idempotency, extra: list[tuple[str, str, Any]] | None = None) -> None:
    r = app.router
    document = json.dumps(build_document()).encode()

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json",
                            headers={"Cache-Control": "public, max-age=300"})

    r.add_get("/api/v1/learn/openapi.json", openapi)
    r.add_route("*", r"/api/v1/learn/{tail:[\s\S]*}", gateway.public_api)
    r.add_route("*", r"/verify/{tail:[\s\S]*}", gateway.pass_through)
    # The player, package files and runtime live on the content origin only (services/gateway/content.py).
    r.add_route("*", r"/learn/{tail:[\s\S]*}", _content_elsewhere)

    tenants = f"{ADMIN}/tenants"
    own = [
        ("POST", tenants, api.create_tenant),
        ("GET", tenants, api.list_tenants),
        ("GET", tenants + "/{slug}", api.get_tenant),
        ("POST", tenants + "/{slug}", api.update_tenant),
        ("POST", tenants + "/{slug}/api-keys", api.create_key),
        ("GET", tenants + "/{slug}/api-keys", api.list_keys),
        ("GET", tenants + "/{slug}/api-keys/{id}", api.get_key),
        ("POST", tenants + "/{slug}/api-keys/{id}/revoke", api.revoke_key),
        ("GET", tenants + "/{slug}/users", api.list_users),
        ("GET", tenants + "/{slug}/users/{user_id}", api.get_user),
        ("PUT", tenants + "/{slug}/users/{user_id}", api.upsert_user),
        ("GET", f"{ADMIN}/dlq", dlq.summary),
        ("GET", f"{ADMIN}/dlq/{{queue}}", dlq.peek),
        ("POST", f"{ADMIN}/dlq/{{queue}}/replay", dlq.replay),
        ("POST", f"{ADMIN}/dlq/{{queue}}/purge", dlq.purge),
        *(extra or []),
    ]
    for method, path, handler in own:
        # The admin's own writes follow the Idempotency-Key rule here; forwarded ones in the owning service.
        r.add_route(method, path, gateway.admin(path, idempotency.guard(handler, _admin_scope)))
    forward = gateway.admin(tenants + "/{slug}/{rest}", proxy.forward)
    r.add_route("*", tenants + r"/{slug}/{rest:[\s\S]+}", forward)
    r.add_route("*", ADMIN + r"/{tail:[\s\S]*}", gateway.admin(ADMIN, _admin_not_found))


async def _content_elsewhere(_request: web.Request) -> web.Response:
    raise ApiError(404, "not_found", "No such route here: learner content is served on the content origin "
                                     "(LEARN_CONTENT_URL).")


async def _admin_not_found(_request: web.Request) -> web.Response:
    raise ApiError(404, "not_found", "No such route.")
