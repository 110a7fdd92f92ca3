"""Catalog tables and queries (SQL only: rows in, rows out; the handlers decide what a missing row means).

Every tenant-owned table carries ``tenant_id`` and is queried through :class:`shared.db.TenantScope`.
The course list is keyset-paginated on ``(tenant_id, id)``; children are read by ``(parent, position)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import BigId, ReadQuery, TenantScope, Timestamp, upsert
from shared.uow import UnitOfWork

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
    info={"course_column": "id"},  # a per-course key's scope filters on it (shared.db.TenantScope)
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
    #: scorm activities launching an untracked item: completed at launch (null = the default, true; issue 20)
    sa.Column("complete_on_launch", sa.Boolean),
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


#: a tree level's resource name (services/catalog/domain.Level) -> its table
TABLES: dict[str, sa.Table] = {"course": courses, "module": modules, "lesson": lessons, "activity": activities}


# --- courses ------------------------------------------------------------------------------------------------


async def get_course(session: AsyncSession, scope: TenantScope, course_id: int, *,
                     for_update: bool = False) -> sa.Row[Any] | None:
    stmt = scope.select(courses).where(courses.c.id == course_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).first()


async def slug_in_use(session: AsyncSession, scope: TenantScope, slug: str, except_id: int | None = None) -> bool:
    stmt = scope.select(courses, courses.c.id).where(courses.c.slug == slug)
    if except_id is not None:
        stmt = stmt.where(courses.c.id != except_id)
    return (await session.execute(stmt)).first() is not None


async def insert_course(session: AsyncSession, scope: TenantScope, values: Mapping[str, Any]) -> int:
    return int((await session.execute(scope.insert(courses, **values).returning(courses.c.id))).scalar_one())


async def update_course(session: AsyncSession, scope: TenantScope, course_id: int, values: Mapping[str, Any],
                        when: datetime) -> None:
    """Change the course's columns and move its revision (consumers apply by revision)."""
    await session.execute(
        scope.update(courses).where(courses.c.id == course_id)
        .values(**values, revision=courses.c.revision + 1, updated_at=when)
    )


async def bump_revision(session: AsyncSession, scope: TenantScope, course_id: int, when: datetime) -> None:
    """Every change of a course or its tree moves the course's revision (consumers apply by revision)."""
    await update_course(session, scope, course_id, {}, when)


# The hot reads (shared.db.ReadQuery): built once, run as one statement outside any transaction.
COURSE = ReadQuery(lambda scope: scope.select(courses).where(courses.c.id == sa.bindparam("course_id")))
_NEWEST_FIRST = ReadQuery(lambda scope: scope.select(courses).order_by(courses.c.id.desc())
                          .limit(sa.bindparam("limit", type_=sa.Integer)))
_NEWEST_FIRST_AFTER = ReadQuery(lambda scope: scope.select(courses).where(courses.c.id < sa.bindparam("after_id"))
                                .order_by(courses.c.id.desc()).limit(sa.bindparam("limit", type_=sa.Integer)))


async def read_course(uow: UnitOfWork, scope: TenantScope, course_id: int) -> Any | None:
    """The course, as one read of its own (no transaction unless ``uow`` is open)."""
    return await uow.read_one(COURSE, scope, course_id=course_id)


async def list_courses(uow: UnitOfWork, scope: TenantScope, limit: int, after_id: int | None) -> list[Any]:
    """Up to ``limit`` courses, newest first (keyset on the (tenant_id, id) index), as one read of its own."""
    if after_id is None:
        return await uow.read_all(_NEWEST_FIRST, scope, limit=limit)
    return await uow.read_all(_NEWEST_FIRST_AFTER, scope, limit=limit, after_id=after_id)


async def tree_rows(session: AsyncSession, scope: TenantScope, course_id: int
                    ) -> tuple[Sequence[sa.Row[Any]], Sequence[sa.Row[Any]], Sequence[sa.Row[Any]]]:
    """The modules, lessons and activities of a course, each level ordered by position (three queries)."""
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
    return mods, less, acts


async def insert_version(session: AsyncSession, scope: TenantScope, course_id: int, number: int,
                         published_at: datetime, snapshot: Mapping[str, Any]) -> None:
    await session.execute(scope.insert(course_versions, course_id=course_id, number=number,
                                       published_at=published_at, snapshot=snapshot))


# --- the tree -----------------------------------------------------------------------------------------------


async def get_row(session: AsyncSession, scope: TenantScope, resource: str, row_id: int) -> sa.Row[Any] | None:
    table = TABLES[resource]
    return (await session.execute(scope.select(table).where(table.c.id == row_id))).first()


