"""What the service learns from others: tenants (slug and issuer name) and directory users' names.

The service has no directory. Tenants are remembered from the gateway's forwarded headers and from events
(``enrollment.completed`` carries ``tenant_name``). Users come from ``user.upserted``, applied by ``revision``
and never backwards. A rename does not re-render existing PDFs (see docs/certificates.md): the name is used by
the next render of the certificate (regenerate-pdf, revoke, a template change), which also updates the
certificate's ``recipient_name`` so that the API, the PDF and the verification page agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates.domain import KnownTenant
from services.certificates.store import tenants, users
from shared.bus.envelope import CloudEvent
from shared.db import upsert
from shared.events.directory import UserUpserted


async def known_tenant(session: AsyncSession, tenant_id: int) -> KnownTenant | None:
    stmt = sa.select(tenants.c.slug, tenants.c.name).where(tenants.c.tenant_id == tenant_id)
    row = (await session.execute(stmt)).first()
    return None if row is None else KnownTenant(tenant_id, row.slug, row.name)


async def remember_tenant(session: AsyncSession, tenant: KnownTenant, now: datetime,
                          known: KnownTenant | None = None) -> None:
    """Keep the slug and display name; read first and write only on a change, so that concurrent work of one
    tenant does not queue on its row."""
    if known is None:
        known = await known_tenant(session, tenant.tenant_id)
    if known == tenant:
        return
    values = {"slug": tenant.slug, "name": tenant.name, "updated_at": now}
    await session.execute(upsert(session, tenants, {"tenant_id": tenant.tenant_id, **values}, ["tenant_id"], values))


async def tenant_names(session: AsyncSession, tenant_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
    rows = await session.execute(sa.select(tenants.c.tenant_id, tenants.c.name).where(tenants.c.tenant_id.in_(ids)))
    return {row.tenant_id: row.name for row in rows}


async def apply_user_upserted(session: AsyncSession, event: CloudEvent, payload: UserUpserted) -> None:
    """``user.upserted``: the newest revision wins; a late or repeated event changes nothing."""
    values = {"name": payload.name, "email": payload.email, "revision": payload.revision,
              "updated_at": payload.updated_at}
    await session.execute(upsert(session, users, {"tenant_id": event.tenantid, "user_id": payload.user_id, **values},
                                 ["tenant_id", "user_id"], values, where=users.c.revision < payload.revision))


async def current_names(session: AsyncSession, tenant_id: int, user_ids: Iterable[int]) -> dict[int, str]:
    """Directory names we hold for these users (absent: we never heard of the user)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(users.c.user_id, users.c.name).where(users.c.tenant_id == tenant_id, users.c.user_id.in_(ids)))
    return {row.user_id: row.name for row in rows if row.name.strip()}
