"""The webhooks service: every event of every tenant, delivered signed to the tenants' HTTPS endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.webhooks import handlers
from services.webhooks.api import ERRORS, setup_routes
from services.webhooks.config import WebhooksSettings
from services.webhooks.delivery import deliver_forever
from shared.bus.wiring import EventTable
from shared.events import ALL_MODELS
from shared.service import SETTINGS_KEY, ServiceSpec, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"

EVENT_HANDLERS: EventTable = {
    "events": {model: [handlers.event_received] for model in ALL_MODELS},
}


def create_app(settings: WebhooksSettings | None = None, *, bus: Any = None) -> web.Application:
    spec = ServiceSpec(name="webhooks", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       event_handlers=EVENT_HANDLERS, errors=ERRORS,
                       deps=lambda app: handlers.Deps(app[SETTINGS_KEY]),  # type: ignore[arg-type]
                       background=[deliver_forever])
    return create_service_app(settings or WebhooksSettings(), spec, bus=bus)
