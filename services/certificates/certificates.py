"""Certificate use cases: issue on ``enrollment.completed``, revoke, regenerate a PDF, look up.

Issuing happens inside the consumer's inbox transaction: the PDF is rendered (in the worker pool) and stored
with the certificate row and ``certificate.issued``, committed together (see documents.py), so a certificate
never exists without its PDF; a crash before the commit leaves nothing (with the filesystem store, at most an
orphan file) and the redelivered message issues again.

One enrollment gets one certificate: the inbox drops a repeated event, a lookup skips a repeat under a new
event id, and the unique key ``(tenant_id, enrollment_id)`` settles concurrent ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates import domain
from services.certificates.documents import Documents, Facts
from services.certificates.domain import KnownTenant
from services.certificates.readmodels import current_names, remember_tenant, tenant_names
from services.certificates.store import certificates, tenants, users, verification_url
from services.certificates.templates import lock_key, spec_of, template_for_render, templates_lock
from shared.blobstore import BlobInfo
from shared.bus import outbox
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent, new_event
from shared.db import TenantScope, utcnow
from shared.events.certificates import CertificateIssued, CertificatePdfRegenerated, CertificateRevoked
from shared.events.enrollment import EnrollmentCompleted
from shared.http import ApiError

log = structlog.get_logger("certificates.issue")


@dataclass(frozen=True)
class Origin:
    """Where a change comes from: the tenant (for event routing) and the request that caused it."""

    tenant_id: int
    tenant_slug: str
    request_id: str | None


def _emit(origin: Origin, event_type: str, payload: Any, certificate_id: int) -> CloudEvent:
    return new_event(event_type, payload, service="certificates", tenant=origin.tenant_slug,
                     tenant_id=origin.tenant_id, subject=f"certificate/{certificate_id}",
                     request_id=origin.request_id)


# --- issuing -----------------------------------------------------------------------------------------------


def _check_payload(payload: EnrollmentCompleted) -> None:
    if payload.status != "completed":
        raise PermanentError(f"enrollment.completed with status {payload.status!r}")
    if not payload.user.name.strip():
        raise PermanentError("enrollment.completed without a user name")
    if not payload.course.title.strip():
        raise PermanentError("enrollment.completed without a course title")


def _issue_lookup(postgres: bool) -> sa.Select[Any]:
    """Everything issuing reads before rendering, in one round trip: the tenant as remembered, a certificate
    the enrollment may already have, the user's directory name; and (PostgreSQL) the shared templates lock, so
    that the template read next is the latest and stays so until this transaction commits. Prebuilt: binds
    ``tenant_id``, ``enrollment_id``, ``user_id`` (and ``lock_tenant``)."""
    tenant = sa.bindparam("tenant_id", type_=sa.BigInteger)

    def scalar(column: Any, *where: Any) -> Any:
        return sa.select(column).where(*where).scalar_subquery()

    lock = [templates_lock().label("templates_locked")] if postgres else []
    return sa.select(
        *lock,
        scalar(tenants.c.slug, tenants.c.tenant_id == tenant).label("tenant_slug"),
        scalar(tenants.c.name, tenants.c.tenant_id == tenant).label("tenant_name"),
        scalar(certificates.c.id, certificates.c.tenant_id == tenant,
               certificates.c.enrollment_id == sa.bindparam("enrollment_id", type_=sa.BigInteger)).label("existing"),
        scalar(users.c.name, users.c.tenant_id == tenant,
               users.c.user_id == sa.bindparam("user_id", type_=sa.BigInteger)).label("user_name"),
    )


_LOOKUP = {postgres: _issue_lookup(postgres) for postgres in (True, False)}


def _issue_insert(dialect: Any) -> Any:
    """The certificate's insert, prebuilt (binds ``c_<column>``); a concurrent twin makes it insert nothing."""
    columns = [c for c in certificates.c if c.name not in ("id", "revoked_at", "revoked_reason")]
    return (dialect.insert(certificates)
            .values({c.name: sa.bindparam(f"c_{c.name}", type_=c.type) for c in columns})
            .on_conflict_do_nothing().returning(certificates.c.id))


