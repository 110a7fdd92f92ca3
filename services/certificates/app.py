"""The certificates service: certificates issued on ``enrollment.completed``, their PDFs, verification,
revocation, templates and PDF regeneration on ``template.updated`` (docs/certificates.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates import api_certificates, api_templates, verify_page
from services.certificates.api_support import RUNTIME_KEY, Runtime
from services.certificates.certificates import issue_certificate
from services.certificates.config import CertificatesSettings
from services.certificates.documents import Documents
from services.certificates.readmodels import apply_user_upserted
from services.certificates.regeneration import record_regeneration, regeneration_worker
from services.certificates.rendering import RenderPool
from shared.blobstore import choose_blob_store
from shared.bus.amqp import AmqpBus
from shared.bus.consumer import Subscription
from shared.bus.envelope import CloudEvent
from shared.bus.topology import queue
from shared.events.enrollment import EnrollmentCompleted
from shared.service import DB_KEY, BackgroundTask, ServiceSpec, create_service_app, own_amqp_bus

MIGRATIONS = Path(__file__).parent / "migrations"
#: the gateway's admin JSON limit (templates carry base64 logos and backgrounds), plus headroom
ADMIN_BODY_LIMIT = 8 * 1024 * 1024 + 64 * 1024

log = structlog.get_logger("certificates")


def setup_routes(app: web.Application) -> None:
    api_certificates.setup(app)
    api_templates.setup(app)
    verify_page.setup(app)


def subscriptions(app: web.Application) -> list[Subscription]:
    runtime = app[RUNTIME_KEY]

    async def issue(session: AsyncSession, event: CloudEvent, payload: EnrollmentCompleted) -> None:
        await issue_certificate(session, event, payload, runtime.documents)

    return [
        Subscription(queue("certificates", "issue"), issue),
        Subscription(queue("certificates", "regenerate"), partial(record_regeneration,
                                                                   wake=runtime.wake_regeneration)),
        Subscription(queue("certificates", "users"), apply_user_upserted),
    ]


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
            await documents.close()
        finally:
            app[RUNTIME_KEY].stop()
            await pool.close()
            if own_bus is not None:  # runs after the bus context stopped consuming (cleanups run in reverse)
                await own_bus.close()

    return ctx


def create_app(settings: CertificatesSettings | None = None, *, bus: Any = None) -> web.Application:
    settings = settings or CertificatesSettings()
    background: list[BackgroundTask] = [regeneration_worker] if settings.regeneration_enabled else []
    spec = ServiceSpec(name="certificates", migrations_dir=MIGRATIONS, setup_routes=setup_routes,
                       subscriptions=subscriptions, background=background, client_max_size=ADMIN_BODY_LIMIT)
    # The broker connection, with small consumer batches. The shared consumer runs a batch's handlers one after
    # another in one transaction; an issue waits for its render, so a batch of 32 would render 32 certificates in
    # turn while the other workers idle. Batches of a few, several at once, keep every render worker busy.
    own_bus = own_amqp_bus(settings.common, "certificates", concurrency=settings.consumer_concurrency,
                           batch_size=settings.consumer_batch_size) if bus is None else None
    app = create_service_app(settings, spec, bus=bus if bus is not None else own_bus)
    app[RUNTIME_KEY] = Runtime()
    # After the database opens and before the bus starts consumers and background jobs, which need it.
    app.cleanup_ctx.insert(1, _runtime_ctx(settings, own_bus))
    return app
