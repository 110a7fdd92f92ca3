"""The catalog's read model of SCORM packages, fed by ``scorm_package.ready`` / ``scorm_package.failed``.

Publishing checks every ``scorm`` activity against it; the admin UI lists ready packages and their SCOs from it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import store
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent
from shared.db import Database, TenantScope
from shared.events.scorm import ScormPackageFailed, ScormPackageReady
from shared.http import PageRequest, RequestContext

log = structlog.get_logger("catalog.scorm_packages")


async def record_package(session: AsyncSession, event: CloudEvent,
                         payload: ScormPackageReady | ScormPackageFailed) -> None:
    """Upsert the package's state (idempotent: the same event applied twice leaves the same row)."""
    if event.tenantid < 1:
        raise PermanentError(f"event {event.id} has no valid tenant id")
    table = store.scorm_packages
    if isinstance(payload, ScormPackageReady):
        values: dict[str, Any] = dict(
            title=payload.title[:500], scorm_version=payload.scorm_version[:16], status="ready", error=None,
            scos=[{"identifier": s.identifier, "title": s.title, "position": s.position} for s in payload.scos],
        )
    else:
        values = dict(title=payload.title[:500], scorm_version=None, status="failed", error=payload.error, scos=[])
    key = (table.c.tenant_id == event.tenantid) & (table.c.package_id == payload.package_id)
    values["updated_at"] = store.now()
    updated = await session.execute(sa.update(table).where(key).values(**values))
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(sa.insert(table).values(tenant_id=event.tenantid, package_id=payload.package_id,
                                                      **values))
    log.info("scorm_package_recorded", package_id=payload.package_id, status=values["status"])


async def list_ready_packages(db: Database, ctx: RequestContext, page: PageRequest) -> list[dict[str, Any]]:
    table = store.scorm_packages
    stmt = (TenantScope(ctx.tenant_id).select(table).where(table.c.status == "ready")
            .order_by(table.c.package_id.desc()).limit(page.limit + 1))
    if page.after_id is not None:
        stmt = stmt.where(table.c.package_id < page.after_id)
    async with db.transaction() as session:
        rows = (await session.execute(stmt)).all()
    return [
        {"id": r.package_id, "title": r.title, "scorm_version": r.scorm_version,
         "scos": sorted(r.scos, key=lambda s: s["position"])}
        for r in rows
    ]
