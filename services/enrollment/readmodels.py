"""Read models filled only from events: courses (+ every published version's tree) and directory users.

Events may arrive twice or out of order. Snapshots are applied by ``revision`` and never backwards. A published
version's tree is immutable, so it is stored whatever order it arrives in: learners enrolled in a version keep
it after the course is republished (see docs/enrollment.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrollment.caches import Caches
from services.enrollment.store import (
    course_versions,
    courses,
    dialect_name,
    directory_users,
    ignoring_conflicts,
    tenants,
)
from shared.bus.envelope import CloudEvent
from shared.db import upsert, utcnow
from shared.events.catalog import CoursePublished, CourseSnapshot
from shared.events.directory import UserUpserted

log = structlog.get_logger("enrollment.readmodels")


def _course_values(snapshot: CourseSnapshot) -> dict[str, Any]:
    return {
        "slug": snapshot.slug,
        "title": snapshot.title,
        "status": snapshot.status,
        "version_number": snapshot.version_number,
        "completion_rule": snapshot.completion_rule,
        "credit": snapshot.credit.model_dump(mode="json"),
        "certificate_template_id": snapshot.certificate_template_id,
        "revision": snapshot.revision,
        "updated_at": snapshot.updated_at,
    }


async def apply_course_event(session: AsyncSession, event: CloudEvent, payload: CourseSnapshot, *,
                             caches: Caches) -> None:
    """``course.created/updated/published/unpublished/archived``: newest revision wins."""
    tenant_id = event.tenantid
    await remember_tenant(session, caches, tenant_id, event.tenant, None, utcnow())
    if isinstance(payload, CoursePublished):
        await _keep_published_version(session, tenant_id, payload)
    values = _course_values(payload)
    # Only a newer revision replaces what we hold: a late or repeated event changes nothing.
    stmt = upsert(session, courses, {"tenant_id": tenant_id, "course_id": payload.course_id, **values},
                  ["tenant_id", "course_id"], values, where=courses.c.revision < payload.revision)
    result = cast(sa.CursorResult[Any], await session.execute(stmt))
    if result.rowcount == 0:
        log.info("course_event_stale", course_id=payload.course_id, revision=payload.revision)


async def _keep_published_version(session: AsyncSession, tenant_id: int, payload: CoursePublished) -> None:
    values = {
        "tenant_id": tenant_id,
        "course_id": payload.course_id,
        "version_number": payload.version_number,
        "title": payload.title,
        "completion_rule": payload.completion_rule,
        "credit": payload.credit.model_dump(mode="json"),
        "certificate_template_id": payload.certificate_template_id,
        "modules": [m.model_dump(mode="json") for m in payload.modules],
        "published_at": payload.published_at,
        "revision": payload.revision,
    }
    # A version number identifies one published tree; a repeat of the same publish is a no-op.
    await session.execute(ignoring_conflicts(dialect_name(session), course_versions), values)


async def apply_user_upserted(session: AsyncSession, event: CloudEvent, payload: UserUpserted) -> None:
    values = {"name": payload.name, "email": payload.email, "revision": payload.revision,
              "updated_at": payload.updated_at}
    stmt = upsert(session, directory_users, {"tenant_id": event.tenantid, "user_id": payload.user_id, **values},
                  ["tenant_id", "user_id"], values, where=directory_users.c.revision < payload.revision)
    await session.execute(stmt)


_TENANT = sa.select(tenants.c.slug, tenants.c.name).where(tenants.c.tenant_id == sa.bindparam("tenant_id"))


async def remember_tenant(session: AsyncSession, caches: Caches, tenant_id: int, slug: str, name: str | None,
                          now: datetime) -> None:
    """Keep the slug (routing keys of events the sweeper sends) and the display name (certificates).

    Read first and write only on a change, so that concurrent requests of one tenant do not queue on its row; a
    pair the row was recently seen holding skips even the read (``Caches``).
    """
    if caches.tenant_confirmed(tenant_id, slug, name):
        return
    known = (await session.execute(_TENANT, {"tenant_id": tenant_id})).first()
    if known is not None and known.slug == slug and (name is None or known.name == name):
        caches.confirm_tenant(tenant_id, known.slug, known.name)
        return
    update: dict[str, Any] = {"slug": slug, "updated_at": now}
    if name is not None:
        update["name"] = name
    await session.execute(upsert(session, tenants, {"tenant_id": tenant_id, "slug": slug, "name": name,
                                                    "updated_at": now}, ["tenant_id"], update))
