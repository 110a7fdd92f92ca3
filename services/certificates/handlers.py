"""Certificates use cases: one function per command, query and event. Each takes a unit of work, and commands
open and commit their own transaction (``async with uow``); event handlers run in the consumer's.

Issuing commits in the consumer's inbox transaction (ADR 0006): the PDF is stored with the certificate row and
``certificate.issued``, committed together (see :class:`Documents`), so a certificate never exists without its
PDF; a crash before the commit leaves nothing (with the filesystem store, at most an orphan file) and the
redelivered message issues again. The render itself happens *before* that transaction (ADR 0024,
:func:`prerender`, run by ``issuing.IssueRunner``): the transaction checks, under the templates lock, that the
template, issuer and recipient are still what was rendered, and renders again inside only if one changed.

One enrollment gets one certificate: the inbox drops a repeated event, a lookup skips a repeat under a new
event id, and the unique key ``(tenant_id, enrollment_id)`` settles concurrent ones.

Tenants and directory users are read models: tenants are remembered from the gateway's forwarded headers and
from events (``enrollment.completed`` carries ``tenant_name``); users come from ``user.upserted``, applied by
``revision`` and never backwards. A rename does not re-render existing PDFs (see docs/certificates.md): the name
is used by the next render of the certificate (regenerate-pdf, revoke, a template change), which also updates
the certificate's ``recipient_name`` so that the API, the PDF and the verification page agree.

Errors are domain errors (services/certificates/domain.py); the API maps them to the error envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

import structlog
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates import domain, events, store
from services.certificates.domain import (
    AlreadyRevoked,
    CertificateBusy,
    CertificateNotFound,
    ConcurrentChange,
    Facts,
    KnownTenant,
    RenderUnavailable,
    TemplateNotFound,
)
from services.certificates.pdf.pool import RenderFailed, RenderPool
from services.certificates.pdf.spec import CertificateData, TemplateSpec
from services.certificates.store import Rendered
from shared.blobstore import BlobInfo, BlobStore, DatabaseBlobStore
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent, Origin
from shared.db import TenantScope, utcnow
from shared.events.certificates import TemplateUpdated
from shared.events.directory import UserUpserted
from shared.events.enrollment import EnrollmentCompleted
from shared.uow import UnitOfWork

log = structlog.get_logger("certificates.handlers")


# --- documents: a certificate's PDF, rendered in the pool and kept in the blob store --------------------------

_STORE_CONCURRENCY = 8
_documents_log = structlog.get_logger("certificates.documents")


class Documents:
    """The render pool, the blob store and the public base URL, as the use cases need them.

    How a PDF is stored depends on the blob store: database (the default with PostgreSQL): its rows are written in
    the *same* transaction as the certificate row that points at them (store.py), and a superseded version is
    deleted in it too; nothing is ever orphaned. Filesystem (the embedded default): files cannot join a
    transaction, so a PDF is written before the row that points at it commits, and a superseded one is deleted
    after. A crash in between leaves an orphan file, never a certificate without its PDF.
    """

    def __init__(self, pool: RenderPool, blobs: BlobStore, public_url: str):
        self.pool = pool
        self.blobs = blobs
        self.public_url = public_url.rstrip("/")
        self.transactional = isinstance(blobs, DatabaseBlobStore)
        self._store_slots = asyncio.Semaphore(_STORE_CONCURRENCY)
        self._background: set[asyncio.Task[None]] = set()
        self.template_rows = store.TemplateRows()

    def certificate_data(self, facts: Facts) -> CertificateData:
        return CertificateData(
            recipient_name=facts.recipient_name,
            course_title=facts.course_title,
            credit_hours=facts.credit_hours,
            credit_kind=facts.credit_kind,
            issued_at=facts.issued_at,
            expires_at=facts.expires_at,
            verification_id=facts.verification_id,
            verification_url=domain.verification_url(self.public_url, facts.verification_id),
            revoked=facts.revoked_at is not None,
            revoked_at=facts.revoked_at,
            revoked_reason=facts.revoked_reason,
        )

    async def render(self, tenant_id: int, template: TemplateSpec,
                     items: Sequence[tuple[Facts, int]]) -> list[Rendered]:
        """Render each ``(facts, pdf_version)`` with ``template``, in the worker pool; results keep the order."""
        pdfs = await self.pool.render_many(template, [self.certificate_data(facts) for facts, _ in items])
        return [Rendered(store.pdf_key(tenant_id, facts.verification_id, version), pdf, hashlib.sha256(pdf).hexdigest())
                for (facts, version), pdf in zip(items, pdfs, strict=True)]

    async def store(self, session: AsyncSession, rendered: Sequence[Rendered], *, superseded: Sequence[str] = (),
                    alongside: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Store ``rendered`` (and drop ``superseded`` versions) for ``session``'s transaction, then run the
        ``alongside`` INSERT/UPDATE (with ``params``), whose result is returned.

        Database store on PostgreSQL: everything is one statement, the PDF rows riding as data-modifying CTEs
        of ``alongside`` (round trips are what a certificate costs beyond its render). Files: written now,
        superseded ones left for :meth:`discard_later` after the commit.
        """
        if self.transactional:
            if session.get_bind().dialect.name == "postgresql":
                all_params = {**store.pdf_row_params(rendered, superseded), **(params or {})}
                if alongside is not None:
                    return await session.execute(store.with_pdf_rows(alongside), all_params)
                await session.execute(store.PDF_ROWS_ONLY, all_params)
                return None
            await store.write_pdf_rows(session, rendered, superseded)
        else:
            await self._put_files(rendered)
        return await session.execute(alongside, params or {}) if alongside is not None else None

    async def produce(self, session: AsyncSession, tenant_id: int, template: TemplateSpec,
                      items: Sequence[tuple[Facts, int]]) -> list[BlobInfo]:
        rendered = await self.render(tenant_id, template, items)
        await self.store(session, rendered)
        return [r.info for r in rendered]

    async def _put_files(self, rendered: Sequence[Rendered]) -> None:
        results = await asyncio.gather(*(self._put(r.key, r.data) for r in rendered), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._delete_files([r.key for r in results if isinstance(r, BlobInfo)])
            raise failure

    async def _put(self, key: str, pdf: bytes) -> BlobInfo:
        async with self._store_slots:
            return await self.blobs.put(key, pdf, store.PDF_CONTENT_TYPE)

    async def retract(self, session: AsyncSession, keys: Sequence[str]) -> None:
        """Take back PDFs just produced that no row will point at (a lost race, a failure before commit)."""
        if self.transactional:
            await store.delete_pdf_rows(session, keys)
        else:
            await self._delete_files(keys)

    async def abandon(self, keys: Sequence[str]) -> None:
        """After a rollback: PDFs written outside the transaction are removed (database ones rolled back)."""
        if not self.transactional:
            await self._delete_files(keys)

    def superseded_later(self, keys: Sequence[str]) -> list[str]:
        """Of the old versions replaced in a transaction, those still to delete after it commits (files only:
        database rows were deleted in the transaction by :meth:`store`)."""
        return [] if self.transactional else list(keys)

    def stream(self, key: str) -> AsyncIterator[bytes]:
        return self.blobs.stream(key)

    async def _delete_files(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception as exc:  # an orphan costs storage, not correctness
                _documents_log.warning("certificate_pdf_delete_failed", key=key, error=repr(exc))

    def discard_later(self, keys: Sequence[str]) -> None:
        """Delete superseded files after the caller's transaction committed, without making the caller wait."""
        if not keys:
            return
        task = asyncio.get_running_loop().create_task(self._delete_files(list(keys)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task


class Runtime:
    """What handlers need besides the database (``uow.deps``): the documents (render pool, blob store) opened at
    startup, and the event that wakes the regeneration lanes.

    Created with the app and filled in at startup, so that nothing is added to the app once it is frozen.
    """

    def __init__(self) -> None:
        self._documents: Documents | None = None
        self.wake_regeneration = asyncio.Event()

    @property
    def documents(self) -> Documents:
        if self._documents is None:
            raise RuntimeError("the certificates runtime has not started")
        return self._documents

    def start(self, documents: Documents) -> None:
        self._documents = documents

    def stop(self) -> None:
        self._documents = None


def _docs(uow: UnitOfWork) -> Documents:
    runtime: Runtime = uow.deps
    return runtime.documents


async def _remember_tenant(session: AsyncSession, tenant: KnownTenant, now: datetime,
                           known: KnownTenant | None = None) -> None:
    """Keep the slug and display name; read first and write only on a change, so that concurrent work of one
    tenant does not queue on its row."""
    if known is None:
        row = await store.known_tenant(session, tenant.tenant_id)
        known = None if row is None else KnownTenant(tenant.tenant_id, row.slug, row.name)
    if known == tenant:
        return
    await store.save_tenant(session, tenant.tenant_id, tenant.slug, tenant.name, now)


async def _note_caller(session: AsyncSession, origin: Origin, tenant_name: str | None) -> None:
    """Remember the caller's tenant as the gateway forwards it (the issuer on certificates)."""
    await _remember_tenant(session, domain.tenant_of_request(origin.tenant_id, origin.tenant_slug, tenant_name),
                           utcnow())


# --- events ------------------------------------------------------------------------------------------------


async def issue_certificate(uow: UnitOfWork, event: CloudEvent, payload: EnrollmentCompleted) -> None:
    """``enrollment.completed``: issue the enrollment's certificate unless it has one.

    Runs in the consumer's transaction. Its PDF normally comes from :func:`prerender`, which also read the tenant,
    the directory name and whether the enrollment has a certificate; this transaction then only checks, under the
    tenant's templates lock, that the template is still the version rendered (once per transaction and tenant),
    and writes. Without a PDF rendered before (or with an older template), it looks everything up and renders
    here, holding its connection meanwhile. A concurrent twin loses on the unique key either way.
    """
    try:
        domain.check_completion(payload)
    except domain.UnusableEvent as exc:
        raise PermanentError(str(exc)) from None
    if not event.tenantid or event.tenantid < 1:
        raise PermanentError("unknown tenant: the event carries no tenant id")
    docs = _docs(uow)
    async with uow:
        session = uow.session
        now = utcnow()
        ready = _take_prerendered(event.id)
        template: Any | None = None
        if ready is not None:
            template = await _locked_template(session, docs, event.tenantid, payload.course.certificate_template_id)
            if _template_key(template) != ready.template_key:
                log.info("certificate_prerender_stale", rendered_with=ready.template_key,
                         current=_template_key(template))
                ready = None
        if ready is not None:
            tenant, facts, pdf = ready.tenant, ready.facts, ready.pdf
            if tenant != ready.known:
                await _remember_tenant(session, tenant, now, ready.known)
        else:
            found = await store.issue_lookup(session, event.tenantid, payload.enrollment_id, payload.user.id)
            _tx_cache(session).locked.add(event.tenantid)  # the lookup took the templates lock
            known = KnownTenant(event.tenantid, found.tenant_slug, found.tenant_name) if found.tenant_slug else None
            try:
                tenant = domain.tenant_from_event(event.tenantid, event.tenant, payload.tenant_name, known)
            except domain.UnknownTenant as exc:
                raise PermanentError(f"unknown tenant: {exc}") from None
            if tenant != known:
                await _remember_tenant(session, tenant, now, known)
            if found.existing is not None:
                log.info("certificate_already_issued", certificate_id=found.existing,
                         enrollment_id=payload.enrollment_id)
                return
            template = await _locked_template(session, docs, tenant.tenant_id, payload.course.certificate_template_id)
            facts = domain.facts_of_completion(payload, found.user_name, now)
            (pdf,) = await docs.render(tenant.tenant_id, domain.spec_of(template, tenant.name), [(facts, 1)])
        template_id = template.id if template is not None else None
        values = {
            "tenant_id": tenant.tenant_id, "enrollment_id": payload.enrollment_id, "user_id": payload.user.id,
            "course_id": payload.course.id, "course_version": payload.course.version, "template_id": template_id,
            "verification_id": facts.verification_id, "recipient_name": facts.recipient_name,
            "course_title": facts.course_title, "credit_hours": facts.credit_hours, "credit_kind": facts.credit_kind,
            "issued_at": facts.issued_at, "expires_at": facts.expires_at,
            **store.pdf_columns(pdf.info, 1, template.version if template is not None else 1, now),
            "created_at": now, "updated_at": now,
        }
        insert, params = store.issue_insert(session, values)
        try:
            certificate_id = (await docs.store(session, [pdf], alongside=insert, params=params)).scalar()
        except BaseException:
            await docs.abandon([pdf.key])
            raise
        if certificate_id is None:  # the enrollment has its certificate (a twin delivery, or one issued meanwhile)
            await docs.retract(session, [pdf.key])
            log.info("certificate_issue_lost_race", enrollment_id=payload.enrollment_id)
            return
        origin = Origin(tenant.tenant_id, tenant.slug, event.requestid)
        await uow.emit(events.certificate_issued(
            origin, certificate_id, payload, template_id, facts,
            domain.verification_url(docs.public_url, facts.verification_id)))
    log.info("certificate_issued", certificate_id=certificate_id, enrollment_id=payload.enrollment_id,
             template_id=template_id, pdf_bytes=len(pdf.data))


# --- issuing: the render before the consumer's transaction (ADR 0024) ------------------------------------------

@dataclass
class _TxState:
    """Per issuing transaction: tenants whose templates lock it holds, and the templates it read under it (no
    template write can commit before this transaction does, so they stay current)."""

    transaction: Any
    locked: set[int]
    templates: dict[tuple[int, int | None], Any]


def _tx_cache(session: AsyncSession) -> _TxState:
    transaction = session.get_transaction()
    state = session.info.get("certificates_tx")
    if state is None or state.transaction is not transaction:
        state = _TxState(transaction, set(), {})
        session.info["certificates_tx"] = state
    return cast(_TxState, state)


async def _locked_template(session: AsyncSession, docs: Documents, tenant_id: int, template_id: int | None) -> Any:
    """The template a certificate of ``tenant_id`` naming ``template_id`` uses (None: the built-in), read under
    the tenant's shared templates lock, taken and read once per transaction."""
    state = _tx_cache(session)
    key = (tenant_id, template_id)
    if key not in state.templates:
        if tenant_id not in state.locked:
            await store.hold_templates(session, tenant_id)
            state.locked.add(tenant_id)
        state.templates[key] = await store.template_for_render(session, tenant_id, template_id,
                                                               rows=docs.template_rows)
    return state.templates[key]


def _template_key(template: Any | None) -> tuple[int, int] | None:
    return (template.id, template.version) if template is not None else None


@dataclass(frozen=True)
class Prerendered:
    """A certificate rendered before its transaction, and what the render was made of."""

    template_key: tuple[int, int] | None  # the template's (id, version); None: the built-in
    tenant: KnownTenant
    known: KnownTenant | None  # the tenant as remembered when the render was planned
    facts: Facts
    pdf: Rendered


#: The current delivery batch's renders by event id (set by ``issuing.IssueRunner`` around the consumer's
#: transaction, taken by :func:`issue_certificate` inside it).
PRERENDERED: ContextVar[dict[str, Prerendered] | None] = ContextVar("certificates_prerendered", default=None)


def _take_prerendered(event_id: str) -> Prerendered | None:
    prerendered = PRERENDERED.get()
    return prerendered.pop(event_id, None) if prerendered is not None else None


async def prerender(uow: UnitOfWork, deliveries: Sequence[tuple[CloudEvent, EnrollmentCompleted]]
                    ) -> dict[str, Prerendered]:
    """Render the certificates these ``enrollment.completed`` deliveries will issue, before their transaction.

    One short read-only transaction finds what a render depends on (the template, the issuer, the directory name;
    no lock: the issuing transaction checks them again under the templates lock); its connection is returned
    before the renders, which run over every worker at once. Deliveries that will not issue (unusable, unknown
    tenant, already issued) are left out; a failure leaves the rest to be rendered inside the transaction.
    """
    usable: dict[int, list[tuple[CloudEvent, EnrollmentCompleted]]] = {}
    for event, payload in deliveries:
        try:
            domain.check_completion(payload)
        except domain.UnusableEvent:
            continue
        if event.tenantid and event.tenantid > 0:
            usable.setdefault(event.tenantid, []).append((event, payload))
    if not usable:
        return {}
    docs = _docs(uow)
    now = utcnow()
    plans: dict[Any, tuple[TemplateSpec, list[tuple[CloudEvent, Prerendered]]]] = {}
    async with uow:
        session = uow.session
        for tenant_id, items in usable.items():
            known_row = await store.known_tenant(session, tenant_id)
            known = None if known_row is None else KnownTenant(tenant_id, known_row.slug, known_row.name)
            issued = await store.issued_enrollments(session, tenant_id, [p.enrollment_id for _, p in items])
            names = await store.current_names(session, tenant_id, [p.user.id for _, p in items])
            templates: dict[int | None, Any] = {}
            for event, payload in items:
                if payload.enrollment_id in issued:
                    continue
                try:
                    tenant = domain.tenant_from_event(tenant_id, event.tenant, payload.tenant_name, known)
                except domain.UnknownTenant:
                    continue
                wanted = payload.course.certificate_template_id
                if wanted not in templates:
                    templates[wanted] = await store.template_for_render(session, tenant_id, wanted,
                                                                        rows=docs.template_rows)
                template = templates[wanted]
                plan = Prerendered(_template_key(template), tenant, known,
                                   domain.facts_of_completion(payload, names.get(payload.user.id), now),
                                   Rendered("", b"", ""))
                group = (tenant_id, plan.template_key, tenant.name)
                if group not in plans:
                    plans[group] = (domain.spec_of(template, tenant.name), [])
                plans[group][1].append((event, plan))

    async def render(group: Any) -> list[tuple[str, Prerendered]]:
        spec, items = plans[group]
        pdfs = await docs.render(group[0], spec, [(plan.facts, 1) for _, plan in items])
        return [(event.id, replace(plan, pdf=pdf)) for (event, plan), pdf in zip(items, pdfs, strict=True)]

    rendered = await asyncio.gather(*(render(group) for group in plans))
    return dict(pair for group in rendered for pair in group)


async def record_regeneration(uow: UnitOfWork, event: CloudEvent, payload: TemplateUpdated) -> None:
    """``template.updated``: remember that this template version needs its certificates re-rendered (the
    regeneration lanes render them, never the consumer)."""
    async with uow:
        await store.add_regeneration_job(uow.session, {
            "tenant_id": event.tenantid, "tenant_slug": event.tenant, "template_id": payload.template_id,
            "template_version": payload.version, "request_id": event.requestid, "created_at": utcnow(),
        })
        runtime: Runtime | None = uow.deps
        if runtime is not None:
            wake = runtime.wake_regeneration
            # Wake the lanes when the job is visible, not before.
            sa_event.listen(uow.session.sync_session, "after_commit", lambda _session: wake.set(), once=True)
    log.info("regeneration_recorded", template_id=payload.template_id, template_version=payload.version)


async def user_upserted(uow: UnitOfWork, event: CloudEvent, payload: UserUpserted) -> None:
    """``user.upserted``: the newest revision wins; a late or repeated event changes nothing."""
    async with uow:
        await store.save_user(uow.session, event.tenantid, payload.user_id, {
            "name": payload.name, "email": payload.email, "revision": payload.revision,
            "updated_at": payload.updated_at})


# --- re-rendering: revoke, regenerate one, a regeneration batch --------------------------------------------


async def _rerender(uow: UnitOfWork, origin: Origin, rows: list[Any], template: Any | None, now: datetime, *,
                    revoke: tuple[datetime, str] | None = None) -> list[str]:
    """Give each certificate row (locked by the caller, all of one tenant) a new PDF version with ``template``
    (None: the built-in default), the current directory name, and — with ``revoke`` — the REVOKED mark.

    Writes the rows and one ``certificate.pdf_regenerated`` each (plus ``certificate.revoked``); returns the keys
    of superseded PDFs still to delete once the transaction has committed (see :meth:`Documents.discard_later`;
    none with the database store, where they go in the same transaction).
    """
    if not rows:
        return []
    docs, session = _docs(uow), uow.session
    names = await store.current_names(session, origin.tenant_id, [row.user_id for row in rows])
    issuer = (await store.tenant_names(session, [origin.tenant_id])).get(origin.tenant_id, origin.tenant_slug)
    template_id = template.id if template is not None else None
    template_version = template.version if template is not None else 1
    items: list[tuple[Facts, int]] = []
    for row in rows:
        changes: dict[str, Any] = {"recipient_name": names.get(row.user_id, row.recipient_name)[:200]}
        if revoke is not None:
            changes.update(revoked_at=revoke[0], revoked_reason=revoke[1])
        items.append((Facts.of_row(row, **changes), row.pdf_version + 1))
    rendered = await docs.render(origin.tenant_id, domain.spec_of(template, issuer), items)
    pdfs = [pdf.info for pdf in rendered]
    superseded = [row.pdf_key for row in rows]
    try:
        await docs.store(session, rendered, superseded=superseded)
        written = await store.write_pdf_versions(session, rows, items, pdfs, template_id, template_version, now,
                                                 revoking=revoke is not None)
        if written != len(rows):
            raise ConcurrentChange(f"{len(rows) - written} certificate(s) changed while their PDFs rendered")
        emitted: list[CloudEvent] = []
        for row, (_, version), pdf in zip(rows, items, pdfs, strict=True):
            if revoke is not None:
                emitted.append(events.certificate_revoked(origin, row, revoke[0], revoke[1]))
            emitted.append(events.pdf_regenerated(origin, row, template_id, template_version, version, pdf.sha256))
        await uow.emit(*emitted)
    except BaseException:
        await docs.abandon([pdf.key for pdf in pdfs])
        raise
    return docs.superseded_later(superseded)


async def _rerender_one(uow: UnitOfWork, origin: Origin, tenant_name: str | None, certificate_id: int,
                        revoke_reason: str | None) -> Any:
    """Revoke or regenerate one certificate: render and write in one transaction, so it happens whole or not at
    all; returns the certificate's row as committed.

    A render that fails (its worker died twice, or no worker is running) raises :class:`RenderUnavailable`; a
    certificate changed by a regeneration batch while it rendered is tried again once, then raises
    :class:`CertificateBusy`. Either way nothing was written and the same request can be sent again.
    """
    docs = _docs(uow)
    for attempt in (1, 2):
        try:
            async with uow:
                session = uow.session
                await _note_caller(session, origin, tenant_name)
                row = await store.get_certificate(session, origin.tenant_id, certificate_id, lock=True,
                                                  course_ids=origin.course_ids)
                if row is None:
                    raise CertificateNotFound()
                if revoke_reason is not None and row.revoked_at is not None:
                    raise AlreadyRevoked()
                template = await store.template_for_render(session, origin.tenant_id, row.template_id, lock=True,
                                                           rows=docs.template_rows)
                if revoke_reason is not None:
                    superseded = await _rerender(uow, origin, [row], template, utcnow(),
                                                 revoke=(utcnow(), revoke_reason))
                    log.info("certificate_revoked", certificate_id=certificate_id)
                else:
                    superseded = await _rerender(uow, origin, [row], template, utcnow())
                row = await store.get_certificate(session, origin.tenant_id, certificate_id)
                if row is None:
                    raise CertificateNotFound()
        except RenderFailed as exc:
            log.warning("certificate_render_unavailable", certificate_id=certificate_id, error=str(exc))
            raise RenderUnavailable() from None
        except ConcurrentChange:
            if attempt == 2:
                raise CertificateBusy() from None
            continue
        docs.discard_later(superseded)
        return row
    raise AssertionError("unreachable")


async def revoke_certificate(uow: UnitOfWork, origin: Origin, certificate_id: int, reason: str, *,
                             tenant_name: str | None = None) -> Any:
    """Revoke: a new PDF version with the REVOKED mark (``certificate.revoked`` + ``certificate.pdf_regenerated``)."""
    return await _rerender_one(uow, origin, tenant_name, certificate_id, reason)


async def regenerate_certificate_pdf(uow: UnitOfWork, origin: Origin, certificate_id: int, *,
                                     tenant_name: str | None = None) -> Any:
    """A new PDF with the current template (the certificate's, else the tenant's default); same vid and URL."""
    return await _rerender_one(uow, origin, tenant_name, certificate_id, None)


@dataclass(frozen=True)
class RegenerationJob:
    """The open regeneration of one template (its jobs for every version not yet finished)."""

    tenant_id: int
    tenant_slug: str
    template_id: int
    request_id: str | None


async def open_regeneration_jobs(uow: UnitOfWork) -> list[RegenerationJob]:
    async with uow:
        rows = await store.open_regeneration_jobs(uow.session)
    return [RegenerationJob(row.tenant_id, row.tenant_slug, row.template_id, row.request_id) for row in rows]


async def regenerate_batch(uow: UnitOfWork, job: RegenerationJob, batch_size: int) -> tuple[int, int | None]:
    """Re-render one batch of the job's certificates still below the template's current version (rows locked
    with ``SKIP LOCKED``, so lanes and replicas never share one); finishes the job when none is left, counted
    without skipping (a batch held by a lane that then dies keeps its job open).

    Returns ``(certificates regenerated, template version)``. Raises :class:`ConcurrentChange` when a
    certificate changed while its batch rendered (nothing of the batch is written; it is claimed again).
    """
    docs = _docs(uow)
    async with uow:
        session = uow.session
        # The template's current version (its full row cached per version: batches do not reload assets).
        version = await store.template_version(session, job.tenant_id, job.template_id)
        template = (None if version is None
                    else await docs.template_rows.get(session, job.tenant_id, job.template_id, version))
        if template is None:
            await _finish(session, job, None)
            return 0, None
        rows = await store.claim_behind(session, job.tenant_id, job.template_id, template.version, batch_size)
        if not rows:
            if not await store.count_behind(session, job.tenant_id, job.template_id, template.version):
                await _finish(session, job, template.version)
            return 0, template.version
        origin = Origin(job.tenant_id, job.tenant_slug, job.request_id)
        superseded = await _rerender(uow, origin, rows, template, utcnow())
    docs.discard_later(superseded)
    return len(rows), template.version


async def _finish(session: AsyncSession, job: RegenerationJob, version: int | None) -> None:
    if await store.finish_regeneration_jobs(session, job.tenant_id, job.template_id, utcnow(), version):
        log.info("regeneration_finished", template_id=job.template_id, template_version=version)


async def regeneration_pending(uow: UnitOfWork) -> int:
    """Certificates waiting for a new PDF across every open job."""
    async with uow:
        return await store.regeneration_pending(uow.session)


# --- certificate queries -----------------------------------------------------------------------------------


async def list_certificates(uow: UnitOfWork, tenant_id: int, filters: dict[str, Any], after_id: int | None,
                            limit: int, *, course_ids: frozenset[int] | None = None) -> list[Any]:
    async with uow:
        return await store.list_certificates(uow.session, tenant_id, filters, after_id, limit, course_ids=course_ids)


async def get_certificate(uow: UnitOfWork, tenant_id: int, certificate_id: int, *,
                          course_ids: frozenset[int] | None = None) -> Any:
    """``course_ids``: a per-course key's courses (ADR 0019); another course's certificate is not found."""
    async with uow:
        row = await store.get_certificate(uow.session, tenant_id, certificate_id, course_ids=course_ids)
    if row is None:
        raise CertificateNotFound()
    return row


async def find_certificate(uow: UnitOfWork, tenant_id: int, verification_id: str, *,
                           course_ids: frozenset[int] | None = None) -> Any:
    """By verification id, within the tenant (another tenant's vid answers like an unknown one)."""
    if not domain.is_verification_id(verification_id):
        raise CertificateNotFound()
    row = await store.read_by_verification_id(uow, verification_id, TenantScope(tenant_id, course_ids))
    if row is None:
        raise CertificateNotFound()
    return row


async def verification(uow: UnitOfWork, verification_id: str) -> tuple[Any, str]:
    """The public verification page's facts: the certificate (any tenant) and its issuer's name."""
    if not domain.is_verification_id(verification_id):
        raise CertificateNotFound()
    async with uow:
        row = await store.certificate_by_verification_id(uow.session, verification_id)
        if row is None:
            raise CertificateNotFound()
        issuer = (await store.tenant_names(uow.session, [row.tenant_id])).get(row.tenant_id, "")
    return row, issuer


async def certificate_pdf(uow: UnitOfWork, tenant_id: int, certificate_id: int, *,
                          course_ids: frozenset[int] | None = None) -> tuple[Any, AsyncIterator[bytes]]:
    """The certificate and its current PDF's bytes (the stream opens at its first chunk, not before)."""
    row = await get_certificate(uow, tenant_id, certificate_id, course_ids=course_ids)
    return row, _docs(uow).stream(row.pdf_key)


# --- templates ---------------------------------------------------------------------------------------------


async def create_template(uow: UnitOfWork, origin: Origin, fields: dict[str, Any], *,
                          tenant_name: str | None = None) -> Any:
    """``fields`` are validated; an absent ``is_default`` makes a tenant's first template its default. Every
    change emits ``template.created``/``template.updated`` (a default taken from another template is a change of
    that template too). Returns the new template, described."""
    now = utcnow()
    async with uow:
        session = uow.session
        await _note_caller(session, origin, tenant_name)
        await store.hold_templates(session, origin.tenant_id, exclusive=True)
        values = {**domain.TEMPLATE_DEFAULTS, **fields}
        if "is_default" not in fields:
            values["is_default"] = not await store.has_default(session, origin.tenant_id)
        if values["is_default"]:
            await _take_default(uow, origin, None, now)
        row = await store.insert_template(session, origin.tenant_id, store.template_values(values), now)
        await uow.emit(events.template_created(origin, row))
        log.info("template_created", template_id=row.id, is_default=row.is_default)
        return await store.described_template(session, origin.tenant_id, row.id)


async def update_template(uow: UnitOfWork, origin: Origin, template_id: int, changes: dict[str, Any], *,
                          tenant_name: str | None = None) -> Any:
    """Apply ``changes`` (validated; omitted fields keep their value, ``None`` clears an optional one). Nothing
    actually changed: no new version and no event. Returns the template, described."""
    now = utcnow()
    async with uow:
        session = uow.session
        await _note_caller(session, origin, tenant_name)
        await store.hold_templates(session, origin.tenant_id, exclusive=True)
        current = await store.locked_template(session, origin.tenant_id, template_id)
        if current is None:
            raise TemplateNotFound()
        values = store.template_values(changes)
        changed = {k: v for k, v in values.items() if getattr(current, k) != v}
        if changed:
            if changed.get("is_default"):
                await _take_default(uow, origin, template_id, now)
            row = await store.update_template(session, origin.tenant_id, template_id, changed, now)
            await uow.emit(events.template_updated(origin, row))
            log.info("template_updated", template_id=row.id, version=row.version, fields=sorted(changed))
        return await store.described_template(session, origin.tenant_id, template_id)


async def _take_default(uow: UnitOfWork, origin: Origin, keep_id: int | None, now: datetime) -> None:
    for row in await store.take_default(uow.session, origin.tenant_id, keep_id, now):
        await uow.emit(events.template_updated(origin, row))


async def list_templates(uow: UnitOfWork, tenant_id: int, after_id: int | None, limit: int) -> list[Any]:
    async with uow:
        return await store.list_templates(uow.session, tenant_id, after_id, limit)


async def get_template(uow: UnitOfWork, tenant_id: int, template_id: int) -> Any:
    async with uow:
        row = await store.described_template(uow.session, tenant_id, template_id)
    if row is None:
        raise TemplateNotFound()
    return row


async def regeneration_progress(uow: UnitOfWork, tenant_id: int, template_id: int) -> dict[str, Any]:
    """How many of the template's live (non-revoked) certificates already show its current version."""
    async with uow:
        template = await store.described_template(uow.session, tenant_id, template_id)
        if template is None:
            raise TemplateNotFound()
        total, done = await store.regeneration_progress(uow.session, tenant_id, template_id, template.version)
    return {"template_id": template_id, "version": template.version, "total": total, "done": done,
            "pending": total - done, "finished": done == total}


async def preview_template(uow: UnitOfWork, tenant_id: int, template_id: int | None, fields: dict[str, Any],
                           issuer_name: str, sample: CertificateData) -> bytes:
    """Render ``sample`` with the posted ``fields`` (over ``template_id``'s, over the defaults); nothing stored."""
    values: dict[str, Any] = {"name": "Preview", **domain.TEMPLATE_DEFAULTS}
    if template_id is not None:
        async with uow:
            row = await store.template_row(uow.session, tenant_id, template_id)
        if row is None:
            raise TemplateNotFound()
        values.update({k: getattr(row, k) for k in values})
    values.update(fields)
    return await _docs(uow).pool.render(domain.preview_spec(values, issuer_name), sample)
