"""The common shape of every service: ``create_service_app(settings, spec)`` wires middlewares, health
endpoints, the database, the bus, the outbox relay, the consumers and background tasks into one aiohttp app.

Resources are opened in ``app.cleanup_ctx`` (closed only if they opened), background tasks are cancelled on exit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.bus import wiring
from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.consumer import ConsumerRunner, Subscription
from shared.bus.inprocess import InProcessBus
from shared.bus.relay import OutboxRelay
from shared.bus.topology import QueueSpec
from shared.bus.wiring import EventTable
from shared.config import CommonSettings, ServiceSettings
from shared.consistency import consistency_middleware
from shared.db import Database, migrate, migrations_applied
from shared.domain_errors import ErrorTable, domain_errors_middleware
from shared.http import (
    SERVICE_NAME_KEY,
    CursorCodec,
    Handler,
    error_middleware,
    install_protocol_error_envelope,
    internal_auth_middleware,
    service_context_middleware,
)
from shared.idempotency import Idempotency, idempotency_middleware
from shared.logging import configure_logging
from shared.metrics import HTTP_DURATION, HTTP_REQUESTS

log = structlog.get_logger("shared.service")


class Bus(Protocol):
    @property
    def ready(self) -> bool: ...
    async def connect(self, *, retry_forever: bool = True) -> None: ...
    async def publish_many(self, messages: list[OutgoingMessage]) -> None: ...
    async def consume(self, spec: QueueSpec, runner: ConsumerRunner) -> None: ...
    async def close(self) -> None: ...


BackgroundTask = Callable[[web.Application], Awaitable[None]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
#: extra sections of ``/readyz`` (e.g. ``{"services": {"catalog": "ok"}}``): ready only if every value is "ok"
Readiness = Callable[[web.Application], Awaitable[dict[str, dict[str, str]]]]


@dataclass
class ServiceSpec:
    name: str
    migrations_dir: Path
    setup_routes: Callable[[web.Application], None]
    subscriptions: Callable[[web.Application], list[Subscription]] = lambda app: []
    #: the service's wiring table (shared/bus/wiring.py): its queues, bindings and dispatch come from it
    event_handlers: EventTable | None = None
    #: the collaborators handlers get as ``uow.deps`` (built once the app exists; None if they need none)
    deps: Callable[[web.Application], Any] = lambda app: None
    background: list[BackgroundTask] = field(default_factory=list)
    client_max_size: int = 1024 * 1024 + 1024
    #: the edge (the gateway) authenticates, identifies and observes each request itself, on its lean path
    #: (ADR 0003): its app gets only the error envelope middleware, not the internal-service ones
    edge: bool = False
    #: the service's own resources, opened in order once the database and the bus are (closed before them)
    contexts: list[CleanupContext] = field(default_factory=list)
    #: more readiness checks, run alongside the database and broker ones
    readiness: Readiness | None = None
    #: the service's one table of domain errors (shared/domain_errors.py): every route answers them through it
    errors: ErrorTable | None = None
    #: the runner of a subscription (default: :class:`ConsumerRunner`); a service may hand a queue to a subclass
    #: that does work before the consumer's transaction opens (certificates render outside it)
    consumer_runner: Callable[[web.Application, Subscription], ConsumerRunner] | None = None


DB_KEY = web.AppKey("db", Database)
BUS_KEY = web.AppKey("bus", Bus)
SETTINGS_KEY = web.AppKey("settings", ServiceSettings)
CURSOR_KEY = web.AppKey("cursors", CursorCodec)
RELAY_KEY = web.AppKey("relay", OutboxRelay)
#: set once every consumer of the service is started (its queues declared and bound): ``/readyz`` waits for it
CONSUMING_KEY = web.AppKey("consuming", asyncio.Event)
SHARED_BUS_KEY = web.AppKey("shared_bus", bool)
IDEMPOTENCY_KEY = web.AppKey("idempotency", Idempotency)


def _metrics_middleware(service: str) -> Middleware:
    # The Prometheus children per label set, looked up once (``labels()`` takes a lock and builds the key each call).
    counters: dict[tuple[str, str, int], Any] = {}
    timers: dict[tuple[str, str], Any] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            method = request.method
            counter = counters.get((route, method, status))
            if counter is None:
                counter = counters[(route, method, status)] = HTTP_REQUESTS.labels(service, route, method,
                                                                                   str(status))
            counter.inc()
            timer = timers.get((route, method))
            if timer is None:
                timer = timers[(route, method)] = HTTP_DURATION.labels(service, route, method)
            timer.observe(time.perf_counter() - start)

    return middleware


def create_service_app(settings: ServiceSettings, spec: ServiceSpec, *, bus: Bus | None = None) -> web.Application:
    common = settings.common
    configure_logging(spec.name, common.log_level, common.log_json)
    install_protocol_error_envelope()
    secret = common.resolved_internal_secret()
    idempotency = Idempotency(lambda: app[DB_KEY], ttl=common.idempotency_ttl, lease=common.idempotency_lease)
    middlewares = [error_middleware] if spec.edge else [
        _metrics_middleware(spec.name),
        service_context_middleware,
        error_middleware,
        internal_auth_middleware(secret),
        consistency_middleware(spec.name, lambda app: app[DB_KEY].engine,
                               lambda app: app[SETTINGS_KEY].common.consistency_wait),
        idempotency_middleware(idempotency),
    ]
    if spec.errors is not None:
        middlewares.append(domain_errors_middleware(spec.errors))  # innermost: as if the route raised ApiError
    app = web.Application(middlewares=middlewares, client_max_size=spec.client_max_size)
    app[SERVICE_NAME_KEY] = spec.name
    app[SETTINGS_KEY] = settings
    app[CURSOR_KEY] = CursorCodec(secret)
    app[SHARED_BUS_KEY] = bus is not None
    app[IDEMPOTENCY_KEY] = idempotency
    app[CONSUMING_KEY] = asyncio.Event()
    if bus is not None:
        app[BUS_KEY] = bus

    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz(spec))
    app.router.add_get("/metrics", _metrics)
    spec.setup_routes(app)

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        url = settings.database_url
        if common.run_migrations_on_start:
            await migrate(url, spec.migrations_dir)
        db = Database(url, pool_size=settings.pool_size)
        app[DB_KEY] = db
        yield
        await db.dispose()

    async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
        if BUS_KEY not in app:
            if common.amqp_url:
                app[BUS_KEY] = _amqp_bus(common, common.amqp_url, spec.name, prefetch=common.amqp_prefetch)
            else:
                app[BUS_KEY] = InProcessBus(delivery_limit=common.amqp_delivery_limit)
        the_bus: Bus = app[BUS_KEY]
        tasks: list[asyncio.Task[None]] = []

        async def start_messaging() -> None:
            await the_bus.connect(retry_forever=True)
            if settings.consumers_enabled:
                subs = list(spec.subscriptions(app))
                if spec.event_handlers is not None:
                    subs += wiring.subscriptions(spec.name, spec.event_handlers, deps=spec.deps(app))
                for sub in subs:
                    runner = (spec.consumer_runner(app, sub) if spec.consumer_runner is not None
                              else ConsumerRunner(app[DB_KEY], sub, spec.name))
                    await the_bus.consume(sub.queue, runner)
            app[CONSUMING_KEY].set()

        tasks.append(asyncio.create_task(start_messaging(), name=f"{spec.name}-messaging"))
        if settings.relay_enabled:
            relay = OutboxRelay(app[DB_KEY], the_bus, service=spec.name, batch_size=common.relay_batch_size,
                                poll_interval=common.relay_poll_interval)
            app[RELAY_KEY] = relay
            tasks.append(asyncio.create_task(relay.run(), name=f"{spec.name}-relay"))
        for job in spec.background:
            tasks.append(asyncio.create_task(_supervised(job, app), name=f"{spec.name}-{job.__name__}"))
        tasks.append(asyncio.create_task(idempotency.sweeper(common.idempotency_sweep_interval),
                                         name=f"{spec.name}-idempotency-sweeper"))
        yield
        for task in tasks:
            task.cancel()
        # Bounded: shutdown ends even if a client library swallows the cancellation of an RPC in flight.
        _done, stuck = await asyncio.wait(tasks, timeout=15) if tasks else (set(), set())
        for task in stuck:
            log.warning("shutdown_task_stuck", task=task.get_name())
        if not app[SHARED_BUS_KEY]:
            await the_bus.close()

    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(bus_ctx)
    app.cleanup_ctx.extend(spec.contexts)
    return app


def own_amqp_bus(common: CommonSettings, service: str, *, concurrency: int, batch_size: int) -> AmqpBus | None:
    """A broker connection with a service's own consumer concurrency and batch size (None without a broker URL).

    Pass it to :func:`create_service_app` as ``bus``; the app then treats it as shared, so the service closes it
    (after the bus context stopped consuming). The prefetch covers every concurrent batch.
    """
    if not common.amqp_url:
        return None
    return _amqp_bus(common, common.amqp_url, service, prefetch=max(common.amqp_prefetch, batch_size * concurrency),
                     concurrency=concurrency, batch_size=batch_size)


def _amqp_bus(common: CommonSettings, url: str, service: str, **tuning: Any) -> AmqpBus:
    """The service's broker connection with the common settings (namespace, delivery limit, reconnect interval)."""
    return AmqpBus(url, service=service, namespace=common.amqp_namespace, delivery_limit=common.amqp_delivery_limit,
                   reconnect_interval=common.amqp_reconnect_interval, **tuning)


