"""Enrollment tables and queries.

Read models (filled only from events): ``tenants`` (names forwarded by the gateway), ``courses`` (existence and
status of every course) with ``course_versions`` (the tree of every published version), ``directory_users``.
Owned data: ``enrollments``, ``cohorts`` + ``cohort_members``, ``attempts`` (+ ``attempt_commits`` to apply each
runtime commit once).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db import BigId, Database, Timestamp, as_utc, directory_users_table, tenant_names_table

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
def page_query(table: sa.Table, filters: tuple[str, ...], after: bool) -> sa.Select[Any]:
    """A keyset page of a tenant's rows, id descending, built once per combination of filters. Parameters:
    ``tenant_id``, each filter by name, ``after_id`` (with ``after``) and ``limit``."""
    stmt = sa.select(table).where(table.c.tenant_id == sa.bindparam("tenant_id"))
    for name in filters:
        stmt = stmt.where(table.c[name] == sa.bindparam(name))
    if after:
        stmt = stmt.where(table.c.id < sa.bindparam("after_id"))
    return stmt.order_by(table.c.id.desc()).limit(sa.bindparam("limit", type_=sa.Integer))


async def keyset_page(db: Database, table: sa.Table, tenant_id: int, filters: Mapping[str, int | None],
                      after_id: int | None, limit: int) -> list[Any]:
    """Up to ``limit`` rows of ``table`` for ``next_cursor`` (which trims the extra one)."""
    given = {name: value for name, value in filters.items() if value is not None}
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit, **given}
    if after_id is not None:
        params["after_id"] = after_id
    async with reading(db) as conn:
        return list((await conn.execute(page_query(table, tuple(given), after_id is not None), params)).all())


def _number(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value).normalize()


def enrollment_resource(row: Any) -> dict[str, Any]:
    """The contract's Enrollment object (plus ``course_version``, the published version it follows)."""
    return {
        "id": row.id,
        "user_id": row.user_id,
        "course_id": row.course_id,
        "course_version": row.course_version,
        "status": row.status,
        "source": row.source,
        "enrolled_at": as_utc(row.enrolled_at),
        "expires_at": as_utc(row.expires_at),
        "completed_at": as_utc(row.completed_at),
        "cancelled_at": as_utc(row.cancelled_at),
        "progress": {"required_total": row.required_total, "required_done": row.required_done},
    }


def attempt_resource(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "enrollment_id": row.enrollment_id,
        "activity_id": row.activity_id,
        "user_id": row.user_id,
        "course_id": row.course_id,
        "status": row.status,
        "score_raw": _number(row.score_raw),
        "score_scaled": _number(row.score_scaled),
        "passed": row.passed,
        "time_started_at": as_utc(row.time_started_at),
        "time_ended_at": as_utc(row.time_ended_at),
        "total_time_seconds": _number(row.total_time_seconds),
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }


def cohort_resource(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "course_ids": list(row.course_ids),
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }
