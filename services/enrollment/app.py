"""The enrollment service: enrollments, cohorts, attempts and completion (docs/enrollment.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from services.enrollment import api, handlers
from services.enrollment.config import EnrollmentSettings
from services.enrollment.sweeper import expiry_sweeper
from shared.bus.amqp import AmqpBus
from shared.bus.wiring import EventTable
from shared.events.catalog import CourseArchived, CourseCreated, CoursePublished, CourseUnpublished, CourseUpdated
from shared.events.directory import UserUpserted
from shared.events.scorm import RuntimeCommitted
from shared.service import ServiceSpec, create_service_app, own_amqp_bus

MIGRATIONS = Path(__file__).parent / "migrations"

#: the queues this service consumes, the payloads each carries and the handlers each runs (shared/bus/wiring.py)
EVENT_HANDLERS: EventTable = {
    "courses": {
        CourseCreated: [handlers.course_changed],
        CourseUpdated: [handlers.course_changed],
        CoursePublished: [handlers.course_published],
        CourseUnpublished: [handlers.course_changed],
        CourseArchived: [handlers.course_changed],
    },
    "users": {UserUpserted: [handlers.user_upserted]},
    "runtime": {RuntimeCommitted: [handlers.runtime_committed]},
}


def _closing(bus: AmqpBus) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        yield
        await bus.close()  # after the bus context stopped consuming (cleanups run in reverse)

    return ctx


def create_app(settings: EnrollmentSettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or EnrollmentSettings()
    spec = ServiceSpec(name="enrollment", migrations_dir=MIGRATIONS, setup_routes=api.setup,
                       event_handlers=EVENT_HANDLERS, errors=api.ERRORS, deps=lambda app: app[api.CACHES_KEY],
                       background=[expiry_sweeper] if settings.sweeper_enabled else [])
    # The broker connection with this service's consumer concurrency and batch size (docs/enrollment.md).
    own_bus = own_amqp_bus(settings.common, "enrollment", concurrency=settings.consumer_concurrency,
                           batch_size=settings.consumer_batch_size) if bus is None else None
    app = create_service_app(settings, spec, bus=bus if bus is not None else own_bus)
    app[api.CACHES_KEY] = handlers.Caches()  # one per app: each app has its own database
    if own_bus is not None:
        app.cleanup_ctx.insert(1, _closing(own_bus))
    return app
