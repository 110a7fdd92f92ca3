"""The enrollment service's use cases: one function per command and per event.

Command handlers take ``(uow, origin, command)``, open and commit their own transaction (``async with uow``),
stage their events in its outbox and raise the domain exceptions of domain.py. Event handlers take
``(uow, event, payload)``, run inside the consumer's transaction (the inbox row commits with their writes) and
are wired in ``app.EVENT_HANDLERS``. ``uow.deps`` is the app's :class:`Caches`.

Attempts and completion (ADR 0005, exactly once): the enrollment row is locked before its attempts are written
or read, so concurrent commits for one learner serialise: each evaluates the completion rule against every other
commit already committed, and only the first one to find the rule satisfied completes the enrollment. The rule
is evaluated whenever a commit may have moved the learner's progress (``domain.progress_may_move``).

Read models (courses with every published version's tree, directory users) are filled only from events, which
may arrive twice or out of order: snapshots are applied by ``revision`` and never backwards; a published
version's tree is immutable and stored whatever order it arrives in, so learners keep the version they enrolled
in after the course is republished (ADR 0014).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.enrollment import domain, events, store
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent, Origin
from shared.db import as_utc, utcnow
from shared.events.catalog import CoursePublished, CourseSnapshot
from shared.events.directory import UserUpserted
from shared.events.scorm import RuntimeCommitted
from shared.uow import UnitOfWork

log = structlog.get_logger("enrollment.handlers")

COHORT_SOURCE = "cohort"
VERSIONS_KEPT = 4096
TENANT_TTL = 60.0


class Caches:
    """In-process caches of what enrolling and completing read on every request or event (one set per app).

    - **Published versions** never change once stored (``course_versions`` rows are insert-only), so what
      enrolling and completion need of one ``(tenant, course, version)`` is kept without expiry, in a bounded LRU.
      The highest published version still comes from the database every time.
    - **Tenant slug and name** as last confirmed in the ``tenants`` row: a request forwarding the same pair skips
      the read-compare-write for ``TENANT_TTL`` seconds. Only a read that found the row equal fills the cache
      (never a write, which may still roll back); another replica writing a different pair is noticed within
      the TTL.
    """

    def __init__(self, versions_kept: int = VERSIONS_KEPT, tenant_ttl: float = TENANT_TTL):
        self.versions_kept = versions_kept
        self.tenant_ttl = tenant_ttl
        self._versions: OrderedDict[tuple[int, int, int], domain.PinnedVersion] = OrderedDict()
        self._tenants: dict[int, tuple[str, str | None, float]] = {}

    async def version(self, db: AsyncSession | AsyncConnection, tenant_id: int, course_id: int,
                      version: int) -> domain.PinnedVersion | None:
        """A published version of a course (``None`` if this service has not received it)."""
        key = (tenant_id, course_id, version)
        found = self._versions.get(key)
        if found is not None:
            self._versions.move_to_end(key)
            return found
        row = await store.course_version(db, tenant_id, course_id, version)
        if row is None:
            return None  # not cached: it may arrive any moment
        found = self._versions[key] = domain.PinnedVersion.of(row)
        if len(self._versions) > self.versions_kept:
            self._versions.popitem(last=False)
        return found

    def tenant_confirmed(self, tenant_id: int, slug: str, name: str | None) -> bool:
        """True if the stored row was recently seen holding this slug (and this name, when one is given)."""
        known = self._tenants.get(tenant_id)
        if known is None or time.monotonic() - known[2] > self.tenant_ttl:
            return False
        return known[0] == slug and (name is None or known[1] == name)

    def confirm_tenant(self, tenant_id: int, slug: str, name: str | None) -> None:
        """The stored row was just read and holds these values."""
        self._tenants[tenant_id] = (slug, name, time.monotonic())


# --- commands ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enroll:
    user_id: int
    course_id: int
    source: str = "api"
    expires_at: str | None = None  # RFC 3339, checked against the clock by the handler


@dataclass(frozen=True)
class CreateCohort:
    name: str
    course_ids: list[int]


@dataclass(frozen=True)
class UpdateCohort:
    cohort_id: int
    changes: dict[str, Any]  # the fields given: name, course_ids


@dataclass(frozen=True)
class GrantCohort:
    user_id: int
    cohort_id: int
    expires_at: str | None = None


@dataclass(frozen=True)
class Grant:
    """What a cohort grant did: the membership and the learner's enrollments in the cohort's published courses."""

    cohort_id: int
    user_id: int
    granted_at: datetime
    enrollments: list[Any]
    changed: bool


async def _note_tenant(uow: UnitOfWork, tenant_id: int, slug: str, name: str | None, now: datetime) -> None:
    """Keep the tenant's slug (routing keys of events the sweeper sends) and display name (certificates), as the
    gateway forwards them.

    Read first and write only on a change, so that concurrent requests of one tenant do not queue on its row; a
    pair the row was recently seen holding skips even the read (``Caches``).
    """
    caches: Caches = uow.deps
    if caches.tenant_confirmed(tenant_id, slug, name):
        return
    known = await store.tenant(uow.session, tenant_id)
    if known is not None and known.slug == slug and (name is None or known.name == name):
        caches.confirm_tenant(tenant_id, known.slug, known.name)
        return
    await store.upsert_tenant(uow.session, tenant_id, slug, name, now)


# --- enrollments -------------------------------------------------------------------------------------------------


def _live_of(facts: Any, now: datetime) -> Any | None:
    """The learner's live enrollment among ``facts`` unless it is overdue (then a new one takes its place)."""
    if facts.id is None or domain.is_overdue(facts.status, as_utc(facts.expires_at), now):
        return None
    return facts


