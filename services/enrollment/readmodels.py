"""Read models filled only from events: courses (+ every published version's tree) and directory users.

Events may arrive twice or out of order. Snapshots are applied by ``revision`` and never backwards. A published
version's tree is immutable, so it is stored whatever order it arrives in: learners enrolled in a version keep
it after the course is republished (see docs/enrollment.md).
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrollment.store import (
    course_versions,
    courses,
    directory_users,
    insert_ignoring_conflicts,
    remember_tenant,
    upsert,
)
from shared.bus.envelope import CloudEvent
from shared.db import utcnow
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


async def apply_course_event(session: AsyncSession, event: CloudEvent, payload: CourseSnapshot) -> None:
    """``course.created/updated/published/unpublished/archived``: newest revision wins."""
    tenant_id = event.tenantid
    await remember_tenant(session, tenant_id, event.tenant, None, utcnow())
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
    await session.execute(insert_ignoring_conflicts(session, course_versions, values))


async def apply_user_upserted(session: AsyncSession, event: CloudEvent, payload: UserUpserted) -> None:
    values = {"name": payload.name, "email": payload.email, "revision": payload.revision,
              "updated_at": payload.updated_at}
    stmt = upsert(session, directory_users, {"tenant_id": event.tenantid, "user_id": payload.user_id, **values},
                  ["tenant_id", "user_id"], values, where=directory_users.c.revision < payload.revision)
    await session.execute(stmt)


async def published_version(session: AsyncSession, tenant_id: int, course_id: int) -> Any | None:
    """The version new enrollments join: the highest published version we hold."""
    return (await session.execute(
        sa.select(course_versions)
        .where(course_versions.c.tenant_id == tenant_id, course_versions.c.course_id == course_id)
        .order_by(course_versions.c.version_number.desc()).limit(1)
    )).first()


async def course_version(session: AsyncSession, tenant_id: int, course_id: int, version: int) -> Any | None:
    return (await session.execute(
        sa.select(course_versions).where(course_versions.c.tenant_id == tenant_id,
                                         course_versions.c.course_id == course_id,
                                         course_versions.c.version_number == version)
    )).first()
