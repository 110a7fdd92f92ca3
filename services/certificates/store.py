"""Certificates tables and every query on them (SQL only: the JSON views of rows are in api/views.py).

Owned data: ``templates`` (with their logo and background bytes), ``certificates`` (one per enrollment, with the
current PDF's blob key and facts), ``regeneration_jobs`` (one per template version to re-render).
Read models filled from events and forwarded headers: ``tenants`` (slug and display name, the issuer) and
``users`` (directory names for future renders). PDFs live in the blob store (``blobs``/``blob_chunks`` when it
is the database one; their rows are written here, in the certificate's transaction: the last section).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.blobstore import DB_CHUNK_BYTES, BlobInfo, blob_tables, validate_key
from shared.db import (
    BigId,
    ReadQuery,
    TenantScope,
    Timestamp,
    directory_users_table,
    insert_ignoring_conflicts,
    tenant_names_table,
    upsert,
)
from shared.uow import UnitOfWork

log = structlog.get_logger("certificates.templates")  # its one line: a missing template, default used

metadata = sa.MetaData()
_blobs, _chunks = blob_tables(metadata)

tenants = tenant_names_table(metadata)
users = directory_users_table(metadata)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False),
    sa.Column("orientation", sa.String(16), nullable=False),
    sa.Column("page_size", sa.String(16), nullable=False),
    sa.Column("title_text", sa.String(200), nullable=False),
    sa.Column("body_text", sa.Text, nullable=False),
    sa.Column("primary_color", sa.String(7), nullable=False),
    sa.Column("accent_color", sa.String(7), nullable=False),
    sa.Column("logo", sa.LargeBinary, nullable=True),
    sa.Column("logo_sha256", sa.String(64), nullable=True),
    sa.Column("background_pdf", sa.LargeBinary, nullable=True),
    sa.Column("background_sha256", sa.String(64), nullable=True),
    sa.Column("signatory_name", sa.String(200), nullable=True),
    sa.Column("signatory_title", sa.String(200), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_templates_tenant", "tenant_id", "id"),
    # Exactly one default per tenant, enforced by the database, not only by the handler.
    sa.Index("ux_templates_default", "tenant_id", unique=True,
             postgresql_where=sa.text("is_default"), sqlite_where=sa.text("is_default")),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("enrollment_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("course_version", sa.Integer, nullable=False),
    sa.Column("template_id", sa.BigInteger, nullable=True),  # null: the built-in default template
    sa.Column("verification_id", sa.String(40), nullable=False),
    sa.Column("recipient_name", sa.String(200), nullable=False),
    sa.Column("course_title", sa.String(300), nullable=False),
    sa.Column("credit_hours", sa.Numeric(12, 4), nullable=True),
    sa.Column("credit_kind", sa.String(64), nullable=True),
    sa.Column("issued_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Column("revoked_reason", sa.Text, nullable=True),
    sa.Column("pdf_key", sa.String(300), nullable=False),
    sa.Column("pdf_sha256", sa.String(64), nullable=False),
    sa.Column("pdf_bytes", sa.BigInteger, nullable=False),
    sa.Column("pdf_version", sa.Integer, nullable=False),
    sa.Column("pdf_template_version", sa.Integer, nullable=False),
    sa.Column("pdf_generated_at", Timestamp, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant_id", "enrollment_id", name="ux_certificates_enrollment"),
    sa.UniqueConstraint("verification_id", name="ux_certificates_verification_id"),
    sa.Index("ix_certificates_user", "tenant_id", "user_id", "id"),
    sa.Index("ix_certificates_course", "tenant_id", "course_id", "id"),
    sa.Index("ix_certificates_template", "tenant_id", "template_id", "id"),
)

regeneration_jobs = sa.Table(
    "regeneration_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("template_id", sa.BigInteger, nullable=False),
    sa.Column("template_version", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.UniqueConstraint("tenant_id", "template_id", "template_version", name="ux_regeneration_jobs_version"),
    sa.Index("ix_regeneration_jobs_open", "finished_at", "id"),
)

#: template columns without the asset bytes (lists and gets never need them)
TEMPLATE_FIELDS = tuple(c for c in templates.c if c.name not in ("logo", "background_pdf"))
LOGO_SIZE = sa.func.length(templates.c.logo).label("logo_bytes")
BACKGROUND_SIZE = sa.func.length(templates.c.background_pdf).label("background_bytes")


# --- read models: tenants (slug, issuer name) and directory users -----------------------------------------


async def known_tenant(session: AsyncSession, tenant_id: int) -> Any | None:
    """The tenant's remembered ``slug`` and ``name`` (None: never seen)."""
    stmt = sa.select(tenants.c.slug, tenants.c.name).where(tenants.c.tenant_id == tenant_id)
    return (await session.execute(stmt)).first()