async def count_children(session: AsyncSession, scope: TenantScope, resource: str, parent_column: str,
                         parent_id: int) -> int:
    table = TABLES[resource]
    stmt = scope.select(table, sa.func.count()).where(table.c[parent_column] == parent_id)
    return int((await session.execute(stmt)).scalar_one())


async def shift_positions(session: AsyncSession, scope: TenantScope, resource: str, parent_column: str,
                          parent_id: int, lower: int, upper: int | None, delta: int) -> None:
    """Move siblings with lower <= position (<= upper) by ``delta``."""
    table = TABLES[resource]
    position = table.c.position
    stmt = scope.update(table).where(table.c[parent_column] == parent_id, position >= lower)
    if upper is not None:
        stmt = stmt.where(position <= upper)
    await session.execute(stmt.values(position=position + delta))


async def insert_node(session: AsyncSession, scope: TenantScope, resource: str, values: Mapping[str, Any]) -> int:
    table = TABLES[resource]
    return int((await session.execute(scope.insert(table, **values).returning(table.c.id))).scalar_one())


async def update_node(session: AsyncSession, scope: TenantScope, resource: str, node_id: int,
                      values: Mapping[str, Any]) -> None:
    table = TABLES[resource]
    await session.execute(scope.update(table).where(table.c.id == node_id).values(**values))


async def child_ids(session: AsyncSession, scope: TenantScope, resource: str, parent_column: str,
                    parent_ids: Iterable[int]) -> list[int]:
    table = TABLES[resource]
    stmt = scope.select(table, table.c.id).where(table.c[parent_column].in_(list(parent_ids)))
    return list((await session.execute(stmt)).scalars())


async def delete_nodes(session: AsyncSession, scope: TenantScope, resource: str, ids: Iterable[int]) -> None:
    table = TABLES[resource]
    await session.execute(scope.delete(table).where(table.c.id.in_(list(ids))))


async def set_positions(session: AsyncSession, scope: TenantScope, resource: str, positions: Mapping[int, int]
                        ) -> None:
    """Give each id its position, in one statement."""
    table = TABLES[resource]
    await session.execute(
        scope.update(table).where(table.c.id.in_(list(positions)))
        .values(position=sa.case(dict(positions), value=table.c.id))
    )


