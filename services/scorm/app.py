"""The scorm service: package import, the SCO list, launches and the learner runtime (docs/scorm.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.scorm import api_packages, api_runtime
from services.scorm.config import ScormSettings
from services.scorm.context import SCORM_KEY, build_context
from services.scorm.importer import package_importer
from services.scorm.readmodels import (
    apply_course_event,
    apply_enrollment_event,
    apply_tenant_updated,
    apply_user_upserted,
)
from shared.bus.consumer import Subscription
from shared.bus.topology import queue
from shared.service import ServiceSpec, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def setup_routes(app: web.Application) -> None:
    api_packages.setup(app)
    api_runtime.setup(app)


def subscriptions(app: web.Application) -> list[Subscription]:
    return [
        Subscription(queue("scorm", "enrollments"), apply_enrollment_event),
        Subscription(queue("scorm", "courses"), apply_course_event),
        Subscription(queue("scorm", "users"), apply_user_upserted),
        Subscription(queue("scorm", "tenants"), apply_tenant_updated),
    ]


def create_app(settings: ScormSettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or ScormSettings()
    # Uploads are streamed from request.content, which client_max_size does not bound: the upload handler
    # enforces max_upload_bytes itself, so JSON bodies (commits, launches) keep the default 1 MiB cap.
    spec = ServiceSpec(name="scorm", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       subscriptions=subscriptions,
                       background=[package_importer] if settings.importer_enabled else [])
    app = create_service_app(settings, spec, bus=bus)
    app[SCORM_KEY] = build_context(settings)
    return app
