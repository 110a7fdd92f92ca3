"""The scorm service: package import, the SCO list, launches and the learner runtime (docs/scorm.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.scorm import api_errors, api_packages, api_runtime, api_uploads, handlers
from services.scorm.config import ScormSettings
from services.scorm.context import SCORM_KEY, build_context
from services.scorm.packages.importer import package_importer
from shared.bus.wiring import EventTable
from shared.events.catalog import CourseArchived, CoursePublished, CourseUnpublished
from shared.events.directory import TenantUpdated, UserUpserted
from shared.events.enrollment import EnrollmentCancelled, EnrollmentCompleted, EnrollmentCreated, EnrollmentExpired
from shared.service import ServiceSpec, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"

#: the read models a launch needs (handlers.py), one queue per purpose (shared/bus/wiring.py)
EVENT_HANDLERS: EventTable = {
    "enrollments": {
        EnrollmentCreated: [handlers.enrollment_changed],
        EnrollmentCancelled: [handlers.enrollment_changed],
        EnrollmentExpired: [handlers.enrollment_changed],
        EnrollmentCompleted: [handlers.enrollment_changed],
    },
    "courses": {
        CoursePublished: [handlers.course_changed],
        CourseUnpublished: [handlers.course_changed],
        CourseArchived: [handlers.course_changed],
    },
    "users": {UserUpserted: [handlers.user_upserted]},
    "tenants": {TenantUpdated: [handlers.tenant_updated]},
}


def setup_routes(app: web.Application) -> None:
    api_packages.setup(app)
    api_uploads.setup(app)
    api_runtime.setup(app)


def create_app(settings: ScormSettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or ScormSettings()
    # Uploads are streamed from request.content, which client_max_size does not bound: the upload handler
    # enforces max_upload_bytes itself, so JSON bodies (commits, launches) keep the default 1 MiB cap.
    spec = ServiceSpec(name="scorm", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       event_handlers=EVENT_HANDLERS, errors=api_errors.ERRORS, deps=lambda app: app[SCORM_KEY],
                       background=[package_importer] if settings.importer_enabled else [])
    app = create_service_app(settings, spec, bus=bus)
    app[SCORM_KEY] = build_context(settings)
    return app
