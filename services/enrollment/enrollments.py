"""Enrollment use cases: enroll, cancel, expire. Each runs inside the caller's transaction and stages its events
in the outbox of that same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrollment import domain
from services.enrollment.readmodels import published_version
from services.enrollment.store import (
    LIVE_ENROLLMENT,
    as_utc,
    courses,
    directory_users,
    enrollments,
    insert_ignoring_conflicts,
    tenants,
)
from shared.bus import outbox
from shared.bus.envelope import CloudEvent, new_event
from shared.db import Database, TenantScope
from shared.events.enrollment import EnrollmentCancelled, EnrollmentCreated, EnrollmentExpired, EnrollmentSnapshot
from shared.http import ApiError, RequestContext

log = structlog.get_logger("enrollment.enrollments")

SERVICE = "enrollment"


@dataclass(frozen=True)
class Caller:
    """The tenant and request a change is made for (from the gateway's headers, or from an event)."""

    tenant_id: int
    tenant_slug: str
    request_id: str | None = None

    @classmethod
    def of(cls, ctx: RequestContext) -> Caller:
        return cls(ctx.tenant_id, ctx.tenant_slug, ctx.request_id)


def snapshot_fields(row: Any) -> dict[str, Any]:
    return {
        "enrollment_id": row.id,
        "user_id": row.user_id,
        "course_id": row.course_id,
        "course_version": row.course_version,
        "status": row.status,
        "source": row.source,
        "enrolled_at": as_utc(row.enrolled_at),
        "expires_at": as_utc(row.expires_at),
        "completed_at": as_utc(row.completed_at),
        "cancelled_at": as_utc(row.cancelled_at),
        "revision": row.revision,
    }


def enrollment_event(event_type: str, payload: EnrollmentSnapshot, caller: Caller) -> CloudEvent:
    return new_event(event_type, payload, service=SERVICE, tenant=caller.tenant_slug, tenant_id=caller.tenant_id,
                     subject=f"enrollment/{payload.enrollment_id}", request_id=caller.request_id)


async def live_enrollment(session: AsyncSession, tenant_id: int, user_id: int, course_id: int) -> Any | None:
    scope = TenantScope(tenant_id)
    return (await session.execute(
        scope.select(enrollments).where(enrollments.c.user_id == user_id, enrollments.c.course_id == course_id,
                                        LIVE_ENROLLMENT).with_for_update()
    )).first()


async def require_user(session: AsyncSession, tenant_id: int, user_id: int) -> Any:
    user = (await session.execute(
        TenantScope(tenant_id).select(directory_users).where(directory_users.c.user_id == user_id)
    )).first()
    if user is None:
        raise ApiError.invalid(f"User {user_id} is not in this tenant's directory; upsert the user first.")
    return user


async def find_course(session: AsyncSession, tenant_id: int, course_id: int) -> Any | None:
    return (await session.execute(
        TenantScope(tenant_id).select(courses).where(courses.c.course_id == course_id)
    )).first()


async def enroll(session: AsyncSession, caller: Caller, *, user_id: int, course_id: int, source: str,
                 expires_at: datetime | None, now: datetime) -> tuple[Any, bool]:
    """Enroll a user in a published course. Returns (enrollment row, created?): an active or completed enrollment
    for the same user and course is returned as it is."""
    course = await find_course(session, caller.tenant_id, course_id)
    if course is None:
        raise ApiError.not_found("course")
    existing = await live_enrollment(session, caller.tenant_id, user_id, course_id)
    if existing is not None and not domain.is_overdue(existing.status, as_utc(existing.expires_at), now):
        # Idempotent even after the course was unpublished or archived: a retried purchase gets its enrollment.
        return existing, False
    if course.status != "published":
        raise ApiError.invalid(f"Course {course_id} is {course.status}; only published courses take enrollments.")
    await require_user(session, caller.tenant_id, user_id)
    return await enroll_in_published_course(session, caller, user_id=user_id, course_id=course_id,
                                            source=source, expires_at=expires_at, now=now)


async def enroll_in_published_course(session: AsyncSession, caller: Caller, *, user_id: int, course_id: int,
                                     source: str, expires_at: datetime | None, now: datetime) -> tuple[Any, bool]:
    existing = await live_enrollment(session, caller.tenant_id, user_id, course_id)
    if existing is not None:
        if not domain.is_overdue(existing.status, as_utc(existing.expires_at), now):
            return existing, False
        # Past its end but not swept yet: expire it now so the new enrollment can take its place.
        await expire(session, [existing.id], now)
    version = await published_version(session, caller.tenant_id, course_id)
    if version is None:  # the course says published but its tree has not arrived yet
        raise ApiError.invalid(f"Course {course_id} is not published yet; retry shortly.")
    rule = domain.completion_rule(version.completion_rule)
    progress = domain.evaluate(rule, domain.activities_of(version.modules), [])
    values = {
        "tenant_id": caller.tenant_id, "user_id": user_id, "course_id": course_id,
        "course_version": version.version_number, "status": domain.EnrollmentStatus.ACTIVE, "source": source,
        "enrolled_at": now, "expires_at": expires_at, "required_total": progress.required_total,
        "required_done": 0, "revision": 1, "updated_at": now,
    }
    # Two concurrent enrollments of one learner collapse onto one row (the unique index on live enrollments).
    inserted = (await session.execute(
        insert_ignoring_conflicts(session, enrollments, values).returning(enrollments.c.id)
    )).first()
    if inserted is None:
        winner = await live_enrollment(session, caller.tenant_id, user_id, course_id)
        if winner is None:  # pragma: no cover - the conflicting row vanished (cancelled) in between
            raise ApiError(503, "service_unavailable", "Concurrent change; retry.", {"Retry-After": "1"})
        return winner, False
    row = (await session.execute(sa.select(enrollments).where(enrollments.c.id == inserted.id))).one()
    await outbox.add(session, enrollment_event("enrollment.created", EnrollmentCreated(**snapshot_fields(row)),
                                               caller))
    log.info("enrollment_created", enrollment_id=row.id, user_id=user_id, course_id=course_id, source=source)
    return row, True


async def get_enrollment(session: AsyncSession, tenant_id: int, enrollment_id: int, *, lock: bool = False) -> Any:
    stmt = TenantScope(tenant_id).select(enrollments).where(enrollments.c.id == enrollment_id)
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).first()
    if row is None:
        raise ApiError.not_found("enrollment")
    return row


