"""The webhooks service: every event of every tenant, delivered signed to the tenants' HTTPS endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from services.webhooks import handlers
from services.webhooks.api import ERRORS, setup_routes
from services.webhooks.config import WebhooksSettings
from services.webhooks.delivery import deliver_forever
from shared.bus.amqp import AmqpBus
from shared.bus.wiring import EventTable
from shared.events import ALL_MODELS
from shared.service import SETTINGS_KEY, ServiceSpec, create_service_app, own_amqp_bus

MIGRATIONS = Path(__file__).parent / "migrations"

EVENT_HANDLERS: EventTable = {
    "events": {model: [handlers.event_received] for model in ALL_MODELS},
}


def _closing(bus: AmqpBus) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        yield
        await bus.close()  # after the bus context stopped consuming (cleanups run in reverse)

    return ctx


def create_app(settings: WebhooksSettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or WebhooksSettings()
    spec = ServiceSpec(name="webhooks", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       event_handlers=EVENT_HANDLERS, errors=ERRORS,
                       deps=lambda app: handlers.Deps(app[SETTINGS_KEY]),  # type: ignore[arg-type]
                       background=[deliver_forever])
    # The broker connection with this service's consumer concurrency and batch size: a few workers taking large
    # batches (every event of a batch costs the transaction almost nothing: see handlers.event_received).
    own_bus = own_amqp_bus(settings.common, "webhooks", concurrency=settings.consumer_concurrency,
                           batch_size=settings.consumer_batch_size) if bus is None else None
    app = create_service_app(settings, spec, bus=bus if bus is not None else own_bus)
    if own_bus is not None:
        app.cleanup_ctx.insert(1, _closing(own_bus))
    return app
