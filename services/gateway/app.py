"""The API gateway: the only door into the system.

It owns the directory (tenants, users, API keys), authenticates and authorises every public request, limits its
rate and forwards it to the service that owns the route (see ``routes.py``). Its admin API manages the directory
and forwards the other services' admin writes. It does not use the services' internal-credential middleware: it
is the one that adds the credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import aio_pika
import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.gateway.admin import ADMIN, AdminApi, AdminProxy
from services.gateway.clientip import TRUSTED_PROXIES_KEY, FailureLimiter, TrustedProxies
from services.gateway.config import GatewaySettings
from services.gateway.consistency import ReplicaFanout
from services.gateway.dlq import AmqpDeadLetters, DeadLetters, InProcessDeadLetters, spec_of
from services.gateway.keys import KeyDirectory, RateLimiter, UsageRecorder
from services.gateway.openapi import build_document
from services.gateway.pipeline import Gateway, Observer
from services.gateway.proxy import Upstreams
from services.gateway.ui import setup_admin_ui
from shared.bus.amqp import AmqpBus
from shared.bus.envelope import CloudEvent
from shared.bus.inprocess import InProcessBus
from shared.bus.relay import OutboxRelay
from shared.bus.topology import EVENTS_EXCHANGE
from shared.db import Database, listen_dsn, migrate, migrations_applied
from shared.http import (
    SERVICE_NAME_KEY,
    ApiError,
    CursorCodec,
    error_middleware,
    install_protocol_error_envelope,
    ok,
    positive_int,
    request_id_of,
)
from shared.idempotency import Idempotency
from shared.logging import configure_logging
from shared.service import Bus

MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger("gateway")

SETTINGS_KEY = web.AppKey("gateway_settings", GatewaySettings)
GATEWAY_KEY = web.AppKey("gateway", Gateway)
DB_KEY = web.AppKey("gateway_db", Database)
BUS_KEY = web.AppKey("gateway_bus", Bus)
DLQ_KEY = web.AppKey("gateway_dlq", DeadLetters)
IDEMPOTENCY_KEY = web.AppKey("gateway_idempotency", Idempotency)

REVOKED_BINDING = "*.api_key.revoked"
_announced: set[str] = set()


def create_app(settings: GatewaySettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or GatewaySettings()
    common = settings.common
    configure_logging("gateway", common.log_level, common.log_json)
    install_protocol_error_envelope()
    secret = common.resolved_internal_secret()
    admin_token = settings.resolved_admin_token()
    pepper = settings.resolved_pepper()
    # Route 404/405s and anything that escapes a handler still get the envelope.
    app = web.Application(middlewares=[error_middleware], client_max_size=common.json_body_limit + 1024)
    app[SERVICE_NAME_KEY] = "gateway"
    app[SETTINGS_KEY] = settings
    proxies = TrustedProxies.parse(settings.trusted_proxies)
    app[TRUSTED_PROXIES_KEY] = proxies
    gateway = Gateway(internal_secret=secret, admin_token=admin_token, base_domain=common.base_domain,
                      json_body_limit=common.json_body_limit, observer=Observer(settings.access_log),
                      consistency=settings.consistency, consistency_window=settings.consistency_window,
                      proxies=proxies,
                      admin_failures=FailureLimiter(settings.admin_auth_max_failures, settings.admin_auth_window))
    gateway.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    gateway.upstreams = Upstreams(settings.upstreams(), connect_timeout=settings.upstream_connect_timeout,
                                  read_timeout=settings.upstream_read_timeout, pool_size=settings.upstream_pool_size)
    app[GATEWAY_KEY] = gateway
    if bus is not None:
        app[BUS_KEY] = bus

    codec = CursorCodec(secret)
    idempotency = Idempotency(lambda: app[DB_KEY], ttl=common.idempotency_ttl, lease=common.idempotency_lease)
    app[IDEMPOTENCY_KEY] = idempotency
    admin_api = AdminApi(lambda: app[DB_KEY], codec, lambda: gateway.keys, pepper.encode())
    admin_proxy = AdminProxy(gateway, lambda: app[DB_KEY], secret, settings.max_upload_bytes,
                             settings.admin_json_body_limit)
    _routes(app, gateway, admin_api, admin_proxy, idempotency)
    setup_admin_ui(app, settings)  # the admin web UI under /admin (a client of the admin API)

    token_file = str(Path(common.data_dir).resolve() / "admin_token")

    async def announce(app: web.Application) -> None:
        if settings.admin_token or admin_token in _announced:
            return
        _announced.add(admin_token)  # once per process, not once per app
        announce_admin_token(admin_token, token_file)

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        url = settings.database_url
        if common.run_migrations_on_start:
            await migrate(url, MIGRATIONS)
        db = Database(url, pool_size=settings.common.db_pool_size)
        app[DB_KEY] = db
        fanout_task: asyncio.Task[None] | None = None
        if db.is_postgres and settings.consistency:
            # Other replicas hear of this one's writes (best effort; the Consistency-Token is the guarantee).
            gateway.causal.fanout = ReplicaFanout(gateway.causal, db.engine, listen_dsn(db.url))
            fanout_task = asyncio.create_task(gateway.causal.fanout.run(), name="gateway-consistency-fanout")
        gateway.keys = KeyDirectory(db, pepper, secret, ttl=settings.key_cache_ttl)
        gateway.usage = UsageRecorder(db, settings.last_used_resolution)
        flusher = asyncio.create_task(gateway.usage.run(), name="gateway-last-used")
        sweeper = asyncio.create_task(idempotency.sweeper(common.idempotency_sweep_interval),
                                      name="gateway-idempotency-sweeper")
        yield
        for task in (flusher, sweeper, fanout_task):
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        gateway.causal.fanout = None
        with contextlib.suppress(Exception):
            await gateway.usage.flush()
        await db.dispose()

    async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
        shared_bus = BUS_KEY in app
        if not shared_bus:
            app[BUS_KEY] = (
                AmqpBus(common.amqp_url, service="gateway", namespace=common.amqp_namespace,
                        prefetch=common.amqp_prefetch, delivery_limit=common.amqp_delivery_limit)
                if common.amqp_url else InProcessBus(delivery_limit=common.amqp_delivery_limit)
            )
        the_bus = app[BUS_KEY]
        app[DLQ_KEY] = (AmqpDeadLetters(common.amqp_url or "", common.amqp_namespace)
                        if isinstance(the_bus, AmqpBus) else InProcessDeadLetters(the_bus))
        connecting = asyncio.create_task(the_bus.connect(retry_forever=True), name="gateway-bus")
        tasks: list[asyncio.Task[None]] = []
        if settings.relay_enabled:
            relay = OutboxRelay(app[DB_KEY], the_bus, service="gateway", batch_size=common.relay_batch_size,
                                poll_interval=common.relay_poll_interval)
            tasks.append(asyncio.create_task(relay.run(), name="gateway-relay"))
        if settings.consumers_enabled:
            tasks.append(asyncio.create_task(_revocations(app), name="gateway-revocations"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # A connect cut half-way leaves the client library's callbacks dangling: let a reachable broker finish.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(connecting, timeout=5)
        dead_letters = app[DLQ_KEY]
        if isinstance(dead_letters, AmqpDeadLetters):
            await dead_letters.close()
        if not shared_bus:
            await the_bus.close()
            await asyncio.sleep(0.01)  # let the client library run its close callbacks before the loop ends

    async def upstreams_ctx(app: web.Application) -> AsyncIterator[None]:
        await gateway.upstreams.start()
        yield
        await gateway.upstreams.close()

    app.on_startup.append(announce)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(bus_ctx)
    app.cleanup_ctx.append(upstreams_ctx)
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


def _routes(app: web.Application, gateway: Gateway, api: AdminApi, proxy: AdminProxy,
            idempotency: Idempotency) -> None:
    r = app.router
    r.add_get("/healthz", _healthz)
    r.add_get("/readyz", _readyz)
    r.add_get("/metrics", _metrics)
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
        ("GET", f"{ADMIN}/dlq", _dlq_summary),
        ("GET", f"{ADMIN}/dlq/{{queue}}", _dlq_peek),
        ("POST", f"{ADMIN}/dlq/{{queue}}/replay", _dlq_replay),
        ("POST", f"{ADMIN}/dlq/{{queue}}/purge", _dlq_purge),
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


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "gateway"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready only when the gateway's own database and broker AND every service are ready."""
    app = request.app
    settings = app[SETTINGS_KEY]
    gateway = app[GATEWAY_KEY]

    async def own() -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            db = app[DB_KEY]
            await asyncio.wait_for(db.ping(), timeout=2)
            checks["database"] = "ok"
            checks["migrations"] = "ok" if await migrations_applied(db, MIGRATIONS) else "pending"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        bus = app.get(BUS_KEY)
        checks["broker"] = "ok" if bus is not None and bus.ready else "unavailable"
        return checks

    async def probe(name: str, base: str) -> tuple[str, str]:
        try:
            async with gateway.upstreams.session.get(base.rstrip("/") + "/readyz",
                                                     timeout=aiohttp.ClientTimeout(total=3)) as resp:
                return name, "ok" if resp.status == 200 else f"not ready ({resp.status})"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return name, f"unreachable ({type(exc).__name__})"

    checks, services = await asyncio.gather(
        own(), asyncio.gather(*(probe(n, u) for n, u in settings.upstreams().items())))
    ready = all(v == "ok" for v in checks.values()) and all(v == "ok" for _, v in services)
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "service": "gateway", "checks": checks,
         "services": dict(services)},
        status=200 if ready else 503,
    )