async def enroll(uow: UnitOfWork, origin: Origin, command: Enroll, *,
                 tenant_name: str | None = None) -> tuple[Any, bool]:
    """Enroll a user in a published course, in the version published last (ADR 0014). Returns (enrollment row,
    created?): an active or completed enrollment for the same user and course is returned as it is."""
    now = utcnow()
    expires_at = domain.future_expiry(command.expires_at, now)
    async with uow:
        await _note_tenant(uow, origin.tenant_id, origin.tenant_slug, tenant_name, now)
        facts = await store.enrollment_facts(uow.session, origin.tenant_id, command.user_id, command.course_id,
                                             course_ids=origin.course_ids)
        if facts is None:
            raise domain.CourseNotFound()
        existing = _live_of(facts, now)
        if existing is not None:
            # Idempotent even after the course was unpublished or archived: a retried purchase gets its enrollment.
            return existing, False
        if facts.course_status != "published":
            raise domain.CourseNotPublished(command.course_id, facts.course_status)
        if not facts.user_known:
            raise domain.UnknownUser(command.user_id)
        return await _enroll_in_published_course(uow, origin, facts, user_id=command.user_id,
                                                 course_id=command.course_id, source=command.source,
                                                 expires_at=expires_at, now=now)


async def _enroll_in_published_course(uow: UnitOfWork, origin: Origin, facts: Any, *, user_id: int,
                                      course_id: int, source: str, expires_at: datetime | None,
                                      now: datetime) -> tuple[Any, bool]:
    """Create the enrollment ``facts`` (from ``store.enrollment_facts``) call for, or return the live one."""
    existing = _live_of(facts, now)
    if existing is not None:
        return existing, False
    if facts.id is not None:
        # Past its end but not swept yet: expire it now so the new enrollment can take its place.
        await _expire(uow, [facts.id], now)
    caches: Caches = uow.deps
    version = None if facts.latest_version is None else await caches.version(
        uow.session, origin.tenant_id, course_id, facts.latest_version)
    if version is None:
        raise domain.VersionNotArrived(course_id)
    progress = version.progress([])
    row = await store.insert_enrollment(uow.session, {
        "tenant_id": origin.tenant_id, "user_id": user_id, "course_id": course_id,
        "course_version": version.version_number, "status": domain.EnrollmentStatus.ACTIVE, "source": source,
        "enrolled_at": now, "expires_at": expires_at, "completed_at": None, "cancelled_at": None,
        "required_total": progress.required_total, "required_done": 0, "revision": 1, "updated_at": now,
    })
    if row is None:
        # Two concurrent enrollments of one learner collapse onto one row (the unique index on live enrollments).
        winner = await store.live_enrollment(uow.session, origin.tenant_id, user_id, course_id)
        if winner is None:  # pragma: no cover - the conflicting row vanished (cancelled) in between
            raise domain.ConcurrentChange()
        return winner, False
    await uow.emit(events.enrollment_created(origin, row))
    log.info("enrollment_created", enrollment_id=row.id, user_id=user_id, course_id=course_id, source=source)
    return row, True


