"""Certificate templates: create, update (every change bumps ``version`` and emits ``template.updated``), one
default per tenant, and which template a certificate renders with.

Template writes of one tenant are serialised (see below), so "exactly one default" never races (the partial
unique index ``ux_templates_default`` backs it up). Renders of a tenant's certificates hold a *shared*
advisory lock on the tenant's templates while they read the template and until they commit; template writes
take it *exclusively*. So an update waits for in-flight issues to commit, and every certificate is either
rendered with the new version or visible to the regeneration that follows it. (A shared advisory lock costs
nothing on the template's row; ``FOR SHARE`` on the row made concurrent issues of one template queue on it.)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates.pdf import BUILTIN_DEFAULT_TEMPLATE, TemplateSpec
from services.certificates.store import BACKGROUND_SIZE, LOGO_SIZE, TEMPLATE_FIELDS, templates
from shared.bus import outbox
from shared.bus.envelope import new_event
from shared.db import TenantScope
from shared.events.certificates import TemplateCreated, TemplateUpdated
from shared.http import ApiError

log = structlog.get_logger("certificates.templates")

#: what a new template holds when the request leaves a field out: the built-in look
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "orientation": BUILTIN_DEFAULT_TEMPLATE.orientation,
    "page_size": BUILTIN_DEFAULT_TEMPLATE.page_size,
    "title_text": BUILTIN_DEFAULT_TEMPLATE.title_text,
    "body_text": BUILTIN_DEFAULT_TEMPLATE.body_text,
    "primary_color": BUILTIN_DEFAULT_TEMPLATE.primary_color,
    "accent_color": BUILTIN_DEFAULT_TEMPLATE.accent_color,
    "logo": None,
    "background_pdf": None,
    "signatory_name": None,
    "signatory_title": None,
}


@dataclass(frozen=True)
class Author:
    """Who writes: the tenant (for events) and the request behind it."""

    tenant_id: int
    tenant_slug: str
    request_id: str | None


def spec_of(row: Any | None, issuer_name: str) -> TemplateSpec:
    """The renderer's view of a template row (a full row, with its asset bytes); None is the built-in default."""
    if row is None:
        return replace(BUILTIN_DEFAULT_TEMPLATE, issuer_name=issuer_name)
    return TemplateSpec(
        id=row.id, version=row.version, name=row.name, orientation=row.orientation, page_size=row.page_size,
        title_text=row.title_text, body_text=row.body_text, primary_color=row.primary_color,
        accent_color=row.accent_color, logo_png=row.logo, signatory_name=row.signatory_name,
        signatory_title=row.signatory_title, background_pdf=row.background_pdf, issuer_name=issuer_name,
    )


def _described() -> sa.Select[Any]:
    return sa.select(*TEMPLATE_FIELDS, LOGO_SIZE, BACKGROUND_SIZE)


async def get_template(session: AsyncSession, tenant_id: int, template_id: int) -> Any:
    row = (await session.execute(
        _described().where(templates.c.tenant_id == tenant_id, templates.c.id == template_id))).first()
    if row is None:
        raise ApiError.not_found("template")
    return row


def list_query(tenant_id: int, after_id: int | None, limit: int) -> sa.Select[Any]:
    stmt = _described().where(templates.c.tenant_id == tenant_id)
    if after_id is not None:
        stmt = stmt.where(templates.c.id < after_id)
    return stmt.order_by(templates.c.id.desc()).limit(limit)


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
        row = (await session.execute(TenantScope(tenant_id).select(templates).where(
            templates.c.id == template_id))).first()
        if row is not None and row.version == version:
            self._rows[key] = row
            while len(self._rows) > self._size:
                self._rows.popitem(last=False)
        return row


_LOCK_CLASS = 0x63657274  # 'cert': the first key of the two-key advisory lock space; the tenant is the second


def templates_lock(*, exclusive: bool = False) -> Any:
    """``pg_advisory_xact_lock[_shared]('cert', :lock_tenant)``: see the module's docstring. Bind
    ``lock_tenant`` with :func:`lock_key`."""
    function = sa.func.pg_advisory_xact_lock if exclusive else sa.func.pg_advisory_xact_lock_shared
    return function(sa.literal(_LOCK_CLASS, sa.Integer), sa.bindparam("lock_tenant", type_=sa.Integer))


def lock_key(tenant_id: int) -> int:
    return tenant_id % 2**31


