"""Small helpers shared by the enrollment service's HTTP handlers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrollment import domain
from services.enrollment.caches import Caches
from services.enrollment.readmodels import remember_tenant
from shared.http import ApiError, RequestContext

#: a positive integer id, strictly typed ("12" and true are not ids), that fits a BIGINT
PositiveId = Annotated[int, Field(strict=True, gt=0, lt=2**63)]


def future_expiry(value: str | None, now: datetime) -> datetime | None:
    """``expires_at`` from a body: RFC 3339 with a time zone, and later than now."""
    if value is None:
        return None
    try:
        expires_at = domain.parse_rfc3339(value)
    except ValueError as exc:
        raise ApiError.invalid(f"'expires_at': {exc}.") from None
    if expires_at <= now:
        raise ApiError.invalid("'expires_at' must be in the future.")
    return expires_at


async def note_tenant(session: AsyncSession, caches: Caches, ctx: RequestContext, now: datetime) -> None:
    """Remember the tenant's slug and display name as the gateway forwards them (events and certificates)."""
    await remember_tenant(session, caches, ctx.tenant_id, ctx.tenant_slug, ctx.tenant_name, now)