_INSERT = {"postgresql": _issue_insert(postgresql), "sqlite": _issue_insert(sqlite)}


async def issue_certificate(session: AsyncSession, event: CloudEvent, payload: EnrollmentCompleted,
                            docs: Documents) -> int | None:
    """Issue the enrollment's certificate unless it has one; returns the new certificate's id (None: it had one)."""
    _check_payload(payload)
    if not event.tenantid or event.tenantid < 1:
        raise PermanentError("unknown tenant: the event carries no tenant id")
    postgres = session.get_bind().dialect.name == "postgresql"
    found = (await session.execute(_LOOKUP[postgres], {
        "tenant_id": event.tenantid, "enrollment_id": payload.enrollment_id, "user_id": payload.user.id,
        "lock_tenant": lock_key(event.tenantid)})).one()
    known = KnownTenant(event.tenantid, found.tenant_slug, found.tenant_name) if found.tenant_slug else None
    try:
        tenant = domain.tenant_from_event(event.tenantid, event.tenant, payload.tenant_name, known)
    except domain.UnknownTenant as exc:
        raise PermanentError(f"unknown tenant: {exc}") from None
    now = utcnow()
    if tenant != known:
        await remember_tenant(session, tenant, now, known)
    if found.existing is not None:
        log.info("certificate_already_issued", certificate_id=found.existing, enrollment_id=payload.enrollment_id)
        return None

    template = await template_for_render(session, tenant.tenant_id, payload.course.certificate_template_id,
                                         rows=docs.template_rows)  # the lookup took the templates lock
    issued_at = payload.completed_at or now  # the day it was earned, even if the message was late
    credit = payload.course.credit
    facts = Facts(
        recipient_name=((found.user_name or "").strip() or payload.user.name.strip())[:200],
        course_title=payload.course.title.strip()[:300],
        credit_hours=credit.hours,
        credit_kind=credit.kind[:64] if credit.kind else None,
        issued_at=issued_at,
        expires_at=domain.expires_at(issued_at, credit.expires_after_months),
        verification_id=domain.new_verification_id(),
    )
    template_id = template.id if template is not None else None
    (pdf,) = await docs.render(tenant.tenant_id, spec_of(template, tenant.name), [(facts, 1)])
    values = {
        "tenant_id": tenant.tenant_id, "enrollment_id": payload.enrollment_id, "user_id": payload.user.id,
        "course_id": payload.course.id, "course_version": payload.course.version, "template_id": template_id,
        "verification_id": facts.verification_id, "recipient_name": facts.recipient_name,
        "course_title": facts.course_title, "credit_hours": facts.credit_hours, "credit_kind": facts.credit_kind,
        "issued_at": facts.issued_at, "expires_at": facts.expires_at,
        **_pdf_columns(pdf.info, 1, template.version if template is not None else 1, now),
        "created_at": now, "updated_at": now,
    }
    insert = _INSERT[session.get_bind().dialect.name]
    try:
        certificate_id = (await docs.store(session, [pdf], alongside=insert,
                                           params={f"c_{k}": v for k, v in values.items()})).scalar()
    except BaseException:
        await docs.abandon([pdf.key])
        raise
    if certificate_id is None:  # a concurrent delivery under another event id won the unique key
        await docs.retract(session, [pdf.key])
        log.info("certificate_issue_lost_race", enrollment_id=payload.enrollment_id)
        return None
    origin = Origin(tenant.tenant_id, tenant.slug, event.requestid)
    await outbox.add(session, _emit(origin, "certificate.issued", CertificateIssued(
        certificate_id=certificate_id, enrollment_id=payload.enrollment_id, user_id=payload.user.id,
        course_id=payload.course.id, template_id=template_id, verification_id=facts.verification_id,
        verification_url=verification_url(docs.public_url, facts.verification_id),
        recipient_name=facts.recipient_name, course_title=facts.course_title, issued_at=facts.issued_at,
        expires_at=facts.expires_at), certificate_id))
    log.info("certificate_issued", certificate_id=certificate_id, enrollment_id=payload.enrollment_id,
             template_id=template_id, pdf_bytes=len(pdf.data))
    return int(certificate_id)


def _pdf_columns(pdf: BlobInfo, version: int, template_version: int, now: datetime) -> dict[str, Any]:
    return {"pdf_key": pdf.key, "pdf_sha256": pdf.sha256, "pdf_bytes": pdf.bytes, "pdf_version": version,
            "pdf_template_version": template_version, "pdf_generated_at": now}


class ConcurrentChange(Exception):
    """A certificate changed between being read and being written (its PDF version moved): redo the work."""


# --- re-rendering ------------------------------------------------------------------------------------------


async def rerender(session: AsyncSession, docs: Documents, origin: Origin, rows: list[Any], template: Any | None,
                   now: datetime, *, revoke: tuple[datetime, str] | None = None) -> list[str]:
    """Give each certificate row (locked by the caller, all of one tenant) a new PDF version with ``template``
    (None: the built-in default), the current directory name, and — with ``revoke`` — the REVOKED mark.

    Writes the rows and one ``certificate.pdf_regenerated`` each (plus ``certificate.revoked``); returns the keys
    of superseded PDFs still to delete once the caller's transaction has committed (see
    :meth:`Documents.discard_later`; none with the database store, where they go in the same transaction).
    """
    if not rows:
        return []
    names = await current_names(session, origin.tenant_id, [row.user_id for row in rows])
    issuer = (await tenant_names(session, [origin.tenant_id])).get(origin.tenant_id, origin.tenant_slug)
    template_id = template.id if template is not None else None
    template_version = template.version if template is not None else 1
    items: list[tuple[Facts, int]] = []
    for row in rows:
        changes: dict[str, Any] = {"recipient_name": names.get(row.user_id, row.recipient_name)[:200]}
        if revoke is not None:
            changes.update(revoked_at=revoke[0], revoked_reason=revoke[1])
        items.append((Facts.of_row(row, **changes), row.pdf_version + 1))
    rendered = await docs.render(origin.tenant_id, spec_of(template, issuer), items)
    pdfs = [pdf.info for pdf in rendered]
    superseded = [row.pdf_key for row in rows]
    try:
        await docs.store(session, rendered, superseded=superseded)
        await _write_versions(session, rows, items, pdfs, template_id, template_version, now, revoke)
        events: list[CloudEvent] = []
        for row, (_, version), pdf in zip(rows, items, pdfs, strict=True):
            if revoke is not None:
                events.append(_emit(origin, "certificate.revoked", CertificateRevoked(
                    certificate_id=row.id, verification_id=row.verification_id, revoked_at=revoke[0],
                    reason=revoke[1]), row.id))
            events.append(_emit(origin, "certificate.pdf_regenerated", CertificatePdfRegenerated(
                certificate_id=row.id, verification_id=row.verification_id, template_id=template_id,
                template_version=template_version, pdf_version=version, sha256=pdf.sha256), row.id))
        await outbox.add(session, *events)
    except BaseException:
        await docs.abandon([pdf.key for pdf in pdfs])
        raise
    return docs.superseded_later(superseded)


_VERSION_UPDATE = (
    sa.update(certificates)
    .where(certificates.c.id == sa.bindparam("b_id"), certificates.c.pdf_version == sa.bindparam("b_old_version"))
    .values(recipient_name=sa.bindparam("b_recipient_name"), template_id=sa.bindparam("b_template_id"),
            pdf_key=sa.bindparam("b_pdf_key"), pdf_sha256=sa.bindparam("b_pdf_sha256"),
            pdf_bytes=sa.bindparam("b_pdf_bytes"), pdf_version=sa.bindparam("b_pdf_version"),
            pdf_template_version=sa.bindparam("b_pdf_template_version"),
            pdf_generated_at=sa.bindparam("b_now"), updated_at=sa.bindparam("b_now"))
)
_REVOKING_UPDATE = _VERSION_UPDATE.values(revoked_at=sa.bindparam("b_revoked_at"),
                                          revoked_reason=sa.bindparam("b_revoked_reason"))


