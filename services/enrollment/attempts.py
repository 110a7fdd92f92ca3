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
from services.enrollment.caches import Caches
from services.enrollment.enrollments import SERVICE, Caller, enrollment_event, snapshot_fields
from services.enrollment.store import (
    as_utc,
    attempt_commits,
    attempts,
    dialect_name,
    directory_users,
    enrollments,
    ignoring_conflicts,
    insert_if_absent,
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


# Statements built once (building and hashing them per event cost more CPU than running them).
_LOCK_ENROLLMENT = sa.select(enrollments).where(
    enrollments.c.id == sa.bindparam("enrollment_id"), enrollments.c.tenant_id == sa.bindparam("tenant_id"),
).with_for_update()
_LOCK_ATTEMPT = sa.select(attempts).where(attempts.c.id == sa.bindparam("attempt_id")).with_for_update()
# The shared consumer applies several events in one transaction. Waiting for a row lock while holding the rows of
# the batch's earlier events is how two batches deadlock (each holds a learner the other needs; PostgreSQL breaks
# it only after deadlock_timeout, a second): after the first event, locks are taken NOWAIT. A taken lock fails the
# batch, and the consumer applies its events again one per transaction, where waiting is safe.
_LOCKS = {True: (_LOCK_ENROLLMENT, _LOCK_ATTEMPT),
          False: (_LOCK_ENROLLMENT.with_for_update(nowait=True), _LOCK_ATTEMPT.with_for_update(nowait=True))}
_APPLIED_IN_TRANSACTION = "enrollment.runtime_commits"
# SET takes the columns the parameters name.
_UPDATE_ATTEMPT = sa.update(attempts).where(attempts.c.id == sa.bindparam("attempt_id")).returning(*attempts.c)
_RESULTS = sa.select(attempts.c.activity_id, attempts.c.status, attempts.c.best_score_scaled).where(
    attempts.c.enrollment_id == sa.bindparam("enrollment_id"))
_PROGRESS = sa.update(enrollments).where(enrollments.c.id == sa.bindparam("enrollment_id"))
_COMPLETE = (
    sa.update(enrollments)
    .where(enrollments.c.id == sa.bindparam("enrollment_id"), enrollments.c.status == domain.EnrollmentStatus.ACTIVE)
    .values(revision=enrollments.c.revision + 1)
    .returning(*enrollments.c)
)
_USER_AND_TENANT_NAMES = sa.select(
    sa.select(directory_users.c.name).where(directory_users.c.tenant_id == sa.bindparam("tenant_id"),
                                            directory_users.c.user_id == sa.bindparam("user_id"))
    .scalar_subquery().label("user_name"),
    sa.select(directory_users.c.email).where(directory_users.c.tenant_id == sa.bindparam("tenant_id"),
                                             directory_users.c.user_id == sa.bindparam("user_id"))
    .scalar_subquery().label("user_email"),
    sa.select(tenants.c.name).where(tenants.c.tenant_id == sa.bindparam("tenant_id"))
    .scalar_subquery().label("tenant_name"),
)


async def apply_runtime_commit(session: AsyncSession, event: CloudEvent, payload: RuntimeCommitted, *,
                               caches: Caches) -> None:
    """One runtime commit: update (or start) its attempt, send ``attempt.updated``, then evaluate completion."""
    tenant_id = event.tenantid
    earlier = session.info.get(_APPLIED_IN_TRANSACTION, 0)
    session.info[_APPLIED_IN_TRANSACTION] = earlier + 1
    lock_enrollment, lock_attempt = _LOCKS[earlier == 0]
    enrollment = (await session.execute(lock_enrollment, {"enrollment_id": payload.enrollment_id,
                                                          "tenant_id": tenant_id})).first()
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
    before, attempt = await _write_attempt(session, lock_attempt, tenant_id, payload, now)
    caller = Caller(tenant_id, event.tenant, event.requestid)
    staged = [new_event(
        "attempt.updated", _attempt_updated(attempt), service=SERVICE, tenant=caller.tenant_slug,
        tenant_id=tenant_id, subject=f"attempt/{attempt.id}", request_id=caller.request_id)]
    if domain.counts_differently(before, _result(attempt)) or progress_says_complete(enrollment):
        staged += await evaluate_completion(session, caches, caller, enrollment,
                                            completed_at=as_utc(event.time) or now)
    # Otherwise the learner's progress cannot have moved: it was evaluated after every attempt change so far.
    await outbox.add(session, *staged)


def _result(row: Any) -> domain.AttemptResult:
    return domain.AttemptResult(activity_id=row.activity_id, status=row.status,
                                best_score_scaled=row.best_score_scaled)


def progress_says_complete(enrollment: Any) -> bool:
    """Stored progress already satisfies the rule (e.g. a version without activities): evaluate whatever came."""
    return bool(enrollment.required_done >= enrollment.required_total)


def attempt_after(current: Any | None, payload: RuntimeCommitted, now: datetime) -> dict[str, Any]:
    """The attempt's changed columns once ``payload`` is applied to ``current`` (None: the launch's first commit,
    applied to a fresh ``not_attempted`` attempt)."""
    started = as_utc(payload.time_started_at)
    if current is None:
        total, best, first_started, revision, last_sequence = Decimal(0), None, started, 0, -1
    else:
        total, best = Decimal(current.total_time_seconds), current.best_score_scaled
        first_started = min(as_utc(current.time_started_at) or started, started)
        revision, last_sequence = current.revision, current.last_sequence
    values: dict[str, Any] = {
        "total_time_seconds": total + payload.session_time_delta_seconds,
        "best_score_scaled": _max(best, payload.score_scaled),
        "time_started_at": first_started,
        "revision": revision + 1,
        "updated_at": now,
    }
    if payload.sequence > last_sequence:  # status fields: the latest commit wins, whatever the order
        values.update(status=payload.status, score_raw=payload.score_raw, score_scaled=payload.score_scaled,
                      passed=payload.passed, last_sequence=payload.sequence)
        if payload.time_ended_at is not None:
            values["time_ended_at"] = as_utc(payload.time_ended_at)
    return values


async def _write_attempt(session: AsyncSession, lock: Any, tenant_id: int, payload: RuntimeCommitted,
                         now: datetime) -> tuple[domain.AttemptResult | None, Any]:
    """Apply the commit to its attempt; returns (its result before, the row after)."""
    current = (await session.execute(lock, {"attempt_id": payload.attempt_id})).first()
    if current is None:
        new = {
            "id": payload.attempt_id, "tenant_id": tenant_id, "enrollment_id": payload.enrollment_id,
            "activity_id": payload.activity_id, "user_id": payload.user_id, "course_id": payload.course_id,
            "status": "not_attempted", "score_raw": None, "score_scaled": None, "passed": None,
            "time_ended_at": None, "created_at": now, **attempt_after(None, payload, now),
        }
        row = (await session.execute(ignoring_conflicts(dialect_name(session), attempts, returning=True),
                                     new)).first()
        if row is not None:
            return None, row
        # Inserted meanwhile under another enrollment's lock: it cannot be this enrollment's (checked below).
        current = (await session.execute(lock, {"attempt_id": payload.attempt_id})).one()
    if (current.tenant_id, current.enrollment_id, current.activity_id) != (
        tenant_id, payload.enrollment_id, payload.activity_id
    ):
        raise PermanentError(f"attempt {payload.attempt_id} belongs to another enrollment or activity")
    row = (await session.execute(_UPDATE_ATTEMPT, {"attempt_id": current.id,
                                                   **attempt_after(current, payload, now)})).one()
    return _result(current), row


def _attempt_updated(row: Any) -> AttemptUpdated:
    return AttemptUpdated(
        attempt_id=row.id, enrollment_id=row.enrollment_id, activity_id=row.activity_id, user_id=row.user_id,
        course_id=row.course_id, status=row.status, score_raw=row.score_raw, score_scaled=row.score_scaled,
        passed=row.passed, total_time_seconds=row.total_time_seconds, time_started_at=as_utc(row.time_started_at),
        time_ended_at=as_utc(row.time_ended_at), revision=row.revision,
    )


async def evaluate_completion(session: AsyncSession, caches: Caches, caller: Caller, enrollment: Any,
                              completed_at: datetime) -> list[CloudEvent]:
    """Apply the completion rule of the version the learner is enrolled in. ``enrollment`` must be locked.
    Returns the events to stage (``enrollment.completed`` when this completes it)."""
    if enrollment.status != domain.EnrollmentStatus.ACTIVE:
        return []  # completed once; cancelled and expired enrollments do not complete
    version = await caches.version(session, caller.tenant_id, enrollment.course_id, enrollment.course_version)
    if version is None:
        log.error("enrolled_version_missing", enrollment_id=enrollment.id, version=enrollment.course_version)
        return []
    results = [_result(r) for r in (await session.execute(_RESULTS, {"enrollment_id": enrollment.id})).all()]
    progress = version.progress(results)
    if not progress.complete:
        if (progress.required_total, progress.required_done) != (enrollment.required_total,
                                                                 enrollment.required_done):
            await session.execute(_PROGRESS, {"enrollment_id": enrollment.id, "updated_at": utcnow(),
                                              "required_total": progress.required_total,
                                              "required_done": progress.required_done})
        return []
    completed_at = max(completed_at, as_utc(enrollment.enrolled_at))
    row = (await session.execute(_COMPLETE, {
        "enrollment_id": enrollment.id, "status": domain.EnrollmentStatus.COMPLETED, "completed_at": completed_at,
        "updated_at": utcnow(), "required_total": progress.required_total, "required_done": progress.required_done,
    })).one()
    names = (await session.execute(_USER_AND_TENANT_NAMES, {"tenant_id": caller.tenant_id,
                                                            "user_id": row.user_id})).one()
    payload = EnrollmentCompleted(
        **snapshot_fields(row),
        user=CompletedUser(id=row.user_id, name=names.user_name or "", email=names.user_email or ""),
        course=CompletedCourse(id=row.course_id, title=version.title, version=version.version_number,
                               credit=version.credit, certificate_template_id=version.certificate_template_id),
        progress=Progress(required_total=progress.required_total, required_done=progress.required_done),
        tenant_name=names.tenant_name or "",
    )
    log.info("enrollment_completed", enrollment_id=row.id, user_id=row.user_id, course_id=row.course_id,
             course_version=row.course_version)
    return [enrollment_event("enrollment.completed", payload, caller)]
