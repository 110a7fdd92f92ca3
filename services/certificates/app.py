"""The certificates service: certificates issued on ``enrollment.completed``, their PDFs, verification,
revocation, templates and PDF regeneration on ``template.updated`` (docs/certificates.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from services.certificates import handlers, verify_page
from services.certificates.api import certificates as api_certificates
from services.certificates.api import templates as api_templates
from services.certificates.api.common import ERRORS, RUNTIME_KEY
from services.certificates.config import CertificatesSettings
from services.certificates.handlers import Documents, Runtime
from services.certificates.issuing import IssueRunner
from services.certificates.pdf.pool import RenderPool
from services.certificates.regeneration import Regenerator
from shared.blobstore import choose_blob_store
from shared.bus.amqp import AmqpBus
from shared.bus.consumer import ConsumerRunner, Subscription
from shared.bus.wiring import EventTable
from shared.events.certificates import TemplateUpdated
from shared.events.directory import UserUpserted
from shared.events.enrollment import EnrollmentCompleted
from shared.service import DB_KEY, SETTINGS_KEY, BackgroundTask, ServiceSpec, create_service_app, own_amqp_bus

MIGRATIONS = Path(__file__).parent / "migrations"
#: the gateway's admin JSON limit (templates carry base64 logos and backgrounds), plus headroom
ADMIN_BODY_LIMIT = 8 * 1024 * 1024 + 64 * 1024

log = structlog.get_logger("certificates")


def setup_routes(app: web.Application) -> None:
    api_certificates.setup(app)
    api_templates.setup(app)
    verify_page.setup(app)


#: queue purpose -> payload -> handlers (shared/bus/wiring.py); issuing, regeneration and the directory each have
#: their own queue, so that thousands of regenerations never hold up an issue
EVENT_HANDLERS: EventTable = {
    "issue": {EnrollmentCompleted: [handlers.issue_certificate]},
    "regenerate": {TemplateUpdated: [handlers.record_regeneration]},
    "users": {UserUpserted: [handlers.user_upserted]},
}


def consumer_runner(app: web.Application, subscription: Subscription) -> ConsumerRunner:
    """The issue queue renders its certificates before the consumer's transaction (issuing.py, ADR 0024)."""
    if subscription.queue.purpose == "issue":
        return IssueRunner(app[DB_KEY], subscription, "certificates", app[RUNTIME_KEY])
    return ConsumerRunner(app[DB_KEY], subscription, "certificates")


async def regeneration_worker(app: web.Application) -> None:
    """The background job (see ``ServiceSpec.background``): regeneration lanes until the service stops."""
    settings = app[SETTINGS_KEY]
    assert isinstance(settings, CertificatesSettings)
    regenerator = Regenerator(app[DB_KEY], app[RUNTIME_KEY], batch_size=settings.regeneration_batch_size,
                              lanes=settings.lanes, poll_interval=settings.regeneration_poll_interval)
    await regenerator.run()


def _runtime_ctx(settings: CertificatesSettings,
                 own_bus: AmqpBus | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool = RenderPool(settings.render_workers)
        try:
            await pool.start()
            blobs = choose_blob_store(settings.blob_store, app[DB_KEY], settings.common.data_dir / "certificates-blobs")
            documents = Documents(pool, blobs, settings.common.public_url)
            app[RUNTIME_KEY].start(documents)
            log.info("certificates_runtime_started", render_workers=settings.render_workers,
                     blob_store=type(documents.blobs).__name__)
            yield
            if own_bus is not None:
                # The bus context (cleaned up before this one) stopped the relay and the lanes, but not the
                # consumers of a bus it does not own: stop them before the pool they render with, or a delivery
                # in flight fails against a closed pool and is handed back as a failure (toward its limit).
                await own_bus.close()
            await documents.close()
        finally:
            if own_bus is not None:
                await own_bus.close()  # nothing to do when closed above; a failed start still closes it
            app[RUNTIME_KEY].stop()
            await pool.close()

    return ctx


def create_app(settings: CertificatesSettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or CertificatesSettings()
    background: list[BackgroundTask] = [regeneration_worker] if settings.regeneration_enabled else []
    spec = ServiceSpec(name="certificates", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       event_handlers=EVENT_HANDLERS, deps=lambda app: app[RUNTIME_KEY], background=background,
                       client_max_size=ADMIN_BODY_LIMIT, errors=ERRORS, consumer_runner=consumer_runner)
    # The broker connection, with the service's own consumer batches and concurrency (config.py): an issue batch
    # is rendered at once, over every worker, before its transaction (issuing.py).
    own_bus = own_amqp_bus(settings.common, "certificates", concurrency=settings.consumer_concurrency,
                           batch_size=settings.consumer_batch_size) if bus is None else None
    app = create_service_app(settings, spec, bus=bus if bus is not None else own_bus)
    app[RUNTIME_KEY] = Runtime()
    # After the database opens and before the bus starts consumers and background jobs, which need it.
    app.cleanup_ctx.insert(1, _runtime_ctx(settings, own_bus))
    return app
