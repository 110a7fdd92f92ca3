"""Read models the launch needs, filled only from events.

- ``enrollment.created/cancelled/expired/completed`` → who may launch (applied by ``revision``: a late or
  repeated event never takes an enrollment back);
- ``course.published`` → every activity of that version (a published tree never changes, so it is kept once,
  whatever order versions arrive in: a learner keeps launching the version they enrolled in);
- ``course.published/unpublished/archived`` → the course's status, by ``revision``;
- ``user.upserted`` → the learner's name a launch hands the SCO, by ``revision``;
- ``tenant.updated`` → the tenant's status (a suspended tenant's launches end), by ``updated_at``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.scorm.store import course_activities, courses, enrollments, now, tenants, users
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent
from shared.db import insert_ignoring_conflicts, upsert
from shared.events.catalog import CoursePublished, CourseSnapshot
from shared.events.directory import TenantUpdated, UserUpserted
from shared.events.enrollment import EnrollmentSnapshot

log = structlog.get_logger("scorm.readmodels")


def _tenant(event: CloudEvent) -> int:
    if event.tenantid < 1:
        raise PermanentError(f"event {event.id} has no valid tenant id")
    return event.tenantid


async def apply_enrollment_event(session: AsyncSession, event: CloudEvent,
                                 payload: EnrollmentSnapshot) -> None:
    tenant_id = _tenant(event)
    values = {
        "user_id": payload.user_id,
        "course_id": payload.course_id,
        "course_version": payload.course_version,
        "status": payload.status,
        "expires_at": payload.expires_at,
        "revision": payload.revision,
        "updated_at": now(),
    }
    await session.execute(upsert(
        session, enrollments, {"tenant_id": tenant_id, "enrollment_id": payload.enrollment_id, **values},
        ["tenant_id", "enrollment_id"], values, where=enrollments.c.revision < payload.revision,
    ))
    log.info("enrollment_recorded", enrollment_id=payload.enrollment_id, status=payload.status,
             revision=payload.revision)


async def apply_course_event(session: AsyncSession, event: CloudEvent, payload: CourseSnapshot) -> None:
    tenant_id = _tenant(event)
    if isinstance(payload, CoursePublished):
        rows: list[dict[str, Any]] = [
            {
                "tenant_id": tenant_id, "course_id": payload.course_id,
                "version_number": payload.version_number,
                "activity_id": activity.activity_id, "title": activity.title, "kind": activity.kind,
                "scorm_package_id": activity.scorm_package_id, "sco_identifier": activity.sco_identifier,
                "passing_score_scaled": (None if activity.passing_score_scaled is None
                                         else float(activity.passing_score_scaled)),
            }
            for module in payload.modules for lesson in module.lessons for activity in lesson.activities
        ]
        if rows:
            await session.execute(insert_ignoring_conflicts(session, course_activities, rows))
    values = {"status": payload.status, "revision": payload.revision, "updated_at": now()}
    await session.execute(upsert(
        session, courses, {"tenant_id": tenant_id, "course_id": payload.course_id, **values},
        ["tenant_id", "course_id"], values, where=courses.c.revision < payload.revision,
    ))
    log.info("course_recorded", course_id=payload.course_id, status=payload.status,
             version=payload.version_number)


async def apply_user_upserted(session: AsyncSession, event: CloudEvent, payload: UserUpserted) -> None:
    """The newest revision of a user's name wins: a late or repeated event never brings an old name back."""
    tenant_id = _tenant(event)
    values = {"name": payload.name, "revision": payload.revision, "updated_at": payload.updated_at}
    await session.execute(upsert(
        session, users, {"tenant_id": tenant_id, "user_id": payload.user_id, **values},
        ["tenant_id", "user_id"], values, where=users.c.revision < payload.revision,
    ))
    log.info("user_recorded", user_id=payload.user_id, revision=payload.revision)


async def apply_tenant_updated(session: AsyncSession, event: CloudEvent, payload: TenantUpdated) -> None:
    """The latest status wins: a late or repeated event never brings an old status back."""
    tenant_id = _tenant(event)
    values = {"status": payload.status, "updated_at": payload.updated_at}
    await session.execute(upsert(
        session, tenants, {"tenant_id": tenant_id, **values}, ["tenant_id"], values,
        where=tenants.c.updated_at < payload.updated_at,
    ))
    log.info("tenant_recorded", status=payload.status)


async def learner_name(session: AsyncSession, tenant_id: int, user_id: int) -> str:
    """The directory name a launch hands the SCO; "" for a user no ``user.upserted`` told us about."""
    name = (await session.execute(sa.select(users.c.name).where(
        users.c.tenant_id == tenant_id, users.c.user_id == user_id))).scalar()
    return (name or "").strip()