async def _metrics(_request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    resp.charset = "utf-8"
    return resp


# --- dead-letter queues ---------------------------------------------------------------------------------------


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    value = positive_int(raw)
    if value is None or value > most:
        raise ApiError.invalid(f"'limit' must be an integer from 1 to {most}.")
    return value


async def _dlq_summary(request: web.Request) -> web.Response:
    service = request.query.get("service") or None
    return ok(request, await request.app[DLQ_KEY].summary(service))


async def _dlq_peek(request: web.Request) -> web.Response:
    spec = spec_of(request.match_info["queue"])
    return ok(request, await request.app[DLQ_KEY].peek(spec, _limit(request, 20, 500)))


async def _dlq_replay(request: web.Request) -> web.Response:
    spec = spec_of(request.match_info["queue"])
    count = await request.app[DLQ_KEY].replay(spec, _limit(request, 1000, 100_000))
    log.info("dead_letters_replayed", queue=spec.dead_letter_name, count=count, request_id=request_id_of(request))
    return ok(request, {"queue": spec.name, "replayed": count})


async def _dlq_purge(request: web.Request) -> web.Response:
    spec = spec_of(request.match_info["queue"])
    count = await request.app[DLQ_KEY].purge(spec)
    log.warning("dead_letters_purged", queue=spec.dead_letter_name, count=count, request_id=request_id_of(request))
    return ok(request, {"queue": spec.name, "purged": count})


# --- revocations from other replicas ------------------------------------------------------------------------


async def _revocations(app: web.Application) -> None:
    """Drop revoked keys from this replica's cache as soon as any replica revokes one (the TTL is the backstop)."""
    gateway = app[GATEWAY_KEY]
    the_bus = app[BUS_KEY]

    def on_event(body: bytes) -> None:
        try:
            event = CloudEvent.from_bytes(body)
            gateway.keys.forget_key(int(event.data["key_id"]))
        except Exception as exc:
            log.warning("revocation_event_unreadable", error=repr(exc))

    if isinstance(the_bus, InProcessBus):
        taps = the_bus.tap(REVOKED_BINDING)
        while True:
            on_event(await taps.get())
    settings = app[SETTINGS_KEY]
    common = settings.common
    assert common.amqp_url is not None
    while True:
        try:
            connection = await aio_pika.connect_robust(
                common.amqp_url, client_properties={"connection_name": "learn-gateway-revocations"}, timeout=10)
            try:
                channel = await connection.channel()
                exchange = await channel.declare_exchange(common.amqp_namespace + EVENTS_EXCHANGE,
                                                          aio_pika.ExchangeType.TOPIC, durable=True)
                # One queue per replica, gone with it: every replica hears every revocation.
                name = f"{common.amqp_namespace}gateway.revocations.{uuid.uuid4().hex[:12]}"
                queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
                await queue.bind(exchange, routing_key=REVOKED_BINDING)
                async with queue.iterator() as messages:
                    async for message in messages:
                        async with message.process():
                            on_event(message.body)
            finally:
                await asyncio.shield(connection.close())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("revocation_listener_failed", error=repr(exc))
            await asyncio.sleep(2)
