"""The catalog service: courses, versions, and the module/lesson/activity tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.catalog import handlers
from services.catalog.api import ERRORS, setup_routes
from services.catalog.config import CatalogSettings
from shared.bus.wiring import EventTable
from shared.events.directory import StaffInvited, StaffUpdated
from shared.events.scorm import ScormPackageArchived, ScormPackageFailed, ScormPackageReady
from shared.service import ServiceSpec, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"

#: queue purpose -> payload model -> handlers (shared/bus/wiring.py); the queues and bindings derive from it
EVENT_HANDLERS: EventTable = {
    "scorm_packages": {
        ScormPackageReady: [handlers.scorm_package_ready],
        ScormPackageFailed: [handlers.scorm_package_failed],
        ScormPackageArchived: [handlers.scorm_package_archived],
    },
    # the gateway's tenant staff: who may be on a course's team (ADR 0021)
    "staff": {
        StaffInvited: [handlers.staff_changed],
        StaffUpdated: [handlers.staff_changed],
    },
}


def create_app(settings: CatalogSettings | None = None, *, bus: Any = None) -> web.Application:
    spec = ServiceSpec(name="catalog", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       event_handlers=EVENT_HANDLERS, errors=ERRORS,
                       deps=lambda app: None)  # the handlers need no collaborators
    return create_service_app(settings or CatalogSettings(), spec, bus=bus)