async def cancel(session: AsyncSession, caller: Caller, enrollment_id: int, now: datetime) -> Any:
    row = await get_enrollment(session, caller.tenant_id, enrollment_id, lock=True)
    try:
        changes = domain.cancel(row.status)
    except domain.IllegalTransition as exc:
        raise ApiError.invalid(str(exc)) from None
    if not changes:
        return row
    row = (await session.execute(
        sa.update(enrollments).where(enrollments.c.id == row.id)
        .values(status=domain.EnrollmentStatus.CANCELLED, cancelled_at=now, updated_at=now,
                revision=enrollments.c.revision + 1)
        .returning(*enrollments.c)
    )).one()
    await outbox.add(session, enrollment_event("enrollment.cancelled", EnrollmentCancelled(**snapshot_fields(row)),
                                               caller))
    log.info("enrollment_cancelled", enrollment_id=row.id)
    return row


async def expire(session: AsyncSession, enrollment_ids: list[int], now: datetime) -> int:
    """Turn these active enrollments into ``expired`` and send ``enrollment.expired`` for each that changed."""
    if not enrollment_ids:
        return 0
    rows = (await session.execute(
        sa.update(enrollments)
        .where(enrollments.c.id.in_(enrollment_ids), enrollments.c.status == domain.EnrollmentStatus.ACTIVE)
        .values(status=domain.EnrollmentStatus.EXPIRED, updated_at=now, revision=enrollments.c.revision + 1)
        .returning(*enrollments.c)
    )).all()
    if not rows:
        return 0
    slugs = dict((await session.execute(
        sa.select(tenants.c.tenant_id, tenants.c.slug).where(tenants.c.tenant_id.in_({r.tenant_id for r in rows}))
    )).all())
    events = []
    for row in rows:
        caller = Caller(row.tenant_id, slugs.get(row.tenant_id) or f"tenant-{row.tenant_id}")
        events.append(enrollment_event("enrollment.expired", EnrollmentExpired(**snapshot_fields(row)), caller))
    await outbox.add(session, *events)
    log.info("enrollments_expired", count=len(rows))
    return len(rows)


async def expire_overdue_batch(db: Database, now: datetime, batch_size: int = 100) -> int:
    """Expire up to ``batch_size`` overdue enrollments in one transaction. Rows another replica is expiring are
    skipped (``FOR UPDATE SKIP LOCKED``), so any number of sweepers can run at once."""
    async with db.transaction() as session:
        due = (await session.execute(
            sa.select(enrollments.c.id)
            .where(enrollments.c.status == domain.EnrollmentStatus.ACTIVE, enrollments.c.expires_at <= now)
            .order_by(enrollments.c.expires_at, enrollments.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )).scalars().all()
        return await expire(session, list(due), now)


async def expire_overdue(db: Database, now: datetime, batch_size: int = 100) -> int:
    total = 0
    while (count := await expire_overdue_batch(db, now, batch_size)) > 0:
        total += count
        if count < batch_size:
            break
    return total
