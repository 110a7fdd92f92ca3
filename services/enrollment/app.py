"""The enrollment service: enrollments, cohorts, attempts and completion (docs/enrollment.md)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from services.enrollment import api_attempts, api_cohorts, api_enrollments
from services.enrollment.attempts import apply_runtime_commit
from services.enrollment.caches import CACHES_KEY, Caches
from services.enrollment.config import EnrollmentSettings
from services.enrollment.readmodels import apply_course_event, apply_user_upserted
from services.enrollment.sweeper import expiry_sweeper
from shared.bus.amqp import AmqpBus
from shared.bus.consumer import Subscription
from shared.bus.topology import queue
from shared.service import ServiceSpec, create_service_app, own_amqp_bus

MIGRATIONS = Path(__file__).parent / "migrations"


def setup_routes(app: web.Application) -> None:
    api_enrollments.setup(app)
    api_cohorts.setup(app)
    api_attempts.setup(app)


def subscriptions(app: web.Application) -> list[Subscription]:
    caches = app[CACHES_KEY]
    return [
        Subscription(queue("enrollment", "courses"), functools.partial(apply_course_event, caches=caches)),
        Subscription(queue("enrollment", "users"), apply_user_upserted),
        Subscription(queue("enrollment", "runtime"), functools.partial(apply_runtime_commit, caches=caches)),
    ]


def _closing(bus: AmqpBus) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        yield
        await bus.close()  # after the bus context stopped consuming (cleanups run in reverse)

    return ctx


def create_app(settings: EnrollmentSettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or EnrollmentSettings()
    spec = ServiceSpec(name="enrollment", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       subscriptions=subscriptions, background=[expiry_sweeper] if settings.sweeper_enabled else [])
    # The broker connection with this service's consumer concurrency and batch size (docs/enrollment.md).
    own_bus = own_amqp_bus(settings.common, "enrollment", concurrency=settings.consumer_concurrency,
                           batch_size=settings.consumer_batch_size) if bus is None else None
    app = create_service_app(settings, spec, bus=bus if bus is not None else own_bus)
    app[CACHES_KEY] = Caches()  # one per app: each app has its own database
    if own_bus is not None:
        app.cleanup_ctx.insert(1, _closing(own_bus))
    return app