async def save_tenant(session: AsyncSession, tenant_id: int, slug: str, name: str, now: datetime) -> None:
    values = {"slug": slug, "name": name, "updated_at": now}
    await session.execute(upsert(session, tenants, {"tenant_id": tenant_id, **values}, ["tenant_id"], values))


async def tenant_names(session: AsyncSession, tenant_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
    rows = await session.execute(sa.select(tenants.c.tenant_id, tenants.c.name).where(tenants.c.tenant_id.in_(ids)))
    return {row.tenant_id: row.name for row in rows}


async def save_user(session: AsyncSession, tenant_id: int, user_id: int, values: dict[str, Any]) -> None:
    """The newest ``revision`` wins; an older or equal one changes nothing."""
    await session.execute(upsert(session, users, {"tenant_id": tenant_id, "user_id": user_id, **values},
                                 ["tenant_id", "user_id"], values, where=users.c.revision < values["revision"]))


async def current_names(session: AsyncSession, tenant_id: int, user_ids: Iterable[int]) -> dict[int, str]:
    """Directory names we hold for these users (absent: we never heard of the user)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(users.c.user_id, users.c.name).where(users.c.tenant_id == tenant_id, users.c.user_id.in_(ids)))
    return {row.user_id: row.name for row in rows if row.name.strip()}


# --- templates ---------------------------------------------------------------------------------------------
#
# Template writes of one tenant are serialised, so "exactly one default" never races (the partial unique index
# ``ux_templates_default`` backs it up). Renders of a tenant's certificates hold a *shared* advisory lock on the
# tenant's templates while they read the template and until they commit; template writes take it *exclusively*.
# So an update waits for in-flight issues to commit, and every certificate is either rendered with the new
# version or visible to the regeneration that follows it. (A shared advisory lock costs nothing on the
# template's row; ``FOR SHARE`` on the row made concurrent issues of one template queue on it.)


class TemplateRows:
    """Full template rows (with their asset bytes) by ``(tenant, id, version)``: every change makes a new
    version, so an entry never goes stale, and issuing a certificate moves two integers instead of a logo and
    a background PDF. One per service instance (never shared between databases)."""

    def __init__(self, size: int = 64):
        self._size = size
        self._rows: OrderedDict[tuple[int, int, int], Any] = OrderedDict()

    async def get(self, session: AsyncSession, tenant_id: int, template_id: int, version: int) -> Any | None:
        key = (tenant_id, template_id, version)
        row = self._rows.get(key)
        if row is not None:
            self._rows.move_to_end(key)
            return row
        row = await template_row(session, tenant_id, template_id)
        if row is not None and row.version == version:
            self._rows[key] = row
            while len(self._rows) > self._size:
                self._rows.popitem(last=False)
        return row


_LOCK_CLASS = 0x63657274  # 'cert': the first key of the two-key advisory lock space; the tenant is the second


def templates_lock(*, exclusive: bool = False) -> Any:
    """``pg_advisory_xact_lock[_shared]('cert', :lock_tenant)``: see above. Bind ``lock_tenant`` with
    :func:`lock_key`."""
    function = sa.func.pg_advisory_xact_lock if exclusive else sa.func.pg_advisory_xact_lock_shared
    return function(sa.literal(_LOCK_CLASS, sa.Integer), sa.bindparam("lock_tenant", type_=sa.Integer))


def lock_key(tenant_id: int) -> int:
    return tenant_id % 2**31


_HOLD = {exclusive: sa.select(templates_lock(exclusive=exclusive)) for exclusive in (False, True)}


async def hold_templates(session: AsyncSession, tenant_id: int, *, exclusive: bool = False) -> None:
    """The tenant's templates lock, shared (renders) or exclusive (one template writer per tenant at a time,
    after every in-flight render of the tenant committed)."""
    if session.get_bind().dialect.name == "postgresql":  # SQLite: the transaction already holds the write lock
        await session.execute(_HOLD[exclusive], {"lock_tenant": lock_key(tenant_id)})


# Prebuilt (hot path: once per certificate issued): which template, and its version.
_TEMPLATE = sa.bindparam("template_id", type_=sa.BigInteger)
_HEAD_NAMED = (
    sa.select(templates.c.id, templates.c.version)
    .where(templates.c.tenant_id == sa.bindparam("tenant_id", type_=sa.BigInteger),
           sa.or_(templates.c.id == _TEMPLATE, templates.c.is_default.is_(True)))
    .order_by(sa.case((templates.c.id == _TEMPLATE, 0), else_=1))
    .limit(1)
)
_HEAD_DEFAULT = (
    sa.select(templates.c.id, templates.c.version)
    .where(templates.c.tenant_id == sa.bindparam("tenant_id", type_=sa.BigInteger),
           templates.c.is_default.is_(True))
    .limit(1)
)


async def template_for_render(session: AsyncSession, tenant_id: int, template_id: int | None, *,
                              lock: bool = False, rows: TemplateRows | None = None) -> Any | None:
    """The template a certificate uses: the one asked for, else the tenant's default, else None (built-in).

    With ``lock``, first takes the shared templates lock (callers that took it already pass False). One
    statement then finds the right template's id and version; the full row comes from ``rows`` when it holds
    that version. A course may name a template that no longer exists in the tenant (or never did): the
    certificate is still issued, with the default, and the fallback is logged.
    """
    if lock:
        await hold_templates(session, tenant_id)
    if template_id is None:
        found = (await session.execute(_HEAD_DEFAULT, {"tenant_id": tenant_id})).first()
    else:
        found = (await session.execute(_HEAD_NAMED, {"tenant_id": tenant_id, "template_id": template_id})).first()
    if template_id is not None and (found is None or found.id != template_id):
        log.warning("certificate_template_missing_using_default", template_id=template_id)
    if found is None:
        return None
    return await (rows or TemplateRows()).get(session, tenant_id, found.id, found.version)


async def template_row(session: AsyncSession, tenant_id: int, template_id: int) -> Any | None:
    """The full row, with the asset bytes."""
    return (await session.execute(TenantScope(tenant_id).select(templates).where(
        templates.c.id == template_id))).first()


def _described() -> sa.Select[Any]:
    return sa.select(*TEMPLATE_FIELDS, LOGO_SIZE, BACKGROUND_SIZE)


async def described_template(session: AsyncSession, tenant_id: int, template_id: int) -> Any | None:
    """The row without its asset bytes, with their sizes (``logo_bytes``, ``background_bytes``)."""
    return (await session.execute(
        _described().where(templates.c.tenant_id == tenant_id, templates.c.id == template_id))).first()


async def list_templates(session: AsyncSession, tenant_id: int, after_id: int | None, limit: int) -> list[Any]:
    stmt = _described().where(templates.c.tenant_id == tenant_id)
    if after_id is not None:
        stmt = stmt.where(templates.c.id < after_id)
    return list((await session.execute(stmt.order_by(templates.c.id.desc()).limit(limit))).all())


def _asset_columns(name: str, data: bytes | None) -> dict[str, Any]:
    return {name: data, f"{name.split('_')[0]}_sha256": hashlib.sha256(data).hexdigest() if data else None}


def template_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Template fields as column values: each asset with its SHA-256 column."""
    values = {k: v for k, v in fields.items() if k not in ("logo", "background_pdf")}
    if "logo" in fields:
        values.update(_asset_columns("logo", fields["logo"]))
    if "background_pdf" in fields:
        values.update(_asset_columns("background_pdf", fields["background_pdf"]))
    return values


