"""Catalog tables and the queries the use cases share.

Every tenant-owned table carries ``tenant_id`` and is queried through :class:`shared.db.TenantScope`.
The course list is keyset-paginated on ``(tenant_id, id)``; children are read by ``(parent, position)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import BigId, TenantScope, Timestamp
from shared.http import ApiError

metadata = sa.MetaData()


courses = sa.Table(
    "courses",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("slug", sa.String(100), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("subtitle", sa.String(500)),
    sa.Column("summary", sa.Text),
    sa.Column("language", sa.String(35), nullable=False),
    sa.Column("completion_rule", sa.String(32), nullable=False),
    sa.Column("estimated_minutes", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("credit_hours", sa.Numeric(12, 4)),
    sa.Column("credit_kind", sa.String(64)),
    sa.Column("credit_expires_after_months", sa.Integer),
    sa.Column("certificate_template_id", sa.BigInteger),
    sa.Column("owner_id", sa.BigInteger),
    sa.Column("owner_name", sa.String(200)),
    # version.number / version.status / version.published_at: see docs/catalog.md (lifecycle)
    sa.Column("version_number", sa.Integer, nullable=False),
    sa.Column("version_status", sa.String(16), nullable=False),
    sa.Column("published_at", Timestamp),
    sa.Column("archived_at", Timestamp),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant_id", "slug", name="uq_courses_tenant_slug"),
    sa.Index("ix_courses_tenant_id", "tenant_id", "id"),
)

modules = sa.Table(
    "modules",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, sa.ForeignKey("courses.id", ondelete="CASCADE"), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index("ix_modules_course_position", "tenant_id", "course_id", "position"),
)

lessons = sa.Table(
    "lessons",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("module_id", sa.BigInteger, sa.ForeignKey("modules.id", ondelete="CASCADE"), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index("ix_lessons_module_position", "tenant_id", "module_id", "position"),
    sa.Index("ix_lessons_course", "tenant_id", "course_id"),
)

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("lesson_id", sa.BigInteger, sa.ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("required", sa.Boolean, nullable=False),
    sa.Column("scorm_package_id", sa.BigInteger),
    sa.Column("sco_identifier", sa.String(255)),
    sa.Column("passing_score_scaled", sa.Numeric(6, 4)),
    sa.Index("ix_activities_lesson_position", "tenant_id", "lesson_id", "position"),
    sa.Index("ix_activities_course", "tenant_id", "course_id"),
)

# One row per published version: the exact tree learners of that version follow (the course.published payload).
course_versions = sa.Table(
    "course_versions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, sa.ForeignKey("courses.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("published_at", Timestamp, nullable=False),
    sa.Column("snapshot", sa.JSON, nullable=False),
    sa.UniqueConstraint("course_id", "number", name="uq_course_versions_number"),
)

# Read model of the SCORM service's packages, fed by scorm_package.ready / scorm_package.failed.
scorm_packages = sa.Table(
    "scorm_packages",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True),
    sa.Column("package_id", sa.BigInteger, primary_key=True),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("scorm_version", sa.String(16)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scos", sa.JSON, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", Timestamp, nullable=False),
)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they are UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


# --- courses ------------------------------------------------------------------------------------------------


async def get_course(session: AsyncSession, scope: TenantScope, course_id: int, *,
                     for_update: bool = False) -> sa.Row[Any]:
    stmt = scope.select(courses).where(courses.c.id == course_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).first()
    if row is None:
        raise ApiError.not_found("course")
    return row


async def bump_revision(session: AsyncSession, scope: TenantScope, course_id: int, when: datetime) -> None:
    """Every change of a course or its tree moves the course's revision (consumers apply by revision)."""
    await session.execute(
        scope.update(courses).where(courses.c.id == course_id)
        .values(revision=courses.c.revision + 1, updated_at=when)
    )


def course_view(row: Any) -> dict[str, Any]:
    """The contract's Course object (CONTRACT.md §6)."""
    return {
        "id": row.id,
        "slug": row.slug,
        "title": row.title,
        "subtitle": row.subtitle,
        "summary": row.summary,
        "language": row.language,
        "completion_rule": row.completion_rule,
        "estimated_minutes": row.estimated_minutes,
        "status": row.status,
        "credit": {
            "hours": row.credit_hours,
            "kind": row.credit_kind,
            "expires_after_months": row.credit_expires_after_months,
        },
        "version": {
            "number": row.version_number,
            "status": row.version_status,
            "published_at": utc(row.published_at),
        },
        "owner": {"id": row.owner_id, "name": row.owner_name},
        "certificate_template_id": row.certificate_template_id,
        "created_at": utc(row.created_at),
        "updated_at": utc(row.updated_at),
    }


# --- the tree -----------------------------------------------------------------------------------------------


def module_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "course_id": row.course_id, "title": row.title, "position": row.position}


def lesson_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "module_id": row.module_id, "title": row.title, "position": row.position}


def activity_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "lesson_id": row.lesson_id,
        "title": row.title,
        "position": row.position,
        "kind": row.kind,
        "required": row.required,
        "scorm_package_id": row.scorm_package_id,
        "sco_identifier": row.sco_identifier,
        "passing_score_scaled": row.passing_score_scaled,
    }


async def course_tree(session: AsyncSession, scope: TenantScope, course_id: int) -> list[dict[str, Any]]:
    """Modules → lessons → activities of a course, each level ordered by position (three queries)."""
    mods = (await session.execute(
        scope.select(modules).where(modules.c.course_id == course_id).order_by(modules.c.position, modules.c.id)
    )).all()
    less = (await session.execute(
        scope.select(lessons).where(lessons.c.course_id == course_id).order_by(lessons.c.position, lessons.c.id)
    )).all()
    acts = (await session.execute(
        scope.select(activities).where(activities.c.course_id == course_id)
        .order_by(activities.c.position, activities.c.id)
    )).all()
    by_lesson: dict[int, list[dict[str, Any]]] = {}
    for a in acts:
        by_lesson.setdefault(a.lesson_id, []).append(activity_view(a))
    by_module: dict[int, list[dict[str, Any]]] = {}
    for lesson in less:
        by_module.setdefault(lesson.module_id, []).append(
            {**lesson_view(lesson), "activities": by_lesson.get(lesson.id, [])}
        )
    return [{**module_view(m), "lessons": by_module.get(m.id, [])} for m in mods]
