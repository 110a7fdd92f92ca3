"""Attempts, written from ``runtime.committed``, and the completion decision that follows every attempt change.

Locks are always taken in the same order (enrollment, then attempt), so concurrent commits for one learner
serialise: each evaluates the completion rule against every other commit already committed, and only the first
one to find the rule satisfied completes the enrollment.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrollment import domain
from services.enrollment.enrollments import SERVICE, Caller, enrollment_event, snapshot_fields
from services.enrollment.readmodels import course_version
from services.enrollment.store import (
    as_utc,
    attempt_commits,
    attempts,
    directory_users,
    enrollments,
    insert_if_absent,
    insert_ignoring_conflicts,
    tenants,
)
from shared.bus import outbox
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent, new_event
from shared.db import utcnow
from shared.events.enrollment import (
    AttemptUpdated,
    CompletedCourse,
    CompletedUser,
    EnrollmentCompleted,
    Progress,
)
from shared.events.scorm import RuntimeCommitted

log = structlog.get_logger("enrollment.attempts")


def _max(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


async def apply_runtime_commit(session: AsyncSession, event: CloudEvent, payload: RuntimeCommitted) -> None:
    """One runtime commit: update (or start) its attempt, send ``attempt.updated``, then evaluate completion."""
    tenant_id = event.tenantid
    enrollment = (await session.execute(
        sa.select(enrollments).where(enrollments.c.id == payload.enrollment_id, enrollments.c.tenant_id == tenant_id)
        .with_for_update()
    )).first()
    if enrollment is None:
        raise PermanentError(f"runtime commit for unknown enrollment {payload.enrollment_id}")
    if (enrollment.user_id, enrollment.course_id) != (payload.user_id, payload.course_id):
        raise PermanentError(f"runtime commit does not match enrollment {payload.enrollment_id}")
    if payload.status not in domain.ATTEMPT_STATUSES:
        raise PermanentError(f"unknown attempt status {payload.status!r}")

    # The same (attempt, sequence) is applied once even if the runtime sends it under another event id.
    first = await insert_if_absent(session, attempt_commits, {
        "attempt_id": payload.attempt_id, "sequence": payload.sequence, "tenant_id": tenant_id})
    if not first:
        log.info("runtime_commit_already_applied", attempt_id=payload.attempt_id, sequence=payload.sequence)
        return

    now = utcnow()
    attempt = await _locked_attempt(session, tenant_id, payload, now)
    started = as_utc(payload.time_started_at)
    values: dict[str, Any] = {
        "total_time_seconds": Decimal(attempt.total_time_seconds) + payload.session_time_delta_seconds,
        "best_score_scaled": _max(attempt.best_score_scaled, payload.score_scaled),
        "time_started_at": min(as_utc(attempt.time_started_at) or started, started),
        "revision": attempt.revision + 1,
        "updated_at": now,
    }
    if payload.sequence > attempt.last_sequence:  # status fields: the latest commit wins, whatever the order
        values.update(status=payload.status, score_raw=payload.score_raw, score_scaled=payload.score_scaled,
                      passed=payload.passed, last_sequence=payload.sequence)
        if payload.time_ended_at is not None:
            values["time_ended_at"] = as_utc(payload.time_ended_at)
    attempt = (await session.execute(
        sa.update(attempts).where(attempts.c.id == attempt.id).values(**values).returning(*attempts.c)
    )).one()
    caller = Caller(tenant_id, event.tenant, event.requestid)
    await outbox.add(session, new_event(
        "attempt.updated", _attempt_updated(attempt), service=SERVICE, tenant=caller.tenant_slug,
        tenant_id=tenant_id, subject=f"attempt/{attempt.id}", request_id=caller.request_id))
    await evaluate_completion(session, caller, enrollment, completed_at=as_utc(event.time) or now)


async def _locked_attempt(session: AsyncSession, tenant_id: int, payload: RuntimeCommitted, now: datetime) -> Any:
    await session.execute(insert_ignoring_conflicts(session, attempts, {
        "id": payload.attempt_id, "tenant_id": tenant_id, "enrollment_id": payload.enrollment_id,
        "activity_id": payload.activity_id, "user_id": payload.user_id, "course_id": payload.course_id,
        "status": "not_attempted", "time_started_at": as_utc(payload.time_started_at),
        "total_time_seconds": Decimal(0), "last_sequence": -1, "revision": 0, "created_at": now, "updated_at": now,
    }))
    attempt = (await session.execute(
        sa.select(attempts).where(attempts.c.id == payload.attempt_id).with_for_update()
    )).one()
    if (attempt.tenant_id, attempt.enrollment_id, attempt.activity_id) != (
        tenant_id, payload.enrollment_id, payload.activity_id
    ):
        raise PermanentError(f"attempt {payload.attempt_id} belongs to another enrollment or activity")
    return attempt


def _attempt_updated(row: Any) -> AttemptUpdated:
    return AttemptUpdated(
        attempt_id=row.id, enrollment_id=row.enrollment_id, activity_id=row.activity_id, user_id=row.user_id,
        course_id=row.course_id, status=row.status, score_raw=row.score_raw, score_scaled=row.score_scaled,
        passed=row.passed, total_time_seconds=row.total_time_seconds, time_started_at=as_utc(row.time_started_at),
        time_ended_at=as_utc(row.time_ended_at), revision=row.revision,
    )


async def evaluate_completion(session: AsyncSession, caller: Caller, enrollment: Any, completed_at: datetime) -> None:
    """Apply the completion rule of the version the learner is enrolled in. ``enrollment`` must be locked."""
    if enrollment.status != domain.EnrollmentStatus.ACTIVE:
        return  # completed once; cancelled and expired enrollments do not complete
    version = await course_version(session, caller.tenant_id, enrollment.course_id, enrollment.course_version)
    if version is None:
        log.error("enrolled_version_missing", enrollment_id=enrollment.id, version=enrollment.course_version)
        return
    results = [
        domain.AttemptResult(activity_id=r.activity_id, status=r.status, best_score_scaled=r.best_score_scaled)
        for r in (await session.execute(
            sa.select(attempts.c.activity_id, attempts.c.status, attempts.c.best_score_scaled)
            .where(attempts.c.enrollment_id == enrollment.id)
        )).all()
    ]
    rule = domain.completion_rule(version.completion_rule)
    progress = domain.evaluate(rule, domain.activities_of(version.modules), results)
    if not progress.complete:
        if (progress.required_total, progress.required_done) != (enrollment.required_total,
                                                                 enrollment.required_done):
            await session.execute(sa.update(enrollments).where(enrollments.c.id == enrollment.id).values(
                required_total=progress.required_total, required_done=progress.required_done, updated_at=utcnow()))
        return
    completed_at = max(completed_at, as_utc(enrollment.enrolled_at))
    row = (await session.execute(
        sa.update(enrollments)
        .where(enrollments.c.id == enrollment.id, enrollments.c.status == domain.EnrollmentStatus.ACTIVE)
        .values(status=domain.EnrollmentStatus.COMPLETED, completed_at=completed_at, updated_at=utcnow(),
                required_total=progress.required_total, required_done=progress.required_done,
                revision=enrollments.c.revision + 1)
        .returning(*enrollments.c)
    )).one()
    user = (await session.execute(
        sa.select(directory_users.c.name, directory_users.c.email)
        .where(directory_users.c.tenant_id == caller.tenant_id, directory_users.c.user_id == row.user_id)
    )).first()
    tenant_name = (await session.execute(
        sa.select(tenants.c.name).where(tenants.c.tenant_id == caller.tenant_id)
    )).scalar_one_or_none()
    payload = EnrollmentCompleted(
        **snapshot_fields(row),
        user=CompletedUser(id=row.user_id, name=user.name if user else "", email=user.email if user else ""),
        course=CompletedCourse(id=row.course_id, title=version.title, version=version.version_number,
                               credit=version.credit, certificate_template_id=version.certificate_template_id),
        progress=Progress(required_total=progress.required_total, required_done=progress.required_done),
        tenant_name=tenant_name or "",
    )
    await outbox.add(session, enrollment_event("enrollment.completed", payload, caller))
    log.info("enrollment_completed", enrollment_id=row.id, user_id=row.user_id, course_id=row.course_id,
             course_version=row.course_version)