async def cancel(uow: UnitOfWork, origin: Origin, enrollment_id: int, *, tenant_name: str | None = None) -> Any:
    """``active`` → ``cancelled``; cancelling a cancelled enrollment returns it as it is."""
    now = utcnow()
    async with uow:
        await _note_tenant(uow, origin.tenant_id, origin.tenant_slug, tenant_name, now)
        row = await store.enrollment(uow.session, origin.tenant_id, enrollment_id, lock=True,
                                     course_ids=origin.course_ids)
        if row is None:
            raise domain.EnrollmentNotFound()
        if not domain.cancel(row.status):
            return row
        row = await store.cancel_enrollment(uow.session, row.id, domain.EnrollmentStatus.CANCELLED, now)
        await uow.emit(events.enrollment_cancelled(origin, row))
        log.info("enrollment_cancelled", enrollment_id=row.id)
        return row


async def _expire(uow: UnitOfWork, enrollment_ids: list[int], now: datetime) -> int:
    """Turn these active enrollments into ``expired`` and send ``enrollment.expired`` for each that changed."""
    if not enrollment_ids:
        return 0
    rows = await store.expire_enrollments(uow.session, enrollment_ids, domain.EnrollmentStatus.EXPIRED, now)
    if not rows:
        return 0
    slugs = await store.tenant_slugs(uow.session, {r.tenant_id for r in rows})
    await uow.emit(*[
        events.enrollment_expired(Origin(row.tenant_id, slugs.get(row.tenant_id) or f"tenant-{row.tenant_id}"),
                                  row)
        for row in rows])
    log.info("enrollments_expired", count=len(rows))
    return len(rows)


async def expire_overdue_batch(uow: UnitOfWork, now: datetime, batch_size: int = 100) -> int:
    """One step of the expiry sweep: expire up to ``batch_size`` overdue enrollments in one transaction. Rows
    another replica is expiring are skipped (``FOR UPDATE SKIP LOCKED``), so any number of sweepers can run."""
    async with uow:
        due = await store.claim_overdue(uow.session, now, batch_size)
        return await _expire(uow, due, now)


# --- cohorts -----------------------------------------------------------------------------------------------------


async def create_cohort(uow: UnitOfWork, origin: Origin, command: CreateCohort, *,
                        tenant_name: str | None = None) -> Any:
    now = utcnow()
    async with uow:
        await _note_tenant(uow, origin.tenant_id, origin.tenant_slug, tenant_name, now)
        return await store.insert_cohort(uow.session, origin.tenant_id, command.name, command.course_ids, now)


async def update_cohort(uow: UnitOfWork, origin: Origin, command: UpdateCohort) -> Any:
    now = utcnow()
    async with uow:
        row = await store.cohort(uow.session, origin.tenant_id, command.cohort_id)
        if row is None:
            raise domain.CohortNotFound()
        if not command.changes:
            return row
        return await store.update_cohort(uow.session, origin.tenant_id, row.id, command.changes, now)