_EVENT_COLUMNS = (templates.c.id, templates.c.name, templates.c.version, templates.c.is_default)


async def has_default(session: AsyncSession, tenant_id: int) -> bool:
    return (await session.execute(
        TenantScope(tenant_id).select(templates, templates.c.id)
        .where(templates.c.is_default.is_(True)).limit(1))).first() is not None


async def take_default(session: AsyncSession, tenant_id: int, keep_id: int | None, now: datetime) -> list[Any]:
    """Unset the tenant's current default (a change of that template too: a new version); returns the changed
    templates' ``id, name, version, is_default``."""
    stmt = TenantScope(tenant_id).update(templates).where(templates.c.is_default.is_(True))
    if keep_id is not None:
        stmt = stmt.where(templates.c.id != keep_id)
    stmt = stmt.values(is_default=False, version=templates.c.version + 1, updated_at=now).returning(*_EVENT_COLUMNS)
    return list((await session.execute(stmt)).all())


async def insert_template(session: AsyncSession, tenant_id: int, values: dict[str, Any], now: datetime) -> Any:
    """A new template at version 1 (``values`` are column values); returns ``id, name, version, is_default``."""
    stmt = TenantScope(tenant_id).insert(
        templates, **values, version=1, created_at=now, updated_at=now,
    ).returning(*_EVENT_COLUMNS)
    return (await session.execute(stmt)).one()


