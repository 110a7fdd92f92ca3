"""Use cases of the course tree: modules, lessons and activities (create, update, delete, reorder, read).

Writes lock the owning course's row, so revisions and sibling positions never interleave, and are allowed on
draft courses only (see domain.require_draft_for_structure). Positions are 1-based and kept contiguous.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import store
from services.catalog.domain import (
    activity_state,
    insert_position,
    move_position,
    reorder_positions,
    require_draft_for_structure,
)
from shared.db import Database, TenantScope
from shared.http import ApiError, PageRequest, RequestContext


@dataclass(frozen=True)
class Level:
    """One level of the tree: its table, its parent's, and how a row is shown."""

    resource: str  # "module": gives module_not_found
    table: sa.Table
    parent_resource: str
    parent_table: sa.Table
    parent_column: str  # the child's column naming the parent
    view: Callable[[Any], dict[str, Any]]
    child: Level | None = None

    @property
    def parent_fk(self) -> sa.Column[Any]:
        return self.table.c[self.parent_column]


ACTIVITIES = Level("activity", store.activities, "lesson", store.lessons, "lesson_id", store.activity_view)
LESSONS = Level("lesson", store.lessons, "module", store.modules, "module_id", store.lesson_view, ACTIVITIES)
MODULES = Level("module", store.modules, "course", store.courses, "course_id", store.module_view, LESSONS)


def _course_of(level_parent_table: sa.Table, parent: Any) -> int:
    return int(parent.id if level_parent_table is store.courses else parent.course_id)


async def _get(session: AsyncSession, scope: TenantScope, table: sa.Table, resource: str, row_id: int) -> Any:
    row = (await session.execute(scope.select(table).where(table.c.id == row_id))).first()
    if row is None:
        raise ApiError.not_found(resource)
    return row


async def _lock_draft_course(session: AsyncSession, scope: TenantScope, course_id: int) -> None:
    course = await store.get_course(session, scope, course_id, for_update=True)
    require_draft_for_structure(course.status)


async def _sibling_count(session: AsyncSession, scope: TenantScope, level: Level, parent_id: int) -> int:
    stmt = scope.select(level.table, sa.func.count()).where(level.parent_fk == parent_id)
    return int((await session.execute(stmt)).scalar_one())


async def _shift(session: AsyncSession, scope: TenantScope, level: Level, parent_id: int,
                 lower: int, upper: int | None, delta: int) -> None:
    """Move siblings with lower <= position (<= upper) by ``delta``."""
    position = level.table.c.position
    stmt = scope.update(level.table).where(level.parent_fk == parent_id, position >= lower)
    if upper is not None:
        stmt = stmt.where(position <= upper)
    await session.execute(stmt.values(position=position + delta))


# --- writes -------------------------------------------------------------------------------------------------


async def create_node(db: Database, ctx: RequestContext, level: Level, parent_id: int, fields: dict[str, Any]
                      ) -> dict[str, Any]:
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        parent = await _get(session, scope, level.parent_table, level.parent_resource, parent_id)
        course_id = _course_of(level.parent_table, parent)
        await _lock_draft_course(session, scope, course_id)
        values = dict(fields)
        if level is ACTIVITIES:
            values = activity_state({"required": True}, values)
            values.setdefault("required", True)
        count = await _sibling_count(session, scope, level, parent_id)
        position = insert_position(values.pop("position", None), count)
        await _shift(session, scope, level, parent_id, position, None, +1)
        extra = {} if level is MODULES else {"course_id": course_id}
        node_id = (await session.execute(
            scope.insert(level.table, **values, **extra, position=position, **{level.parent_column: parent_id})
            .returning(level.table.c.id)
        )).scalar_one()
        await store.bump_revision(session, scope, course_id, store.now())
        row = await _get(session, scope, level.table, level.resource, node_id)
    return level.view(row)


