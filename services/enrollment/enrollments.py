"""Enrollment use cases: enroll, cancel, expire. Each runs inside the caller's transaction and stages its events
in the outbox of that same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.enrollment import domain
from services.enrollment.caches import Caches
from services.enrollment.store import (
    LIVE_ENROLLMENT,
    course_versions,
    courses,
    dialect_name,
    directory_users,
    enrollments,
    ignoring_conflicts,
    tenants,
)
from shared.bus import outbox
from shared.bus.envelope import CloudEvent, new_event
from shared.db import Database, as_utc
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


# Everything enrolling decides on, in one round trip: the course's status and highest published version, whether
# the user is in the directory, and the learner's live enrollment (columns named as in ``enrollments``, all NULL
# when there is none). No row: the course is unknown in this tenant. No lock on the enrollment: returning it is a
# read, and every change below re-checks in the statement that makes it (guarded expiry, the unique index).
_ENROLL_FACTS = (
    sa.select(
        courses.c.status.label("course_status"),
        sa.select(sa.func.max(course_versions.c.version_number))
        .where(course_versions.c.tenant_id == courses.c.tenant_id,
               course_versions.c.course_id == courses.c.course_id)
        .scalar_subquery().label("latest_version"),
        sa.exists().where(directory_users.c.tenant_id == courses.c.tenant_id,
                          directory_users.c.user_id == sa.bindparam("user_id")).label("user_known"),
        *enrollments.c,
    )
    .select_from(courses.outerjoin(enrollments, sa.and_(
        enrollments.c.tenant_id == courses.c.tenant_id, enrollments.c.course_id == courses.c.course_id,
        enrollments.c.user_id == sa.bindparam("user_id"), LIVE_ENROLLMENT)))
    .where(courses.c.tenant_id == sa.bindparam("tenant_id"), courses.c.course_id == sa.bindparam("course_id"))
)
_LIVE_ENROLLMENT = sa.select(enrollments).where(
    enrollments.c.tenant_id == sa.bindparam("tenant_id"), enrollments.c.user_id == sa.bindparam("user_id"),
    enrollments.c.course_id == sa.bindparam("course_id"), LIVE_ENROLLMENT)
_ENROLLMENT = sa.select(enrollments).where(enrollments.c.tenant_id == sa.bindparam("tenant_id"),
                                           enrollments.c.id == sa.bindparam("id"))
_ENROLLMENT_LOCKED = _ENROLLMENT.with_for_update()
_USER_KNOWN = sa.select(directory_users.c.user_id).where(directory_users.c.tenant_id == sa.bindparam("tenant_id"),
                                                         directory_users.c.user_id == sa.bindparam("user_id"))


async def enrollment_facts(session: AsyncSession, tenant_id: int, user_id: int, course_id: int) -> Any | None:
    """The course, the user and the learner's live enrollment as enrolling sees them (``_ENROLL_FACTS``)."""
    return (await session.execute(_ENROLL_FACTS, {"tenant_id": tenant_id, "user_id": user_id,
                                                  "course_id": course_id})).first()


def live_of(facts: Any, now: datetime) -> Any | None:
    """The learner's live enrollment among ``facts`` unless it is overdue (then a new one takes its place)."""
    if facts.id is None or domain.is_overdue(facts.status, as_utc(facts.expires_at), now):
        return None
    return facts


async def require_user(session: AsyncSession, tenant_id: int, user_id: int) -> None:
    known = (await session.execute(_USER_KNOWN, {"tenant_id": tenant_id, "user_id": user_id})).first()
    if known is None:
        raise ApiError.invalid(_unknown_user(user_id))


def _unknown_user(user_id: int) -> str:
    return f"User {user_id} is not in this tenant's directory; upsert the user first."


async def enroll(session: AsyncSession, caches: Caches, caller: Caller, *, user_id: int, course_id: int,
                 source: str, expires_at: datetime | None, now: datetime) -> tuple[Any, bool]:
    """Enroll a user in a published course. Returns (enrollment row, created?): an active or completed enrollment
    for the same user and course is returned as it is."""
    facts = await enrollment_facts(session, caller.tenant_id, user_id, course_id)
    if facts is None:
        raise ApiError.not_found("course")
    existing = live_of(facts, now)
    if existing is not None:
        # Idempotent even after the course was unpublished or archived: a retried purchase gets its enrollment.
        return existing, False
    if facts.course_status != "published":
        raise ApiError.invalid(f"Course {course_id} is {facts.course_status}; only published courses take "
                               "enrollments.")
    if not facts.user_known:
        raise ApiError.invalid(_unknown_user(user_id))
    return await enroll_in_published_course(session, caches, caller, facts, user_id=user_id, course_id=course_id,
                                            source=source, expires_at=expires_at, now=now)


async def enroll_in_published_course(session: AsyncSession, caches: Caches, caller: Caller, facts: Any, *,
                                     user_id: int, course_id: int, source: str, expires_at: datetime | None,
                                     now: datetime) -> tuple[Any, bool]:
    """Create the enrollment ``facts`` (from :func:`enrollment_facts`) call for, or return the live one."""
    existing = live_of(facts, now)
    if existing is not None:
        return existing, False
    if facts.id is not None:
        # Past its end but not swept yet: expire it now so the new enrollment can take its place.
        await expire(session, [facts.id], now)
    version = None if facts.latest_version is None else await caches.version(
        session, caller.tenant_id, course_id, facts.latest_version)
    if version is None:  # the course says published but its tree has not arrived yet
        raise ApiError.invalid(f"Course {course_id} is not published yet; retry shortly.")
    progress = version.progress([])
    values = {
        "tenant_id": caller.tenant_id, "user_id": user_id, "course_id": course_id,
        "course_version": version.version_number, "status": domain.EnrollmentStatus.ACTIVE, "source": source,
        "enrolled_at": now, "expires_at": expires_at, "completed_at": None, "cancelled_at": None,
        "required_total": progress.required_total, "required_done": 0, "revision": 1, "updated_at": now,
    }
    # Two concurrent enrollments of one learner collapse onto one row (the unique index on live enrollments).
    row = (await session.execute(ignoring_conflicts(dialect_name(session), enrollments, returning=True),
                                 values)).first()
    if row is None:
        winner = (await session.execute(_LIVE_ENROLLMENT, {"tenant_id": caller.tenant_id, "user_id": user_id,
                                                           "course_id": course_id})).first()
        if winner is None:  # pragma: no cover - the conflicting row vanished (cancelled) in between
            raise ApiError(503, "service_unavailable", "Concurrent change; retry.", {"Retry-After": "1"})
        return winner, False
    await outbox.add(session, enrollment_event("enrollment.created", EnrollmentCreated(**snapshot_fields(row)),
                                               caller))
    log.info("enrollment_created", enrollment_id=row.id, user_id=user_id, course_id=course_id, source=source)
    return row, True


async def get_enrollment(db: AsyncSession | AsyncConnection, tenant_id: int, enrollment_id: int, *,
                         lock: bool = False) -> Any:
    params = {"tenant_id": tenant_id, "id": enrollment_id}
    row = (await db.execute(_ENROLLMENT_LOCKED if lock else _ENROLLMENT, params)).first()
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