async def _supervised(job: BackgroundTask, app: web.Application) -> None:
    """Run a background job forever; a crash is logged and the job restarts after a pause."""
    while True:
        try:
            await job(app)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background_job_crashed", job=job.__name__)
            await asyncio.sleep(2)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": request.app[SERVICE_NAME_KEY]})


def _readyz(spec: ServiceSpec) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def own(app: web.Application) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            db = app[DB_KEY]
            await asyncio.wait_for(db.ping(), timeout=2)
            checks["database"] = "ok"
            checks["migrations"] = "ok" if await migrations_applied(db, spec.migrations_dir) else "pending"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        bus = app.get(BUS_KEY)
        checks["broker"] = "ok" if bus is not None and bus.ready else "unavailable"
        # Not ready before every queue is declared and bound: an event published meanwhile would be routed to no
        # queue of this service, lost for it, and a request waiting for it (read-your-writes) would time out.
        checks["consumers"] = "ok" if app[CONSUMING_KEY].is_set() else "starting"
        return checks

    async def handler(request: web.Request) -> web.Response:
        app = request.app
        extra: dict[str, dict[str, str]] = {}
        if spec.readiness is None:
            checks = await own(app)
        else:
            checks, extra = await asyncio.gather(own(app), spec.readiness(app))
        ready = all(v == "ok" for v in checks.values()) and all(
            v == "ok" for section in extra.values() for v in section.values())
        return web.json_response(
            {"status": "ready" if ready else "not_ready", "service": spec.name, "checks": checks, **extra},
            status=200 if ready else 503,
        )

    return handler


async def _metrics(_request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    resp.charset = "utf-8"
    return resp
