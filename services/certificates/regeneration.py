"""PDF regeneration after ``template.updated``: a job row per template version, worked off in batches.

- The consumer of ``template.updated`` only records a job ``(tenant, template, version)`` in its inbox
  transaction; rendering never happens in the consumer.
- Lanes (``render_workers + 1`` concurrent loops per process, any number of processes) claim batches of the
  template's certificates with ``FOR UPDATE SKIP LOCKED``: non-revoked ones whose ``pdf_template_version`` is
  below the template's current version. A batch is rendered across the worker pool, stored, and committed with
  each certificate's new ``pdf_template_version`` and one ``certificate.pdf_regenerated`` each. A crash loses
  the uncommitted batch only: its certificates are still below the version and are claimed again. Committed
  ones are never claimed again. So every certificate is regenerated once per template version, crash or not.
- Renders always use the template's *current* version: after two quick edits, a certificate not yet reached
  is rendered once, with the newest version.
- A job is finished when a plain (non-skipping) count finds nothing left, so a batch held by a lane that then
  dies keeps its job open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

import sqlalchemy as sa
import structlog
from aiohttp import web
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates.api_support import RUNTIME_KEY
from services.certificates.certificates import ConcurrentChange, Origin, rerender
from services.certificates.config import CertificatesSettings
from services.certificates.documents import Documents
from services.certificates.store import certificates, regeneration_jobs, templates
from shared.bus.envelope import CloudEvent
from shared.db import Database, insert_ignoring_conflicts, utcnow
from shared.events.certificates import TemplateUpdated
from shared.metrics import REGENERATED, REGENERATION_PENDING
from shared.service import DB_KEY, SETTINGS_KEY

log = structlog.get_logger("certificates.regeneration")

SERVICE = "certificates"
_PROGRESS_EVERY = 5.0


async def record_regeneration(session: AsyncSession, event: CloudEvent, payload: TemplateUpdated,
                              wake: asyncio.Event | None = None) -> None:
    """``template.updated``: remember that this template version needs its certificates re-rendered."""
    await session.execute(insert_ignoring_conflicts(session, regeneration_jobs, {
        "tenant_id": event.tenantid, "tenant_slug": event.tenant, "template_id": payload.template_id,
        "template_version": payload.version, "request_id": event.requestid, "created_at": utcnow(),
    }))
    if wake is not None:
        # Wake the lanes when the job is visible, not before.
        sa_event.listen(session.sync_session, "after_commit", lambda _session: wake.set(), once=True)
    log.info("regeneration_recorded", template_id=payload.template_id, template_version=payload.version)


class _Job:
    __slots__ = ("request_id", "template_id", "tenant_id", "tenant_slug")

    def __init__(self, row: Any):
        self.tenant_id: int = row.tenant_id
        self.tenant_slug: str = row.tenant_slug
        self.template_id: int = row.template_id
        self.request_id: str | None = row.request_id


class Regenerator:
    def __init__(self, db: Database, docs: Documents, *, batch_size: int, lanes: int, poll_interval: float,
                 wake: asyncio.Event | None = None):
        self.db = db
        self.docs = docs
        self.batch_size = batch_size
        # SQLite has no row locks to skip: one lane there, so that no two lanes claim the same rows.
        self.lanes = lanes if db.is_postgres else 1
        self.poll_interval = poll_interval
        self.wake = wake or asyncio.Event()
        self._regenerated = 0

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._lane(n), name=f"regeneration-lane-{n}") for n in range(self.lanes)]
        tasks.append(asyncio.create_task(self._report(), name="regeneration-progress"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _lane(self, number: int) -> None:
        while True:
            try:
                done = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("regeneration_batch_failed", lane=number)
                done = 0
                await asyncio.sleep(1)
            if done:
                continue
            self.wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (shutdown hangs).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self.wake.wait()

    async def step(self) -> int:
        """Regenerate one batch of any open job; returns how many certificates got a new PDF."""
        async with self.db.transaction() as session:
            jobs = [_Job(row) for row in (await session.execute(
                sa.select(regeneration_jobs.c.tenant_id, regeneration_jobs.c.tenant_slug,
                          regeneration_jobs.c.template_id, sa.func.max(regeneration_jobs.c.request_id)
                          .label("request_id"))
                .where(regeneration_jobs.c.finished_at.is_(None))
                .group_by(regeneration_jobs.c.tenant_id, regeneration_jobs.c.tenant_slug,
                          regeneration_jobs.c.template_id)
                .order_by(sa.func.min(regeneration_jobs.c.id)))).all()]
        for job in jobs:
            try:
                done = await self._batch(job)
            except ConcurrentChange:
                log.warning("regeneration_batch_raced", template_id=job.template_id)
                continue
            if done:
                return done
        return 0

    async def _template(self, session: AsyncSession, job: _Job) -> Any | None:
        """The template's current version (its full row cached per version: batches do not reload assets)."""
        version = (await session.execute(sa.select(templates.c.version).where(
            templates.c.tenant_id == job.tenant_id, templates.c.id == job.template_id))).scalar()
        if version is None:
            return None
        return await self.docs.template_rows.get(session, job.tenant_id, job.template_id, version)

    async def _batch(self, job: _Job) -> int:
        started = time.perf_counter()
        async with self.db.transaction() as session:
            template = await self._template(session, job)
            if template is None:
                await self._finish(session, job, None)
                return 0
            pending = (
                (certificates.c.tenant_id == job.tenant_id) & (certificates.c.template_id == job.template_id)
                & certificates.c.revoked_at.is_(None) & (certificates.c.pdf_template_version < template.version)
            )
            rows = list((await session.execute(
                sa.select(certificates).where(pending).order_by(certificates.c.id).limit(self.batch_size)
                .with_for_update(skip_locked=True))).all())
            if not rows:
                left = (await session.execute(sa.select(sa.func.count()).select_from(certificates)
                                              .where(pending))).scalar()
                if not left:
                    await self._finish(session, job, template.version)
                return 0
            origin = Origin(job.tenant_id, job.tenant_slug, job.request_id)
            superseded = await rerender(session, self.docs, origin, rows, template, utcnow())
        self.docs.discard_later(superseded)
        REGENERATED.labels(SERVICE).inc(len(rows))
        self._regenerated += len(rows)
        log.info("regeneration_batch_done", template_id=job.template_id, template_version=template.version,
                 certificates=len(rows), seconds=round(time.perf_counter() - started, 3))
        return len(rows)

    async def _finish(self, session: AsyncSession, job: _Job, version: int | None) -> None:
        stmt = sa.update(regeneration_jobs).where(
            regeneration_jobs.c.tenant_id == job.tenant_id, regeneration_jobs.c.template_id == job.template_id,
            regeneration_jobs.c.finished_at.is_(None))
        if version is not None:
            stmt = stmt.where(regeneration_jobs.c.template_version <= version)
        result = cast(sa.CursorResult[Any], await session.execute(stmt.values(finished_at=utcnow())))
        if result.rowcount:
            log.info("regeneration_finished", template_id=job.template_id, template_version=version)

    async def pending(self) -> int:
        """Certificates waiting for a new PDF across every open job."""
        open_jobs = sa.select(regeneration_jobs.c.tenant_id, regeneration_jobs.c.template_id).where(
            regeneration_jobs.c.finished_at.is_(None)).distinct().subquery()
        stmt = (
            sa.select(sa.func.count()).select_from(certificates)
            .join(templates, (templates.c.id == certificates.c.template_id)
                  & (templates.c.tenant_id == certificates.c.tenant_id))
            .join(open_jobs, (open_jobs.c.tenant_id == certificates.c.tenant_id)
                  & (open_jobs.c.template_id == certificates.c.template_id))
            .where(certificates.c.revoked_at.is_(None),
                   certificates.c.pdf_template_version < templates.c.version)
        )
        async with self.db.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar() or 0)

    async def _report(self) -> None:
        """Progress in metrics and logs: the pending gauge, and a log line while there is work."""
        reported = 0
        while True:
            try:
                left = await self.pending()
                REGENERATION_PENDING.labels(SERVICE).set(left)
                if left or self._regenerated != reported:
                    log.info("regeneration_progress", pending=left, regenerated=self._regenerated)
                    reported = self._regenerated
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("regeneration_progress_unavailable", error=repr(exc))
            await asyncio.sleep(_PROGRESS_EVERY)


async def regeneration_worker(app: web.Application) -> None:
    """The background job (see ``ServiceSpec.background``): lanes until the service stops."""
    settings = app[SETTINGS_KEY]
    assert isinstance(settings, CertificatesSettings)
    runtime = app[RUNTIME_KEY]
    regenerator = Regenerator(app[DB_KEY], runtime.documents, batch_size=settings.regeneration_batch_size,
                              lanes=settings.lanes, poll_interval=settings.regeneration_poll_interval,
                              wake=runtime.wake_regeneration)
    await regenerator.run()
