"""The catalog service: courses, versions, and the module/lesson/activity tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.catalog.api import setup_routes
from services.catalog.config import CatalogSettings
from services.catalog.scorm_packages import record_package
from shared.bus.consumer import Subscription
from shared.bus.topology import queue
from shared.service import ServiceSpec, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def subscriptions(app: web.Application) -> list[Subscription]:
    return [Subscription(queue("catalog", "scorm_packages"), record_package)]


def create_app(settings: CatalogSettings | None = None, *, bus: Any = None) -> web.Application:
    spec = ServiceSpec(name="catalog", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       subscriptions=subscriptions)
    return create_service_app(settings or CatalogSettings(), spec, bus=bus)