async def _write_versions(session: AsyncSession, rows: list[Any], items: list[tuple[Facts, int]],
                          pdfs: list[BlobInfo], template_id: int | None, template_version: int, now: datetime,
                          revoke: tuple[datetime, str] | None) -> None:
    """Point every row at its new PDF in one round trip (a batch is 32 rows: one statement each would be 32),
    guarded by the PDF version read before rendering, then check every row took it."""
    params = []
    for row, (facts, version), pdf in zip(rows, items, pdfs, strict=True):
        values = {"b_id": row.id, "b_old_version": row.pdf_version, "b_recipient_name": facts.recipient_name,
                  "b_template_id": template_id, "b_pdf_key": pdf.key, "b_pdf_sha256": pdf.sha256,
                  "b_pdf_bytes": pdf.bytes, "b_pdf_version": version, "b_pdf_template_version": template_version,
                  "b_now": now}
        if revoke is not None:
            values.update(b_revoked_at=facts.revoked_at, b_revoked_reason=facts.revoked_reason)
        params.append(values)
    await session.execute(_REVOKING_UPDATE if revoke is not None else _VERSION_UPDATE, params)
    written = (await session.execute(sa.select(sa.func.count()).select_from(certificates).where(
        certificates.c.id.in_([row.id for row in rows]),
        certificates.c.pdf_key.in_([pdf.key for pdf in pdfs])))).scalar()
    if written != len(rows):
        raise ConcurrentChange(f"{len(rows) - (written or 0)} certificate(s) changed while their PDFs rendered")


async def _locked_certificate(session: AsyncSession, tenant_id: int, certificate_id: int) -> Any:
    row = (await session.execute(TenantScope(tenant_id).select(certificates).where(
        certificates.c.id == certificate_id).with_for_update())).first()
    if row is None:
        raise ApiError.not_found("certificate")
    return row


async def revoke_certificate(session: AsyncSession, docs: Documents, origin: Origin, certificate_id: int,
                             reason: str) -> list[str]:
    row = await _locked_certificate(session, origin.tenant_id, certificate_id)
    if row.revoked_at is not None:
        raise ApiError.invalid("This certificate is already revoked.")
    template = await template_for_render(session, origin.tenant_id, row.template_id, lock=True,
                                         rows=docs.template_rows)
    superseded = await rerender(session, docs, origin, [row], template, utcnow(), revoke=(utcnow(), reason))
    log.info("certificate_revoked", certificate_id=certificate_id)
    return superseded


async def regenerate_certificate_pdf(session: AsyncSession, docs: Documents, origin: Origin,
                                     certificate_id: int) -> list[str]:
    """A new PDF with the current template (the certificate's, else the tenant's default); same vid and URL."""
    row = await _locked_certificate(session, origin.tenant_id, certificate_id)
    template = await template_for_render(session, origin.tenant_id, row.template_id, lock=True,
                                         rows=docs.template_rows)
    return await rerender(session, docs, origin, [row], template, utcnow())


# --- reading -----------------------------------------------------------------------------------------------


async def get_certificate(session: AsyncSession, tenant_id: int, certificate_id: int) -> Any:
    row = (await session.execute(TenantScope(tenant_id).select(certificates).where(
        certificates.c.id == certificate_id))).first()
    if row is None:
        raise ApiError.not_found("certificate")
    return row


async def by_verification_id(session: AsyncSession, verification_id: str, tenant_id: int | None = None) -> Any:
    """The certificate with this vid (in ``tenant_id`` when given; the public page looks across tenants)."""
    if not domain.is_verification_id(verification_id):
        raise ApiError.not_found("certificate")
    stmt = sa.select(certificates).where(certificates.c.verification_id == verification_id)
    if tenant_id is not None:
        stmt = stmt.where(certificates.c.tenant_id == tenant_id)
    row = (await session.execute(stmt)).first()
    if row is None:
        raise ApiError.not_found("certificate")
    return row


def list_query(tenant_id: int, filters: dict[str, Any], after_id: int | None, limit: int) -> sa.Select[Any]:
    stmt = TenantScope(tenant_id).select(certificates)
    for name, value in filters.items():
        if value is not None:
            stmt = stmt.where(certificates.c[name] == value)
    if after_id is not None:
        stmt = stmt.where(certificates.c.id < after_id)
    return stmt.order_by(certificates.c.id.desc()).limit(limit)
