"""Cohorts: a named set of courses; a grant makes a user a member and enrolls them in each published course."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.enrollment.caches import Caches
from services.enrollment.enrollments import (
    SERVICE,
    Caller,
    enroll_in_published_course,
    enrollment_facts,
    require_user,
)
from services.enrollment.store import cohort_members, cohorts, enrollment_resource, insert_if_absent
from shared.bus import outbox
from shared.bus.envelope import new_event
from shared.db import TenantScope, as_utc
from shared.events.enrollment import CohortAccessGranted
from shared.http import ApiError

log = structlog.get_logger("enrollment.cohorts")

COHORT_SOURCE = "cohort"


async def create_cohort(session: AsyncSession, tenant_id: int, name: str, course_ids: list[int],
                        now: datetime) -> Any:
    return (await session.execute(
        TenantScope(tenant_id).insert(cohorts, name=name, course_ids=course_ids, created_at=now, updated_at=now)
        .returning(*cohorts.c)
    )).one()


async def get_cohort(db: AsyncSession | AsyncConnection, tenant_id: int, cohort_id: int) -> Any:
    row = (await db.execute(TenantScope(tenant_id).select(cohorts).where(cohorts.c.id == cohort_id))).first()
    if row is None:
        raise ApiError.not_found("cohort")
    return row


async def update_cohort(session: AsyncSession, tenant_id: int, cohort_id: int, changes: dict[str, Any],
                        now: datetime) -> Any:
    row = await get_cohort(session, tenant_id, cohort_id)
    if not changes:
        return row
    return (await session.execute(
        TenantScope(tenant_id).update(cohorts).where(cohorts.c.id == row.id).values(**changes, updated_at=now)
        .returning(*cohorts.c)
    )).one()


async def grant(session: AsyncSession, caches: Caches, caller: Caller, *, user_id: int, cohort_id: int,
                expires_at: datetime | None, now: datetime) -> tuple[dict[str, Any], bool]:
    """Membership plus one enrollment (source ``cohort``) per published course of the cohort.

    Returns (grant, changed?). Repeating a grant changes nothing: the membership and its ``granted_at`` stay, and
    the learner's existing enrollments are returned as they are. Courses that are not published are skipped.
    """
    cohort = await get_cohort(session, caller.tenant_id, cohort_id)
    await require_user(session, caller.tenant_id, user_id)
    membership_created = await insert_if_absent(session, cohort_members, {
        "cohort_id": cohort.id, "user_id": user_id, "tenant_id": caller.tenant_id, "granted_at": now})
    granted_at = (await session.execute(
        sa.select(cohort_members.c.granted_at)
        .where(cohort_members.c.cohort_id == cohort.id, cohort_members.c.user_id == user_id)
    )).scalar_one()
    granted: list[Any] = []
    created_any = False
    # Ascending course ids: overlapping grants running at once touch the learner's enrollments in one order.
    for course_id in sorted(int(c) for c in cohort.course_ids):
        facts = await enrollment_facts(session, caller.tenant_id, user_id, course_id)
        if facts is None or facts.course_status != "published":
            continue
        row, created = await enroll_in_published_course(
            session, caches, caller, facts, user_id=user_id, course_id=course_id, source=COHORT_SOURCE,
            expires_at=expires_at, now=now)
        granted.append(row)
        created_any = created_any or created
    changed = membership_created or created_any
    if changed:
        payload = CohortAccessGranted(cohort_id=cohort.id, user_id=user_id, granted_at=as_utc(granted_at),
                                      enrollment_ids=[r.id for r in granted])
        await outbox.add(session, new_event(
            "cohort.access_granted", payload, service=SERVICE, tenant=caller.tenant_slug,
            tenant_id=caller.tenant_id, subject=f"cohort/{cohort.id}", request_id=caller.request_id))
        log.info("cohort_access_granted", cohort_id=cohort.id, user_id=user_id, enrollments=len(granted))
    result = {
        "cohort_id": cohort.id,
        "user_id": user_id,
        "granted_at": as_utc(granted_at),
        "enrollments": [enrollment_resource(r) for r in granted],
    }
    return result, changed