async def locked_template(session: AsyncSession, tenant_id: int, template_id: int) -> Any | None:
    return (await session.execute(
        TenantScope(tenant_id).select(templates).where(templates.c.id == template_id).with_for_update())).first()


async def update_template(session: AsyncSession, tenant_id: int, template_id: int, changed: dict[str, Any],
                          now: datetime) -> Any:
    """Write ``changed`` columns as the next version; returns ``id, name, version, is_default``."""
    stmt = TenantScope(tenant_id).update(templates).where(templates.c.id == template_id).values(
        **changed, version=templates.c.version + 1, updated_at=now,
    ).returning(*_EVENT_COLUMNS)
    return (await session.execute(stmt)).one()


async def regeneration_progress(session: AsyncSession, tenant_id: int, template_id: int,
                                version: int) -> tuple[int, int]:
    """``(total, done)``: the template's live (non-revoked) certificates, and those showing ``version``."""
    current = certificates.c.pdf_template_version >= version
    total, done = (await session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((current, 1), else_=0)), 0))
        .select_from(certificates)
        .where(certificates.c.tenant_id == tenant_id, certificates.c.template_id == template_id,
               certificates.c.revoked_at.is_(None)))).one()
    return int(total), int(done)


# --- certificates ------------------------------------------------------------------------------------------


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


async def issue_lookup(session: AsyncSession, tenant_id: int, enrollment_id: int, user_id: int) -> Any:
    """One row: ``tenant_slug``, ``tenant_name``, ``existing`` (a certificate id), ``user_name``; on PostgreSQL
    it also takes the tenant's shared templates lock."""
    postgres = session.get_bind().dialect.name == "postgresql"
    return (await session.execute(_LOOKUP[postgres], {
        "tenant_id": tenant_id, "enrollment_id": enrollment_id, "user_id": user_id,
        "lock_tenant": lock_key(tenant_id)})).one()


async def issued_enrollments(session: AsyncSession, tenant_id: int, enrollment_ids: Iterable[int]) -> set[int]:
    """Which of these enrollments already have their certificate."""
    ids = sorted(set(enrollment_ids))
    if not ids:
        return set()
    rows = await session.execute(sa.select(certificates.c.enrollment_id).where(
        certificates.c.tenant_id == tenant_id, certificates.c.enrollment_id.in_(ids)))
    return {int(row.enrollment_id) for row in rows}


def _issue_insert(dialect: Any) -> Any:
    """The certificate's insert, prebuilt (binds ``c_<column>``); a concurrent twin makes it insert nothing."""
    columns = [c for c in certificates.c if c.name not in ("id", "revoked_at", "revoked_reason")]
    return (dialect.insert(certificates)
            .values({c.name: sa.bindparam(f"c_{c.name}", type_=c.type) for c in columns})
            .on_conflict_do_nothing().returning(certificates.c.id))


_INSERT = {"postgresql": _issue_insert(postgresql), "sqlite": _issue_insert(sqlite)}