_HOLD = {exclusive: sa.select(templates_lock(exclusive=exclusive)) for exclusive in (False, True)}


async def hold_templates(session: AsyncSession, tenant_id: int, *, exclusive: bool = False) -> None:
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


def _asset_columns(name: str, data: bytes | None) -> dict[str, Any]:
    return {name: data, f"{name.split('_')[0]}_sha256": hashlib.sha256(data).hexdigest() if data else None}


def _row_values(fields: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in fields.items() if k not in ("logo", "background_pdf")}
    if "logo" in fields:
        values.update(_asset_columns("logo", fields["logo"]))
    if "background_pdf" in fields:
        values.update(_asset_columns("background_pdf", fields["background_pdf"]))
    return values


def _event(author: Author, event_type: str, row: Any) -> Any:
    model = TemplateCreated if event_type == "template.created" else TemplateUpdated
    payload = model(template_id=row.id, name=row.name, version=row.version, is_default=row.is_default)
    return new_event(event_type, payload, service="certificates", tenant=author.tenant_slug,
                     tenant_id=author.tenant_id, subject=f"template/{row.id}", request_id=author.request_id)


async def _lock_tenant_templates(session: AsyncSession, tenant_id: int) -> None:
    """One template writer per tenant at a time, after every in-flight render of the tenant committed."""
    await hold_templates(session, tenant_id, exclusive=True)


async def _take_default(session: AsyncSession, author: Author, keep_id: int | None, now: datetime) -> None:
    """Unset the tenant's current default (a change of that template too: new version, ``template.updated``)."""
    scope = TenantScope(author.tenant_id)
    stmt = scope.update(templates).where(templates.c.is_default.is_(True))
    if keep_id is not None:
        stmt = stmt.where(templates.c.id != keep_id)
    stmt = stmt.values(is_default=False, version=templates.c.version + 1, updated_at=now).returning(
        templates.c.id, templates.c.name, templates.c.version, templates.c.is_default)
    for row in (await session.execute(stmt)).all():
        await outbox.add(session, _event(author, "template.updated", row))


async def create_template(session: AsyncSession, author: Author, fields: dict[str, Any], now: datetime) -> int:
    """``fields`` are validated; an absent ``is_default`` makes a tenant's first template its default."""
    await _lock_tenant_templates(session, author.tenant_id)
    values = {**TEMPLATE_DEFAULTS, **fields}
    if "is_default" not in fields:
        has_default = (await session.execute(
            TenantScope(author.tenant_id).select(templates, templates.c.id)
            .where(templates.c.is_default.is_(True)).limit(1))).first()
        values["is_default"] = has_default is None
    if values["is_default"]:
        await _take_default(session, author, None, now)
    stmt = TenantScope(author.tenant_id).insert(
        templates, **_row_values(values), version=1, created_at=now, updated_at=now,
    ).returning(templates.c.id, templates.c.name, templates.c.version, templates.c.is_default)
    row = (await session.execute(stmt)).one()
    await outbox.add(session, _event(author, "template.created", row))
    log.info("template_created", template_id=row.id, is_default=row.is_default)
    return int(row.id)


async def update_template(session: AsyncSession, author: Author, template_id: int, changes: dict[str, Any],
                          now: datetime) -> bool:
    """Apply ``changes`` (validated; omitted fields keep their value, ``None`` clears an optional one).

    Returns False when nothing actually changed: no new version and no event for a no-op.
    """
    await _lock_tenant_templates(session, author.tenant_id)
    scope = TenantScope(author.tenant_id)
    current = (await session.execute(
        scope.select(templates).where(templates.c.id == template_id).with_for_update())).first()
    if current is None:
        raise ApiError.not_found("template")
    values = _row_values(changes)
    changed = {k: v for k, v in values.items() if getattr(current, k) != v}
    if not changed:
        return False
    if changed.get("is_default"):
        await _take_default(session, author, template_id, now)
    stmt = scope.update(templates).where(templates.c.id == template_id).values(
        **changed, version=templates.c.version + 1, updated_at=now,
    ).returning(templates.c.id, templates.c.name, templates.c.version, templates.c.is_default)
    row = (await session.execute(stmt)).one()
    await outbox.add(session, _event(author, "template.updated", row))
    log.info("template_updated", template_id=row.id, version=row.version, fields=sorted(changed))
    return True
