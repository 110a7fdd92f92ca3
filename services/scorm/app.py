"""The scorm service: see its README section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.scorm.config import ScormSettings
from shared.bus.consumer import Subscription
from shared.service import ServiceSpec, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def setup_routes(app: web.Application) -> None:
    pass


def subscriptions(app: web.Application) -> list[Subscription]:
    return []


def create_app(settings: ScormSettings | None = None, *, bus: Any = None) -> web.Application:
    spec = ServiceSpec(name="scorm", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       subscriptions=subscriptions)
    return create_service_app(settings or ScormSettings(), spec, bus=bus)