async def list_children(session: AsyncSession, scope: TenantScope, resource: str, parent_column: str,
                        parent_id: int, *, limit: int | None = None, after_position: int | None = None
                        ) -> Sequence[sa.Row[Any]]:
    """Children of a parent ordered by position (keyset on the position: rows after ``after_position``)."""
    table = TABLES[resource]
    stmt = scope.select(table).where(table.c[parent_column] == parent_id).order_by(table.c.position, table.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    if after_position is not None:
        stmt = stmt.where(table.c.position > after_position)
    return (await session.execute(stmt)).all()


# --- the SCORM packages read model --------------------------------------------------------------------------


async def ready_packages(session: AsyncSession, scope: TenantScope, package_ids: Iterable[int]
                         ) -> Sequence[Any]:
    """The (package_id, status, scos) of those of ``package_ids`` that are ready or archived (archived ones are
    named in publishing's refusal)."""
    table = scorm_packages
    return (await session.execute(
        sa.select(table.c.package_id, table.c.status, table.c.scos).where(
            scope.where(table), table.c.package_id.in_(list(package_ids)),
            table.c.status.in_(("ready", "archived")),
        )
    )).all()


async def record_scorm_package(session: AsyncSession, tenant_id: int, package_id: int,
                               values: Mapping[str, Any]) -> None:
    """Insert or replace the package's state (the same event applied twice leaves the same row). An archived
    package stays archived: archiving is final, and a ``ready`` of a version delivered late cannot undo it."""
    await session.execute(upsert(session, scorm_packages, {"tenant_id": tenant_id, "package_id": package_id,
                                                           **values},
                                 keys=["tenant_id", "package_id"], update=values,
                                 where=scorm_packages.c.status != "archived"))


async def archive_scorm_packages(session: AsyncSession, tenant_id: int, package_ids: Iterable[int], title: str,
                                 stamp: datetime) -> None:
    """Mark packages archived, keeping their SCO lists (a package never seen ready gets a row of its own)."""
    for package_id in package_ids:
        await session.execute(upsert(
            session, scorm_packages,
            {"tenant_id": tenant_id, "package_id": package_id, "title": title, "scorm_version": None,
             "status": "archived", "scos": [], "error": None, "updated_at": stamp},
            keys=["tenant_id", "package_id"], update={"status": "archived", "updated_at": stamp}))


async def published_courses_naming(session: AsyncSession, scope: TenantScope, package_ids: Iterable[int]
                                   ) -> list[int]:
    """Ids of the published courses whose current tree has a scorm activity on one of ``package_ids``."""
    a, c = activities.c, courses.c
    return list((await session.execute(
        sa.select(c.id).distinct().select_from(courses.join(activities, sa.and_(
            a.tenant_id == c.tenant_id, a.course_id == c.id)))
        .where(scope.where(courses), c.status == "published", a.scorm_package_id.in_(list(package_ids)))
        .order_by(c.id)
    )).scalars())


async def list_ready_packages(session: AsyncSession, scope: TenantScope, limit: int, after_id: int | None
                              ) -> Sequence[sa.Row[Any]]:
    """Up to ``limit`` ready packages, newest first."""
    table = scorm_packages
    stmt = scope.select(table).where(table.c.status == "ready").order_by(table.c.package_id.desc()).limit(limit)
    if after_id is not None:
        stmt = stmt.where(table.c.package_id < after_id)
    return (await session.execute(stmt)).all()


# --- course teams and the staff read model (ADR 0021) -------------------------------------------------------

# Read model of the gateway's tenant staff, fed by staff.invited / staff.updated (applied by revision).
staff_members = sa.Table(
    "staff_members",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True),
    sa.Column("staff_id", sa.BigInteger, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
)

course_team = sa.Table(
    "course_team",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True),
    sa.Column("course_id", sa.BigInteger, sa.ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("staff_id", sa.BigInteger, primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("added_at", Timestamp, nullable=False),
    sa.Index("ix_course_team_staff", "tenant_id", "staff_id"),
)


async def course_id_of(session: AsyncSession, scope: TenantScope, resource: str, row_id: int) -> int | None:
    """The course a course/module/lesson/activity belongs to (None: no such row in the tenant)."""
    table = TABLES[resource]
    column = table.c.id if resource == "course" else table.c.course_id
    return (await session.execute(scope.select(table).with_only_columns(column).where(table.c.id == row_id))
            ).scalar_one_or_none()


async def on_team(session: AsyncSession, tenant_id: int, course_id: int, staff_id: int) -> bool:
    stmt = (sa.select(course_team.c.role)
            .select_from(course_team.join(staff_members, sa.and_(
                staff_members.c.tenant_id == course_team.c.tenant_id,
                staff_members.c.staff_id == course_team.c.staff_id)))
            .where(course_team.c.tenant_id == tenant_id, course_team.c.course_id == course_id,
                   course_team.c.staff_id == staff_id, staff_members.c.status == "active"))
    return (await session.execute(stmt)).first() is not None


async def team_of(session: AsyncSession, tenant_id: int, course_id: int) -> list[Any]:
    stmt = (sa.select(course_team.c.staff_id, course_team.c.role, course_team.c.added_at, staff_members.c.email,
                      staff_members.c.name, staff_members.c.status)
            .select_from(course_team.join(staff_members, sa.and_(
                staff_members.c.tenant_id == course_team.c.tenant_id,
                staff_members.c.staff_id == course_team.c.staff_id)))
            .where(course_team.c.tenant_id == tenant_id, course_team.c.course_id == course_id)
            .order_by(course_team.c.staff_id))
    return list((await session.execute(stmt)).all())


async def staff_member(session: AsyncSession, tenant_id: int, staff_id: int) -> sa.Row[Any] | None:
    stmt = sa.select(staff_members).where(staff_members.c.tenant_id == tenant_id,
                                          staff_members.c.staff_id == staff_id)
    return (await session.execute(stmt)).first()


async def put_team_member(session: AsyncSession, values: Mapping[str, Any]) -> None:
    await session.execute(upsert(session, course_team, values, ["tenant_id", "course_id", "staff_id"],
                                 {"role": values["role"]}))


async def delete_team_member(session: AsyncSession, tenant_id: int, course_id: int, staff_id: int) -> bool:
    result = await session.execute(sa.delete(course_team).where(
        course_team.c.tenant_id == tenant_id, course_team.c.course_id == course_id,
        course_team.c.staff_id == staff_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def delete_staff_places(session: AsyncSession, tenant_id: int, staff_id: int) -> None:
    await session.execute(sa.delete(course_team).where(course_team.c.tenant_id == tenant_id,
                                                       course_team.c.staff_id == staff_id))


async def record_staff(session: AsyncSession, tenant_id: int, values: Mapping[str, Any]) -> bool:
    """Apply a staff snapshot if its revision is newer than the one held; True if applied."""
    row = {"tenant_id": tenant_id, **values}
    changes = {k: v for k, v in values.items() if k != "staff_id"}
    stmt = upsert(session, staff_members, row, ["tenant_id", "staff_id"], changes,
                  where=staff_members.c.revision < int(values["revision"])).returning(staff_members.c.staff_id)
    return (await session.execute(stmt)).first() is not None