async def update_node(db: Database, ctx: RequestContext, level: Level, node_id: int, changes: dict[str, Any]
                      ) -> dict[str, Any]:
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        node = await _get(session, scope, level.table, level.resource, node_id)
        await _lock_draft_course(session, scope, node.course_id)
        node = await _get(session, scope, level.table, level.resource, node_id)  # re-read under the lock
        values = dict(changes)
        requested = values.pop("position", None)
        if level is ACTIVITIES:
            state = activity_state(dict(node._mapping), values)
            values = {k: state[k] for k in ("title", "kind", "required", "scorm_package_id", "sco_identifier",
                                              "passing_score_scaled")}
        parent_id = getattr(node, level.parent_column)
        if requested is not None:
            target = move_position(requested, await _sibling_count(session, scope, level, parent_id))
            if target > node.position:
                await _shift(session, scope, level, parent_id, node.position + 1, target, -1)
            elif target < node.position:
                await _shift(session, scope, level, parent_id, target, node.position - 1, +1)
            values["position"] = target
        if values:
            await session.execute(scope.update(level.table).where(level.table.c.id == node_id).values(**values))
            await store.bump_revision(session, scope, node.course_id, store.now())
        node = await _get(session, scope, level.table, level.resource, node_id)
    return level.view(node)


async def delete_node(db: Database, ctx: RequestContext, level: Level, node_id: int) -> dict[str, Any]:
    """Delete a node with everything under it; later siblings move up. Returns the deleted node."""
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        node = await _get(session, scope, level.table, level.resource, node_id)
        await _lock_draft_course(session, scope, node.course_id)
        node = await _get(session, scope, level.table, level.resource, node_id)
        await _delete_subtree(session, scope, level, [node_id])
        await _shift(session, scope, level, getattr(node, level.parent_column), node.position + 1, None, -1)
        await store.bump_revision(session, scope, node.course_id, store.now())
    return {**level.view(node), "deleted": True}


async def _delete_subtree(session: AsyncSession, scope: TenantScope, level: Level, ids: list[int]) -> None:
    if not ids:
        return
    if level.child is not None:
        child = level.child
        child_ids = list((await session.execute(
            scope.select(child.table, child.table.c.id).where(child.parent_fk.in_(ids))
        )).scalars())
        await _delete_subtree(session, scope, child, child_ids)
    await session.execute(scope.delete(level.table).where(level.table.c.id.in_(ids)))


async def reorder_children(db: Database, ctx: RequestContext, level: Level, parent_id: int, ids: list[int]
                           ) -> list[dict[str, Any]]:
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        parent = await _get(session, scope, level.parent_table, level.parent_resource, parent_id)
        course_id = _course_of(level.parent_table, parent)
        await _lock_draft_course(session, scope, course_id)
        current = (await session.execute(
            scope.select(level.table, level.table.c.id).where(level.parent_fk == parent_id)
        )).scalars()
        positions = reorder_positions(ids, current, level.resource)
        if positions:
            await session.execute(
                scope.update(level.table).where(level.table.c.id.in_(list(positions)))
                .values(position=sa.case(positions, value=level.table.c.id))
            )
        await store.bump_revision(session, scope, course_id, store.now())
        rows = (await session.execute(
            scope.select(level.table).where(level.parent_fk == parent_id).order_by(level.table.c.position)
        )).all()
    return [level.view(r) for r in rows]


# --- reads --------------------------------------------------------------------------------------------------


async def get_node(db: Database, ctx: RequestContext, level: Level, node_id: int) -> dict[str, Any]:
    async with db.transaction() as session:
        row = await _get(session, TenantScope(ctx.tenant_id), level.table, level.resource, node_id)
    return level.view(row)


async def list_children(db: Database, ctx: RequestContext, level: Level, parent_id: int, page: PageRequest
                        ) -> list[dict[str, Any]]:
    """Up to ``page.limit + 1`` children ordered by position; the cursor is the last position seen."""
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        await _get(session, scope, level.parent_table, level.parent_resource, parent_id)
        stmt = (scope.select(level.table).where(level.parent_fk == parent_id)
                .order_by(level.table.c.position, level.table.c.id).limit(page.limit + 1))
        if page.after_id is not None:
            stmt = stmt.where(level.table.c.position > page.after_id)
        rows = (await session.execute(stmt)).all()
    return [level.view(r) for r in rows]
