"""Attempts, written from ``runtime.committed``, and the completion decision that follows attempt changes.

The enrollment row is locked before its attempts are written or read, so concurrent commits for one learner
serialise: each evaluates the completion rule against every other commit already committed, and only the first
one to find the rule satisfied completes the enrollment. The rule is evaluated whenever a commit may have moved the
learner's progress (``domain.progress_may_move``); the others (another ``incomplete``, say) write the attempt only.
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
from shared.db import as_utc, utcnow
from shared.events.enrollment import (
    AttemptUpdated,
    CompletedCourse,
    CompletedUser,
    EnrollmentCompleted,
    Progress,
)
from shared.events.scorm import RuntimeCommitted

log = structlog.get_logger("enrollment.attempts")


def _p(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    """A parameter typed like ``column`` (SET cannot reuse a column's own name for a parameter)."""
    return sa.bindparam(name, type_=column.type)


_a = attempts.c
_SEQUENCE = _p("new_sequence", _a.last_sequence)
_SCORE = _p("new_score_scaled", _a.score_scaled)
_STARTED = _p("new_started_at", _a.time_started_at)
_ENDED = _p("new_ended_at", _a.time_ended_at)
_LATER = _a.last_sequence < _SEQUENCE  # status fields: the latest commit wins, whatever the order


def _if_later(value: Any, column: sa.Column[Any]) -> sa.Case[Any]:
    return sa.case((_LATER, value), else_=column)


# Statements built once (building and hashing them per event cost more CPU than running them).
_LOCK_ENROLLMENT = sa.select(enrollments).where(
    enrollments.c.id == sa.bindparam("enrollment_id"), enrollments.c.tenant_id == sa.bindparam("tenant_id"),
).with_for_update()
# The shared consumer applies several events in one transaction. Waiting for a row lock while holding the rows of
# the batch's earlier events is how two batches deadlock (each holds a learner the other needs; PostgreSQL breaks
# it only after deadlock_timeout, a second): after the first event the enrollment is locked NOWAIT. A taken lock
# fails the batch, and the consumer applies its events again one per transaction, where waiting is safe. Every
# other row an event writes belongs to its enrollment, so holding the enrollment no one else holds them.
_LOCK_ENROLLMENT_NOWAIT = _LOCK_ENROLLMENT.with_for_update(nowait=True)
_APPLIED_IN_TRANSACTION = "enrollment.runtime_commits"
# One commit applied to an existing attempt of this enrollment and activity, in one statement (every SET
# expression reads the row as it was before the statement).
_APPLY_COMMIT = (
    sa.update(attempts)
    .where(_a.id == sa.bindparam("attempt_id"), _a.tenant_id == sa.bindparam("attempt_tenant_id"),
           _a.enrollment_id == sa.bindparam("attempt_enrollment_id"),
           _a.activity_id == sa.bindparam("attempt_activity_id"))
    .values(
        total_time_seconds=_a.total_time_seconds + _p("delta", _a.total_time_seconds),
        best_score_scaled=sa.case(
            (sa.and_(_SCORE.is_not(None), sa.or_(_a.best_score_scaled.is_(None), _a.best_score_scaled < _SCORE)),
             _SCORE),
            else_=_a.best_score_scaled),
        time_started_at=sa.case(
            (sa.or_(_a.time_started_at.is_(None), _a.time_started_at > _STARTED), _STARTED),
            else_=_a.time_started_at),
        status=_if_later(_p("new_status", _a.status), _a.status),
        score_raw=_if_later(_p("new_score_raw", _a.score_raw), _a.score_raw),
        score_scaled=_if_later(_SCORE, _a.score_scaled),
        passed=_if_later(_p("new_passed", _a.passed), _a.passed),
        time_ended_at=sa.case((sa.and_(_LATER, _ENDED.is_not(None)), _ENDED), else_=_a.time_ended_at),
        last_sequence=_if_later(_SEQUENCE, _a.last_sequence),
        revision=_a.revision + 1,
        updated_at=_p("now", _a.updated_at),
    )
    .returning(*attempts.c)
)
_RESULTS = sa.select(_a.activity_id, _a.status, _a.best_score_scaled).where(
    _a.enrollment_id == sa.bindparam("enrollment_id"))
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
    enrollment = (await session.execute(_LOCK_ENROLLMENT if earlier == 0 else _LOCK_ENROLLMENT_NOWAIT, {
        "enrollment_id": payload.enrollment_id, "tenant_id": tenant_id})).first()
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
    attempt = await _write_attempt(session, tenant_id, payload, now)
    caller = Caller(tenant_id, event.tenant, event.requestid)
    staged = [new_event(
        "attempt.updated", _attempt_updated(attempt), service=SERVICE, tenant=caller.tenant_slug,
        tenant_id=tenant_id, subject=f"attempt/{attempt.id}", request_id=caller.request_id)]
    stored = domain.Progress(required_total=enrollment.required_total, required_done=enrollment.required_done)
    status_set = attempt.last_sequence == payload.sequence  # (attempt, sequence) is applied once
    if domain.progress_may_move(stored, status_set=attempt.status if status_set else None,
                                score=payload.score_scaled, best=attempt.best_score_scaled):
        staged += await evaluate_completion(session, caches, caller, enrollment,
                                            completed_at=as_utc(event.time) or now)
    await outbox.add(session, *staged)


def _result(row: Any) -> domain.AttemptResult:
    return domain.AttemptResult(activity_id=row.activity_id, status=row.status,
                                best_score_scaled=row.best_score_scaled)


async def _write_attempt(session: AsyncSession, tenant_id: int, payload: RuntimeCommitted, now: datetime) -> Any:
    """Apply the commit to its attempt (the launch's first commit starts it); returns the attempt after."""
    started = as_utc(payload.time_started_at)
    ended = as_utc(payload.time_ended_at)
    row = (await session.execute(_APPLY_COMMIT, {
        "attempt_id": payload.attempt_id, "attempt_tenant_id": tenant_id,
        "attempt_enrollment_id": payload.enrollment_id, "attempt_activity_id": payload.activity_id,
        "delta": payload.session_time_delta_seconds, "new_score_scaled": payload.score_scaled,
        "new_started_at": started, "new_status": payload.status, "new_score_raw": payload.score_raw,
        "new_passed": payload.passed, "new_ended_at": ended, "new_sequence": payload.sequence, "now": now,
    })).first()
    if row is not None:
        return row
    row = (await session.execute(ignoring_conflicts(dialect_name(session), attempts, returning=True), {
        "id": payload.attempt_id, "tenant_id": tenant_id, "enrollment_id": payload.enrollment_id,
        "activity_id": payload.activity_id, "user_id": payload.user_id, "course_id": payload.course_id,
        "status": payload.status, "score_raw": payload.score_raw, "score_scaled": payload.score_scaled,
        "best_score_scaled": payload.score_scaled, "passed": payload.passed, "time_started_at": started,
        "time_ended_at": ended, "total_time_seconds": Decimal(0) + payload.session_time_delta_seconds,
        "last_sequence": payload.sequence, "revision": 1, "created_at": now, "updated_at": now,
    })).first()
    if row is None:  # the id exists, but not as this enrollment's attempt at this activity
        raise PermanentError(f"attempt {payload.attempt_id} belongs to another enrollment or activity")
    return row


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
