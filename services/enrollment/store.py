"""Enrollment tables and queries.

Read models (filled only from events): ``tenants`` (names forwarded by the gateway), ``courses`` (existence and
status of every course) with ``course_versions`` (the tree of every published version), ``directory_users``.
Owned data: ``enrollments``, ``cohorts`` + ``cohort_members``, ``attempts`` (+ ``attempt_commits`` to apply each
runtime commit once), ``idempotency_keys``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

metadata = sa.MetaData()

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
LIVE_STATUSES = ("active", "completed")

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("slug", sa.String(63), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
)

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

directory_users = sa.Table(
    "directory_users",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

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
sa.Index("ix_enrollments_due", enrollments.c.expires_at, postgresql_where=enrollments.c.status == "active",
         sqlite_where=enrollments.c.status == "active")

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

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


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: datetime | None) -> datetime | None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dialect(session: AsyncSession) -> Any:
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def insert_ignoring_conflicts(session: AsyncSession, table: sa.Table, values: Mapping[str, Any]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for PostgreSQL and SQLite."""
    return _dialect(session).insert(table).values(**values).on_conflict_do_nothing()


async def insert_if_absent(session: AsyncSession, table: sa.Table, values: Mapping[str, Any]) -> bool:
    """Insert the row unless its key exists (waiting for a concurrent inserter to finish); True if it was new."""
    result = cast(sa.CursorResult[Any], await session.execute(insert_ignoring_conflicts(session, table, values)))
    return result.rowcount == 1


def upsert(session: AsyncSession, table: sa.Table, values: Mapping[str, Any], keys: list[str],
           update: Mapping[str, Any], where: sa.ColumnElement[bool] | None = None) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET update [WHERE where]`` (``where`` sees the existing row)."""
    stmt = _dialect(session).insert(table).values(**values)
    return stmt.on_conflict_do_update(index_elements=keys, set_=dict(update), where=where)


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


async def remember_tenant(session: AsyncSession, tenant_id: int, slug: str, name: str | None, now: datetime) -> None:
    """Keep the slug (routing keys of events the sweeper sends) and the display name (certificates).

    Read first and write only on a change, so that concurrent requests of one tenant do not queue on its row.
    """
    known = (await session.execute(
        sa.select(tenants.c.slug, tenants.c.name).where(tenants.c.tenant_id == tenant_id)
    )).first()
    if known is not None and known.slug == slug and (name is None or known.name == name):
        return
    update: dict[str, Any] = {"slug": slug, "updated_at": now}
    if name is not None:
        update["name"] = name
    await session.execute(upsert(session, tenants, {"tenant_id": tenant_id, "slug": slug, "name": name,
                                                    "updated_at": now}, ["tenant_id"], update))
