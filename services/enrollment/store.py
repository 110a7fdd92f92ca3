"""Enrollment tables and queries (SQL only: the rules are in domain.py, the use cases in handlers.py).

Read models (filled only from events): ``tenants`` (names forwarded by the gateway), ``courses`` (existence and
status of every course) with ``course_versions`` (the tree of every published version), ``directory_users``.
Owned data: ``enrollments``, ``cohorts`` + ``cohort_members``, ``attempts`` (+ ``attempt_commits`` to apply each
runtime commit once).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db import (
    BigId,
    Database,
    TenantScope,
    Timestamp,
    as_utc,
    directory_users_table,
    tenant_names_table,
    upsert,
)
from shared.events.catalog import CoursePublished
from shared.events.scorm import RuntimeCommitted

metadata = sa.MetaData()

LIVE_STATUSES = ("active", "completed")

tenants = tenant_names_table(metadata, name_nullable=True)

courses = sa.Table(
    "courses",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("slug", sa.String(100), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("version_number", sa.Integer, nullable=False),
    sa.Column("completion_rule", sa.String(32), nullable=False),
    sa.Column("credit", sa.JSON, nullable=False),
    sa.Column("certificate_template_id", sa.BigInteger, nullable=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

course_versions = sa.Table(
    "course_versions",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("completion_rule", sa.String(32), nullable=False),
    sa.Column("credit", sa.JSON, nullable=False),
    sa.Column("certificate_template_id", sa.BigInteger, nullable=True),
    sa.Column("modules", sa.JSON, nullable=False),
    sa.Column("published_at", Timestamp, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
)

directory_users = directory_users_table(metadata, "directory_users")

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("course_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("enrolled_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("completed_at", Timestamp, nullable=True),
    sa.Column("cancelled_at", Timestamp, nullable=True),
    sa.Column("required_total", sa.Integer, nullable=False),
    sa.Column("required_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("revision", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("updated_at", Timestamp, nullable=False),
)
LIVE_ENROLLMENT = enrollments.c.status.in_(LIVE_STATUSES)
# At most one active-or-completed enrollment per learner and course: concurrent creates collapse onto one row.
sa.Index(
    "uq_enrollments_live", enrollments.c.tenant_id, enrollments.c.user_id, enrollments.c.course_id, unique=True,
    postgresql_where=LIVE_ENROLLMENT, sqlite_where=LIVE_ENROLLMENT,
)
sa.Index("ix_enrollments_tenant_id", enrollments.c.tenant_id, enrollments.c.id)
# Filtered lists (a course's learners, a learner's courses) walk these instead of the whole tenant.
sa.Index("ix_enrollments_course", enrollments.c.tenant_id, enrollments.c.course_id, enrollments.c.id)
sa.Index("ix_enrollments_user", enrollments.c.tenant_id, enrollments.c.user_id, enrollments.c.id)
sa.Index("ix_enrollments_due", enrollments.c.expires_at, postgresql_where=enrollments.c.status == "active",
         sqlite_where=enrollments.c.status == "active")

cohorts = sa.Table(
    "cohorts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("course_ids", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

cohort_members = sa.Table(
    "cohort_members",
    metadata,
    sa.Column("cohort_id", sa.BigInteger, sa.ForeignKey("cohorts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("granted_at", Timestamp, nullable=False),
)

attempts = sa.Table(
    "attempts",
    metadata,
    # The scorm service's launch id: one attempt per launch, so the id a launch returns is the attempt's id.
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("enrollment_id", sa.BigInteger, sa.ForeignKey("enrollments.id"), nullable=False),
    sa.Column("activity_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("score_raw", sa.Numeric(18, 6), nullable=True),
    sa.Column("score_scaled", sa.Numeric(8, 6), nullable=True),
    sa.Column("best_score_scaled", sa.Numeric(8, 6), nullable=True),
    sa.Column("passed", sa.Boolean, nullable=True),
    sa.Column("time_started_at", Timestamp, nullable=True),
    sa.Column("time_ended_at", Timestamp, nullable=True),
    sa.Column("total_time_seconds", sa.Numeric(18, 3), nullable=False),
    sa.Column("last_sequence", sa.Integer, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)
sa.Index("ix_attempts_enrollment", attempts.c.enrollment_id, attempts.c.activity_id)
sa.Index("ix_attempts_tenant_id", attempts.c.tenant_id, attempts.c.id)

attempt_commits = sa.Table(
    "attempt_commits",
    metadata,
    sa.Column("attempt_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
)


# --- helpers ------------------------------------------------------------------------------------------------


def dialect_name(db: AsyncSession | AsyncConnection) -> str:
    return (db.get_bind() if isinstance(db, AsyncSession) else db).dialect.name


@functools.cache
def ignoring_conflicts(dialect: str, table: sa.Table, returning: bool = False) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING [RETURNING *]``, built once per dialect; execute it with the row as
    parameters (statements built per call cost more CPU than the database spends running them)."""
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table).on_conflict_do_nothing()
    return stmt.returning(*table.c) if returning else stmt


async def insert_if_absent(session: AsyncSession, table: sa.Table, values: Mapping[str, Any]) -> bool:
    """Insert the row unless its key exists (waiting for a concurrent inserter to finish); True if it was new."""
    result = cast(sa.CursorResult[Any], await session.execute(
        ignoring_conflicts(dialect_name(session), table), dict(values)))
    return result.rowcount == 1


@asynccontextmanager
async def reading(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit for a request that runs one read: no BEGIN and COMMIT round trips, and the
    pooled connection goes back as soon as the statement is answered."""
    async with db.engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


@functools.cache
def page_query(table: sa.Table, filters: tuple[str, ...], after: bool, courses: bool = False) -> sa.Select[Any]:
    """A keyset page of a tenant's rows, id descending, built once per combination of filters. Parameters:
    ``tenant_id``, each filter by name, ``after_id`` (with ``after``), ``course_ids`` (with ``courses``: a
    per-course key's courses, ADR 0019) and ``limit``."""
    stmt = sa.select(table).where(table.c.tenant_id == sa.bindparam("tenant_id"))
    if courses:
        stmt = stmt.where(table.c.course_id.in_(sa.bindparam("course_ids", expanding=True)))
    for name in filters:
        stmt = stmt.where(table.c[name] == sa.bindparam(name))
    if after:
        stmt = stmt.where(table.c.id < sa.bindparam("after_id"))
    return stmt.order_by(table.c.id.desc()).limit(sa.bindparam("limit", type_=sa.Integer))


async def keyset_page(db: Database, table: sa.Table, tenant_id: int, filters: Mapping[str, int | None],
                      after_id: int | None, limit: int, course_ids: frozenset[int] | None = None) -> list[Any]:
    """Up to ``limit`` rows of ``table`` for ``next_cursor`` (which trims the extra one); with ``course_ids``
    only the rows of those courses."""
    given = {name: value for name, value in filters.items() if value is not None}
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit, **given}
    if after_id is not None:
        params["after_id"] = after_id
    if course_ids is not None:
        params["course_ids"] = sorted(course_ids)
    stmt = page_query(table, tuple(given), after_id is not None, course_ids is not None)
    async with reading(db) as conn:
        return list((await conn.execute(stmt, params)).all())


# --- read models: tenants, courses and their published versions, directory users ----------------------------

_TENANT = sa.select(tenants.c.slug, tenants.c.name).where(tenants.c.tenant_id == sa.bindparam("tenant_id"))


async def tenant(session: AsyncSession, tenant_id: int) -> Any | None:
    """The stored slug and name of a tenant."""
    return (await session.execute(_TENANT, {"tenant_id": tenant_id})).first()


async def upsert_tenant(session: AsyncSession, tenant_id: int, slug: str, name: str | None, now: datetime) -> None:
    """Store the slug, and the name when one is given (a missing name leaves the stored one)."""
    update: dict[str, Any] = {"slug": slug, "updated_at": now}
    if name is not None:
        update["name"] = name
    await session.execute(upsert(session, tenants, {"tenant_id": tenant_id, "slug": slug, "name": name,
                                                    "updated_at": now}, ["tenant_id"], update))


async def tenant_slugs(session: AsyncSession, tenant_ids: set[int]) -> dict[int, str]:
    return dict((await session.execute(
        sa.select(tenants.c.tenant_id, tenants.c.slug).where(tenants.c.tenant_id.in_(tenant_ids))
    )).all())


async def upsert_course(session: AsyncSession, tenant_id: int, course_id: int, values: Mapping[str, Any],
                        revision: int) -> bool:
    """Store a course snapshot unless the stored one is as new; True if it was stored."""
    stmt = upsert(session, courses, {"tenant_id": tenant_id, "course_id": course_id, **values},
                  ["tenant_id", "course_id"], values, where=courses.c.revision < revision)
    result = cast(sa.CursorResult[Any], await session.execute(stmt))
    return result.rowcount != 0


async def keep_course_version(session: AsyncSession, tenant_id: int, payload: CoursePublished) -> None:
    """Store the tree of a published version; a version number identifies one tree, so a repeat is a no-op."""
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
    await session.execute(ignoring_conflicts(dialect_name(session), course_versions), values)


_VERSION = sa.select(course_versions).where(
    course_versions.c.tenant_id == sa.bindparam("tenant_id"),
    course_versions.c.course_id == sa.bindparam("course_id"),
    course_versions.c.version_number == sa.bindparam("version"),
)


async def course_version(db: AsyncSession | AsyncConnection, tenant_id: int, course_id: int,
                         version: int) -> Any | None:
    return (await db.execute(_VERSION, {"tenant_id": tenant_id, "course_id": course_id,
                                        "version": version})).first()


async def upsert_directory_user(session: AsyncSession, tenant_id: int, user_id: int, values: Mapping[str, Any],
                                revision: int) -> None:
    """Store a user snapshot unless the stored one is as new."""
    stmt = upsert(session, directory_users, {"tenant_id": tenant_id, "user_id": user_id, **values},
                  ["tenant_id", "user_id"], values, where=directory_users.c.revision < revision)
    await session.execute(stmt)


_USER_KNOWN = sa.select(directory_users.c.user_id).where(directory_users.c.tenant_id == sa.bindparam("tenant_id"),
                                                         directory_users.c.user_id == sa.bindparam("user_id"))


async def user_known(session: AsyncSession, tenant_id: int, user_id: int) -> bool:
    return (await session.execute(_USER_KNOWN, {"tenant_id": tenant_id, "user_id": user_id})).first() is not None


# --- enrollments -----------------------------------------------------------------------------------------------

# Everything enrolling decides on, in one round trip: the course's status and highest published version, whether
# the user is in the directory, and the learner's live enrollment (columns named as in ``enrollments``, all NULL
# when there is none). No row: the course is unknown in this tenant. No lock on the enrollment: returning it is a
# read, and every change re-checks in the statement that makes it (guarded expiry, the unique index).
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
_IN_COURSES = enrollments.c.course_id.in_(sa.bindparam("course_ids", expanding=True))
_ENROLLMENT_IN_COURSES = _ENROLLMENT.where(_IN_COURSES)
_ENROLLMENT_IN_COURSES_LOCKED = _ENROLLMENT_IN_COURSES.with_for_update()


async def enrollment_facts(session: AsyncSession, tenant_id: int, user_id: int, course_id: int, *,
                           course_ids: frozenset[int] | None = None) -> Any | None:
    """The course, the user and the learner's live enrollment as enrolling sees them (``_ENROLL_FACTS``); None
    for a course outside ``course_ids`` (a per-course key's), exactly as for a missing course."""
    if course_ids is not None and course_id not in course_ids:
        return None
    return (await session.execute(_ENROLL_FACTS, {"tenant_id": tenant_id, "user_id": user_id,
                                                  "course_id": course_id})).first()


async def insert_enrollment(session: AsyncSession, values: Mapping[str, Any]) -> Any | None:
    """Insert a live enrollment; None if the learner has one already (the unique index on live enrollments:
    concurrent creates collapse onto one row)."""
    return (await session.execute(ignoring_conflicts(dialect_name(session), enrollments, returning=True),
                                  dict(values))).first()


async def live_enrollment(session: AsyncSession, tenant_id: int, user_id: int, course_id: int) -> Any | None:
    return (await session.execute(_LIVE_ENROLLMENT, {"tenant_id": tenant_id, "user_id": user_id,
                                                     "course_id": course_id})).first()


async def enrollment(db: AsyncSession | AsyncConnection, tenant_id: int, enrollment_id: int, *,
                     lock: bool = False, course_ids: frozenset[int] | None = None) -> Any | None:
    """The enrollment; with ``course_ids`` (a per-course key's) None unless it is of one of those courses."""
    params: dict[str, Any] = {"tenant_id": tenant_id, "id": enrollment_id}
    if course_ids is None:
        stmt = _ENROLLMENT_LOCKED if lock else _ENROLLMENT
    else:
        params["course_ids"] = sorted(course_ids)
        stmt = _ENROLLMENT_IN_COURSES_LOCKED if lock else _ENROLLMENT_IN_COURSES
    return (await db.execute(stmt, params)).first()


async def cancel_enrollment(session: AsyncSession, enrollment_id: int, status: str, now: datetime) -> Any:
    return (await session.execute(
        sa.update(enrollments).where(enrollments.c.id == enrollment_id)
        .values(status=status, cancelled_at=now, updated_at=now, revision=enrollments.c.revision + 1)
        .returning(*enrollments.c)
    )).one()


async def expire_enrollments(session: AsyncSession, enrollment_ids: list[int], status: str,
                             now: datetime) -> list[Any]:
    """Set ``status`` on those of these enrollments that are still active; returns the rows that changed."""
    return list((await session.execute(
        sa.update(enrollments)
        .where(enrollments.c.id.in_(enrollment_ids), enrollments.c.status == "active")
        .values(status=status, updated_at=now, revision=enrollments.c.revision + 1)
        .returning(*enrollments.c)
    )).all())


async def claim_overdue(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Up to ``limit`` overdue active enrollments, locked; rows another transaction holds are skipped."""
    return list((await session.execute(
        sa.select(enrollments.c.id)
        .where(enrollments.c.status == "active", enrollments.c.expires_at <= now)
        .order_by(enrollments.c.expires_at, enrollments.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )).scalars().all())


# --- cohorts ---------------------------------------------------------------------------------------------------


async def insert_cohort(session: AsyncSession, tenant_id: int, name: str, course_ids: list[int],
                        now: datetime) -> Any:
    return (await session.execute(
        TenantScope(tenant_id).insert(cohorts, name=name, course_ids=course_ids, created_at=now, updated_at=now)
        .returning(*cohorts.c)
    )).one()


async def cohort(db: AsyncSession | AsyncConnection, tenant_id: int, cohort_id: int, *,
                 course_ids: frozenset[int] | None = None) -> Any | None:
    """The cohort; with ``course_ids`` (a per-course key's) None unless every course of the cohort is one of
    them (a cohort reaching another course is not the key's to grant)."""
    row = (await db.execute(TenantScope(tenant_id).select(cohorts).where(cohorts.c.id == cohort_id))).first()
    if row is not None and course_ids is not None and not {int(c) for c in row.course_ids} <= course_ids:
        return None
    return row


async def update_cohort(session: AsyncSession, tenant_id: int, cohort_id: int, changes: Mapping[str, Any],
                        now: datetime) -> Any:
    return (await session.execute(
        TenantScope(tenant_id).update(cohorts).where(cohorts.c.id == cohort_id).values(**changes, updated_at=now)
        .returning(*cohorts.c)
    )).one()


async def add_cohort_member(session: AsyncSession, tenant_id: int, cohort_id: int, user_id: int,
                            now: datetime) -> bool:
    """Make the user a member unless they are one; True if they were not."""
    return await insert_if_absent(session, cohort_members, {
        "cohort_id": cohort_id, "user_id": user_id, "tenant_id": tenant_id, "granted_at": now})


async def granted_at(session: AsyncSession, cohort_id: int, user_id: int) -> datetime:
    return cast(datetime, (await session.execute(
        sa.select(cohort_members.c.granted_at)
        .where(cohort_members.c.cohort_id == cohort_id, cohort_members.c.user_id == user_id)
    )).scalar_one())


# --- attempts and completion -----------------------------------------------------------------------------------


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
_LOCK_ENROLLMENT_NOWAIT = _LOCK_ENROLLMENT.with_for_update(nowait=True)
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
    .where(enrollments.c.id == sa.bindparam("enrollment_id"), enrollments.c.status == "active")
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
_ATTEMPT = sa.select(attempts).where(attempts.c.tenant_id == sa.bindparam("tenant_id"),
                                     attempts.c.id == sa.bindparam("id"))


_ATTEMPT_IN_COURSES = _ATTEMPT.where(attempts.c.course_id.in_(sa.bindparam("course_ids", expanding=True)))


async def attempt(db: AsyncSession | AsyncConnection, tenant_id: int, attempt_id: int, *,
                  course_ids: frozenset[int] | None = None) -> Any | None:
    """The attempt; with ``course_ids`` (a per-course key's) None unless it is of one of those courses."""
    if course_ids is None:
        return (await db.execute(_ATTEMPT, {"tenant_id": tenant_id, "id": attempt_id})).first()
    return (await db.execute(_ATTEMPT_IN_COURSES, {"tenant_id": tenant_id, "id": attempt_id,
                                                   "course_ids": sorted(course_ids)})).first()


async def lock_enrollment(session: AsyncSession, tenant_id: int, enrollment_id: int, *,
                          nowait: bool = False) -> Any | None:
    """The enrollment, locked ``FOR UPDATE`` (``NOWAIT``: a lock someone else holds fails at once)."""
    return (await session.execute(_LOCK_ENROLLMENT_NOWAIT if nowait else _LOCK_ENROLLMENT, {
        "enrollment_id": enrollment_id, "tenant_id": tenant_id})).first()


async def record_commit(session: AsyncSession, tenant_id: int, attempt_id: int, sequence: int) -> bool:
    """Note that this runtime commit is applied; False if it was already."""
    return await insert_if_absent(session, attempt_commits, {
        "attempt_id": attempt_id, "sequence": sequence, "tenant_id": tenant_id})


async def update_attempt(session: AsyncSession, tenant_id: int, commit: RuntimeCommitted, now: datetime) -> Any:
    """Apply a runtime commit to its attempt; None if this enrollment has no such attempt at this activity."""
    return (await session.execute(_APPLY_COMMIT, {
        "attempt_id": commit.attempt_id, "attempt_tenant_id": tenant_id,
        "attempt_enrollment_id": commit.enrollment_id, "attempt_activity_id": commit.activity_id,
        "delta": commit.session_time_delta_seconds, "new_score_scaled": commit.score_scaled,
        "new_started_at": as_utc(commit.time_started_at), "new_status": commit.status,
        "new_score_raw": commit.score_raw, "new_passed": commit.passed, "new_ended_at": as_utc(commit.time_ended_at),
        "new_sequence": commit.sequence, "now": now,
    })).first()


async def insert_attempt(session: AsyncSession, tenant_id: int, commit: RuntimeCommitted, now: datetime) -> Any:
    """Start the attempt with its launch's first commit; None if the id exists (as another attempt)."""
    return (await session.execute(ignoring_conflicts(dialect_name(session), attempts, returning=True), {
        "id": commit.attempt_id, "tenant_id": tenant_id, "enrollment_id": commit.enrollment_id,
        "activity_id": commit.activity_id, "user_id": commit.user_id, "course_id": commit.course_id,
        "status": commit.status, "score_raw": commit.score_raw, "score_scaled": commit.score_scaled,
        "best_score_scaled": commit.score_scaled, "passed": commit.passed,
        "time_started_at": as_utc(commit.time_started_at), "time_ended_at": as_utc(commit.time_ended_at),
        "total_time_seconds": Decimal(0) + commit.session_time_delta_seconds, "last_sequence": commit.sequence,
        "revision": 1, "created_at": now, "updated_at": now,
    })).first()


async def attempt_results(session: AsyncSession, enrollment_id: int) -> list[Any]:
    """Each attempt's activity, status and best score."""
    return list((await session.execute(_RESULTS, {"enrollment_id": enrollment_id})).all())


async def set_progress(session: AsyncSession, enrollment_id: int, required_total: int, required_done: int,
                       now: datetime) -> None:
    await session.execute(_PROGRESS, {"enrollment_id": enrollment_id, "updated_at": now,
                                      "required_total": required_total, "required_done": required_done})


async def complete_enrollment(session: AsyncSession, enrollment_id: int, status: str, completed_at: datetime,
                              required_total: int, required_done: int, now: datetime) -> Any:
    """Set the completed status of an active enrollment (locked by the caller)."""
    return (await session.execute(_COMPLETE, {
        "enrollment_id": enrollment_id, "status": status, "completed_at": completed_at, "updated_at": now,
        "required_total": required_total, "required_done": required_done,
    })).one()


async def completion_names(session: AsyncSession, tenant_id: int, user_id: int) -> Any:
    """The learner's name and email and the tenant's name, as a certificate shows them."""
    return (await session.execute(_USER_AND_TENANT_NAMES, {"tenant_id": tenant_id, "user_id": user_id})).one()