async def grant_cohort(uow: UnitOfWork, origin: Origin, command: GrantCohort, *,
                       tenant_name: str | None = None) -> Grant:
    """Membership plus one enrollment (source ``cohort``) per published course of the cohort.

    Repeating a grant changes nothing: the membership and its ``granted_at`` stay, and the learner's existing
    enrollments are returned as they are. Courses that are not published are skipped.
    """
    now = utcnow()
    expires_at = domain.future_expiry(command.expires_at, now)
    user_id = command.user_id
    async with uow:
        await _note_tenant(uow, origin.tenant_id, origin.tenant_slug, tenant_name, now)
        cohort = await store.cohort(uow.session, origin.tenant_id, command.cohort_id, course_ids=origin.course_ids)
        if cohort is None:
            raise domain.CohortNotFound()
        if not await store.user_known(uow.session, origin.tenant_id, user_id):
            raise domain.UnknownUser(user_id)
        membership_created = await store.add_cohort_member(uow.session, origin.tenant_id, cohort.id, user_id, now)
        granted_at = await store.granted_at(uow.session, cohort.id, user_id)
        granted: list[Any] = []
        created_any = False
        # Ascending course ids: overlapping grants running at once touch the learner's enrollments in one order.
        for course_id in sorted(int(c) for c in cohort.course_ids):
            facts = await store.enrollment_facts(uow.session, origin.tenant_id, user_id, course_id)
            if facts is None or facts.course_status != "published":
                continue
            row, created = await _enroll_in_published_course(
                uow, origin, facts, user_id=user_id, course_id=course_id, source=COHORT_SOURCE,
                expires_at=expires_at, now=now)
            granted.append(row)
            created_any = created_any or created
        changed = membership_created or created_any
        if changed:
            await uow.emit(events.cohort_access_granted(origin, cohort.id, user_id, granted_at,
                                                        [r.id for r in granted]))
            log.info("cohort_access_granted", cohort_id=cohort.id, user_id=user_id, enrollments=len(granted))
    return Grant(cohort_id=cohort.id, user_id=user_id, granted_at=as_utc(granted_at), enrollments=granted,
                 changed=changed)


# --- events: runtime.committed -> attempt -> completion -----------------------------------------------------------

# The shared consumer applies several events in one transaction. Waiting for a row lock while holding the rows of
# the batch's earlier events is how two batches deadlock (each holds a learner the other needs; PostgreSQL breaks
# it only after deadlock_timeout, a second): after the first event the enrollment is locked NOWAIT. A taken lock
# fails the batch, and the consumer applies its events again one per transaction, where waiting is safe. Every
# other row an event writes belongs to its enrollment, so holding the enrollment no one else holds them.
_APPLIED_IN_TRANSACTION = "enrollment.runtime_commits"


async def runtime_committed(uow: UnitOfWork, event: CloudEvent, payload: RuntimeCommitted) -> None:
    """One runtime commit: update (or start) its attempt, send ``attempt.updated``, then evaluate completion."""
    session = uow.session
    tenant_id = event.tenantid
    earlier = session.info.get(_APPLIED_IN_TRANSACTION, 0)
    session.info[_APPLIED_IN_TRANSACTION] = earlier + 1
    enrollment = await store.lock_enrollment(session, tenant_id, payload.enrollment_id, nowait=earlier > 0)
    if enrollment is None:
        raise PermanentError(f"runtime commit for unknown enrollment {payload.enrollment_id}")
    if (enrollment.user_id, enrollment.course_id) != (payload.user_id, payload.course_id):
        raise PermanentError(f"runtime commit does not match enrollment {payload.enrollment_id}")
    if payload.status not in domain.ATTEMPT_STATUSES:
        raise PermanentError(f"unknown attempt status {payload.status!r}")

    # The same (attempt, sequence) is applied once even if the runtime sends it under another event id.
    if not await store.record_commit(session, tenant_id, payload.attempt_id, payload.sequence):
        log.info("runtime_commit_already_applied", attempt_id=payload.attempt_id, sequence=payload.sequence)
        return

    now = utcnow()
    # Apply the commit to its attempt (the launch's first commit starts it).
    attempt = await store.update_attempt(session, tenant_id, payload, now)
    if attempt is None:
        attempt = await store.insert_attempt(session, tenant_id, payload, now)
    if attempt is None:  # the id exists, but not as this enrollment's attempt at this activity
        raise PermanentError(f"attempt {payload.attempt_id} belongs to another enrollment or activity")
    origin = Origin.of_event(event)
    staged = [events.attempt_updated(origin, attempt)]
    stored = domain.Progress(required_total=enrollment.required_total, required_done=enrollment.required_done)
    status_set = attempt.last_sequence == payload.sequence  # (attempt, sequence) is applied once
    if domain.progress_may_move(stored, status_set=attempt.status if status_set else None,
                                score=payload.score_scaled, best=attempt.best_score_scaled):
        staged += await _evaluate_completion(uow, origin, enrollment, completed_at=as_utc(event.time) or now)
    await uow.emit(*staged)