def issue_insert(session: AsyncSession, values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The certificate's INSERT (returning its id, or nothing if the enrollment has one) and its parameters."""
    return _INSERT[session.get_bind().dialect.name], {f"c_{k}": v for k, v in values.items()}


def pdf_columns(pdf: BlobInfo, version: int, template_version: int, now: datetime) -> dict[str, Any]:
    return {"pdf_key": pdf.key, "pdf_sha256": pdf.sha256, "pdf_bytes": pdf.bytes, "pdf_version": version,
            "pdf_template_version": template_version, "pdf_generated_at": now}


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


async def write_pdf_versions(session: AsyncSession, rows: Sequence[Any], items: Sequence[tuple[Any, int]],
                             pdfs: Sequence[BlobInfo], template_id: int | None, template_version: int,
                             now: datetime, revoking: bool) -> int:
    """Point every row at its new PDF in one round trip (a batch is 32 rows: one statement each would be 32),
    guarded by the PDF version read before rendering; ``items`` are ``(facts, new pdf version)`` (the facts'
    ``recipient_name``, and ``revoked_at``/``revoked_reason`` when ``revoking``). Returns how many rows took
    their new PDF (fewer than ``rows``: some changed meanwhile)."""
    params = []
    for row, (facts, version), pdf in zip(rows, items, pdfs, strict=True):
        values = {"b_id": row.id, "b_old_version": row.pdf_version, "b_recipient_name": facts.recipient_name,
                  "b_template_id": template_id, "b_pdf_key": pdf.key, "b_pdf_sha256": pdf.sha256,
                  "b_pdf_bytes": pdf.bytes, "b_pdf_version": version, "b_pdf_template_version": template_version,
                  "b_now": now}
        if revoking:
            values.update(b_revoked_at=facts.revoked_at, b_revoked_reason=facts.revoked_reason)
        params.append(values)
    await session.execute(_REVOKING_UPDATE if revoking else _VERSION_UPDATE, params)
    written = (await session.execute(sa.select(sa.func.count()).select_from(certificates).where(
        certificates.c.id.in_([row.id for row in rows]),
        certificates.c.pdf_key.in_([pdf.key for pdf in pdfs])))).scalar()
    return int(written or 0)


async def get_certificate(session: AsyncSession, tenant_id: int, certificate_id: int, *,
                          lock: bool = False, course_ids: frozenset[int] | None = None) -> Any | None:
    """With ``course_ids`` (a per-course key's, ADR 0019) a certificate of another course is not found."""
    stmt = TenantScope(tenant_id, course_ids).select(certificates).where(certificates.c.id == certificate_id)
    return (await session.execute(stmt.with_for_update() if lock else stmt)).first()


#: the hot read of ``GET /certificates/verify/{vid}`` (shared.db.ReadQuery): one statement, no transaction
BY_VERIFICATION_ID = ReadQuery(lambda scope: scope.select(certificates).where(
    certificates.c.verification_id == sa.bindparam("verification_id")))


async def read_by_verification_id(uow: UnitOfWork, verification_id: str, scope: TenantScope) -> Any | None:
    """The certificate with this vid in ``scope`` (its tenant, and its courses for a per-course key), as one read
    of its own (no transaction unless ``uow`` is open)."""
    return await uow.read_one(BY_VERIFICATION_ID, scope, verification_id=verification_id)


async def certificate_by_verification_id(session: AsyncSession, verification_id: str,
                                         tenant_id: int | None = None, *,
                                         course_ids: frozenset[int] | None = None) -> Any | None:
    """The certificate with this vid (in ``tenant_id`` when given; the public page looks across tenants; with
    ``course_ids``, only of those courses)."""
    stmt = sa.select(certificates).where(certificates.c.verification_id == verification_id)
    if tenant_id is not None:
        stmt = stmt.where(TenantScope(tenant_id, course_ids).where(certificates))
    return (await session.execute(stmt)).first()


async def list_certificates(session: AsyncSession, tenant_id: int, filters: dict[str, Any], after_id: int | None,
                            limit: int, *, course_ids: frozenset[int] | None = None) -> list[Any]:
    stmt = TenantScope(tenant_id, course_ids).select(certificates)
    for name, value in filters.items():
        if value is not None:
            stmt = stmt.where(certificates.c[name] == value)
    if after_id is not None:
        stmt = stmt.where(certificates.c.id < after_id)
    return list((await session.execute(stmt.order_by(certificates.c.id.desc()).limit(limit))).all())


# --- regeneration jobs -------------------------------------------------------------------------------------


async def add_regeneration_job(session: AsyncSession, values: dict[str, Any]) -> None:
    """A job per ``(tenant, template, version)``; a repeat inserts nothing."""
    await session.execute(insert_ignoring_conflicts(session, regeneration_jobs, values))


async def open_regeneration_jobs(session: AsyncSession) -> list[Any]:
    """Open jobs per template (oldest first): ``tenant_id, tenant_slug, template_id, request_id``."""
    return list((await session.execute(
        sa.select(regeneration_jobs.c.tenant_id, regeneration_jobs.c.tenant_slug,
                  regeneration_jobs.c.template_id, sa.func.max(regeneration_jobs.c.request_id)
                  .label("request_id"))
        .where(regeneration_jobs.c.finished_at.is_(None))
        .group_by(regeneration_jobs.c.tenant_id, regeneration_jobs.c.tenant_slug,
                  regeneration_jobs.c.template_id)
        .order_by(sa.func.min(regeneration_jobs.c.id)))).all())


async def template_version(session: AsyncSession, tenant_id: int, template_id: int) -> int | None:
    return (await session.execute(sa.select(templates.c.version).where(
        templates.c.tenant_id == tenant_id, templates.c.id == template_id))).scalar()


def _behind(tenant_id: int, template_id: int, version: int) -> Any:
    return ((certificates.c.tenant_id == tenant_id) & (certificates.c.template_id == template_id)
            & certificates.c.revoked_at.is_(None) & (certificates.c.pdf_template_version < version))


async def claim_behind(session: AsyncSession, tenant_id: int, template_id: int, version: int,
                       limit: int) -> list[Any]:
    """Up to ``limit`` live certificates of the template below ``version``, locked, skipping locked ones."""
    return list((await session.execute(
        sa.select(certificates).where(_behind(tenant_id, template_id, version)).order_by(certificates.c.id)
        .limit(limit).with_for_update(skip_locked=True))).all())


async def count_behind(session: AsyncSession, tenant_id: int, template_id: int, version: int) -> int:
    """A plain (non-skipping) count: a batch held by another lane still counts."""
    return int((await session.execute(sa.select(sa.func.count()).select_from(certificates)
                                      .where(_behind(tenant_id, template_id, version)))).scalar() or 0)


async def finish_regeneration_jobs(session: AsyncSession, tenant_id: int, template_id: int, now: datetime,
                                   version: int | None) -> int:
    """Close the template's open jobs up to ``version`` (None: all, the template is gone); returns how many."""
    stmt = sa.update(regeneration_jobs).where(
        regeneration_jobs.c.tenant_id == tenant_id, regeneration_jobs.c.template_id == template_id,
        regeneration_jobs.c.finished_at.is_(None))
    if version is not None:
        stmt = stmt.where(regeneration_jobs.c.template_version <= version)
    result = cast(sa.CursorResult[Any], await session.execute(stmt.values(finished_at=now)))
    return int(result.rowcount or 0)


async def regeneration_pending(session: AsyncSession) -> int:
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
    return int((await session.execute(stmt)).scalar() or 0)


# --- certificate PDFs as blob rows ------------------------------------------------------------------------------
#
# A PDF version lives under ``certificates/<tenant_id>/<verification_id>/v<n>.pdf``. With the database blob store
# (the default with PostgreSQL) its ``blobs``/``blob_chunks`` rows are written in the *same* transaction as the
# certificate row that points at them, and a superseded version is deleted in it too: a certificate and its PDF
# commit together or not at all. (``handlers.Documents`` decides when; the filesystem store writes files instead.)

PDF_CONTENT_TYPE = "application/pdf"


def pdf_key(tenant_id: int, verification_id: str, version: int) -> str:
    return f"certificates/{tenant_id}/{verification_id}/v{version}.pdf"


@dataclass(frozen=True)
class Rendered:
    """A rendered PDF version, not stored yet."""

    key: str
    data: bytes
    sha256: str

    @property
    def info(self) -> BlobInfo:
        return BlobInfo(key=self.key, bytes=len(self.data), sha256=self.sha256)


def _pdf_rows(rendered: Sequence[Rendered]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``blobs`` and ``blob_chunks`` rows :class:`DatabaseBlobStore` reads back. Keys are fresh (a new
    version of a certificate whose row is locked), so there is never anything to replace."""
    now = datetime.now(UTC)
    blob_rows: list[dict[str, Any]] = []
    chunk_rows: list[dict[str, Any]] = []
    for pdf in rendered:
        validate_key(pdf.key)
        blob_rows.append({"key": pdf.key, "bytes": len(pdf.data), "sha256": pdf.sha256,
                          "content_type": PDF_CONTENT_TYPE, "created_at": now})
        chunk_rows.extend({"key": pdf.key, "seq": seq, "data": pdf.data[start:start + DB_CHUNK_BYTES]}
                          for seq, start in enumerate(range(0, len(pdf.data), DB_CHUNK_BYTES)))
    return blob_rows, chunk_rows


def _array(name: str, item: Any) -> Any:
    return sa.bindparam(name, type_=postgresql.ARRAY(item))


def _pdf_row_ctes() -> list[Any]:
    """PostgreSQL: the PDF rows to add and the superseded versions' rows to delete, as data-modifying CTEs.

    Rows travel as arrays (``INSERT ... SELECT unnest(...)``), so the statement is built once, has the same
    shape for one PDF or a batch, and stays in SQLAlchemy's compiled cache (multi-row VALUES are compiled anew
    each time, which costs about as much as a render). Bind with :func:`pdf_row_params`.
    """
    unnest = sa.func.unnest
    return [
        sa.delete(_chunks).where(_chunks.c.key == sa.any_(_array("old_keys", sa.String))).cte("old_chunks"),
        sa.delete(_blobs).where(_blobs.c.key == sa.any_(_array("old_keys", sa.String))).cte("old_blobs"),
        sa.insert(_blobs).from_select(
            ["key", "bytes", "sha256", "content_type", "created_at"],
            sa.select(unnest(_array("blob_keys", sa.String)), unnest(_array("blob_sizes", sa.BigInteger)),
                      unnest(_array("blob_hashes", sa.String)), sa.bindparam("blob_type", type_=sa.String),
                      sa.bindparam("blob_created", type_=sa.DateTime(timezone=True))),
        ).cte("new_blobs"),
        sa.insert(_chunks).from_select(
            ["key", "seq", "data"],
            sa.select(unnest(_array("chunk_keys", sa.String)), unnest(_array("chunk_seqs", sa.Integer)),
                      unnest(_array("chunk_data", sa.LargeBinary))),
        ).cte("new_chunks"),
    ]


_PDF_ROW_CTES = _pdf_row_ctes()
PDF_ROWS_ONLY = sa.select(sa.literal(1)).add_cte(*_PDF_ROW_CTES)
_combined: dict[int, tuple[Any, Any]] = {}


def with_pdf_rows(statement: Any) -> Any:
    """``statement`` with the PDF row CTEs, built once per (prebuilt) statement so its cache key is memoized."""
    held = _combined.get(id(statement))
    if held is None or held[0] is not statement:
        held = (statement, statement.add_cte(*_PDF_ROW_CTES))
        if len(_combined) < 64:
            _combined[id(statement)] = held
    return held[1]


def pdf_row_params(rendered: Sequence[Rendered], superseded: Sequence[str]) -> dict[str, Any]:
    blob_rows, chunk_rows = _pdf_rows(rendered)
    return {
        "old_keys": list(superseded),
        "blob_keys": [r["key"] for r in blob_rows], "blob_sizes": [r["bytes"] for r in blob_rows],
        "blob_hashes": [r["sha256"] for r in blob_rows], "blob_type": PDF_CONTENT_TYPE,
        "blob_created": datetime.now(UTC),
        "chunk_keys": [r["key"] for r in chunk_rows], "chunk_seqs": [r["seq"] for r in chunk_rows],
        "chunk_data": [r["data"] for r in chunk_rows],
    }


async def write_pdf_rows(session: AsyncSession, rendered: Sequence[Rendered],
                                superseded: Sequence[str] = ()) -> None:
    """The same rows as :func:`_pdf_row_ctes`, statement by statement (SQLite)."""
    await delete_pdf_rows(session, superseded)
    if rendered:
        blob_rows, chunk_rows = _pdf_rows(rendered)
        await session.execute(sa.insert(_chunks), chunk_rows)
        await session.execute(sa.insert(_blobs), blob_rows)


async def delete_pdf_rows(session: AsyncSession, keys: Sequence[str]) -> None:
    if not keys:
        return
    await session.execute(sa.delete(_chunks).where(_chunks.c.key.in_(list(keys))))
    await session.execute(sa.delete(_blobs).where(_blobs.c.key.in_(list(keys))))