async def _evaluate_completion(uow: UnitOfWork, origin: Origin, enrollment: Any,
                               completed_at: datetime) -> list[CloudEvent]:
    """Apply the completion rule of the version the learner is enrolled in. ``enrollment`` must be locked.
    Returns the events to stage (``enrollment.completed`` when this completes it)."""
    if enrollment.status != domain.EnrollmentStatus.ACTIVE:
        return []  # completed once; cancelled and expired enrollments do not complete
    caches: Caches = uow.deps
    version = await caches.version(uow.session, origin.tenant_id, enrollment.course_id, enrollment.course_version)
    if version is None:
        log.error("enrolled_version_missing", enrollment_id=enrollment.id, version=enrollment.course_version)
        return []
    results = [domain.AttemptResult(activity_id=r.activity_id, status=r.status, best_score_scaled=r.best_score_scaled)
               for r in await store.attempt_results(uow.session, enrollment.id)]
    progress = version.progress(results)
    if not progress.complete:
        if (progress.required_total, progress.required_done) != (enrollment.required_total,
                                                                 enrollment.required_done):
            await store.set_progress(uow.session, enrollment.id, progress.required_total, progress.required_done,
                                     utcnow())
        return []
    completed_at = max(completed_at, as_utc(enrollment.enrolled_at))
    row = await store.complete_enrollment(uow.session, enrollment.id, domain.EnrollmentStatus.COMPLETED,
                                          completed_at, progress.required_total, progress.required_done, utcnow())
    names = await store.completion_names(uow.session, origin.tenant_id, row.user_id)
    log.info("enrollment_completed", enrollment_id=row.id, user_id=row.user_id, course_id=row.course_id,
             course_version=row.course_version)
    return [events.enrollment_completed(origin, row, version, progress, names)]


# --- events: read models -----------------------------------------------------------------------------------------


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


async def course_changed(uow: UnitOfWork, event: CloudEvent, payload: CourseSnapshot) -> None:
    """``course.created/updated/unpublished/archived``: newest revision wins."""
    await _note_tenant(uow, event.tenantid, event.tenant, None, utcnow())
    await _keep_course(uow, event.tenantid, payload)


async def course_published(uow: UnitOfWork, event: CloudEvent, payload: CoursePublished) -> None:
    """``course.published``: the version's tree is kept for good, then the course like any other change."""
    await _note_tenant(uow, event.tenantid, event.tenant, None, utcnow())
    await store.keep_course_version(uow.session, event.tenantid, payload)
    await _keep_course(uow, event.tenantid, payload)


async def _keep_course(uow: UnitOfWork, tenant_id: int, payload: CourseSnapshot) -> None:
    # Only a newer revision replaces what we hold: a late or repeated event changes nothing.
    if not await store.upsert_course(uow.session, tenant_id, payload.course_id, _course_values(payload),
                                     payload.revision):
        log.info("course_event_stale", course_id=payload.course_id, revision=payload.revision)


async def user_upserted(uow: UnitOfWork, event: CloudEvent, payload: UserUpserted) -> None:
    values = {"name": payload.name, "email": payload.email, "revision": payload.revision,
              "updated_at": payload.updated_at}
    await store.upsert_directory_user(uow.session, event.tenantid, payload.user_id, values, payload.revision)

