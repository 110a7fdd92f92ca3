"""The catalog's use cases: one function per command, query and event.

A command handler takes ``(uow, origin, ...)``, runs in one transaction (``async with uow:``) and writes the event
it causes to the outbox in that same transaction. It returns the JSON of what it changed (``views.py``) and raises
the domain errors of ``domain.py``. Event handlers take ``(uow, event, payload)`` and run in the consumer's
transaction (``EVENT_HANDLERS`` in app.py).

Writes to the tree lock the owning course's row, so revisions and sibling positions never interleave, and are
allowed on draft courses only (``domain.require_draft_for_structure``). Positions are 1-based and contiguous.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from services.catalog import events, store, views
from services.catalog.domain import (
    ACTIVITIES,
    MODULES,
    CourseStatus,
    InvalidArgument,
    Level,
    NotFound,
    NotOnCourseTeam,
    ReadyPackage,
    SlugTaken,
    Transition,
    activity_state,
    insert_position,
    move_position,
    next_status,
    reorder_positions,
    require_draft_for_structure,
    require_editable_course,
    require_publishable,
    scorm_package_ids,
)
from services.catalog.schemas import CourseCreate
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent, Origin
from shared.db import TenantScope, is_unique_violation, utcnow
from shared.events.directory import StaffChanged
from shared.events.scorm import ScormPackageArchived, ScormPackageFailed, ScormPackageReady
from shared.http import PageRequest
from shared.uow import UnitOfWork

log = structlog.get_logger("catalog.handlers")

DEFAULTS: dict[str, Any] = {"language": "en", "completion_rule": "all_required"}

#: request field -> column (the rest have the same name)
_COLUMNS = {name: name for name in CourseCreate.model_fields}


# --- courses ------------------------------------------------------------------------------------------------


async def _course(uow: UnitOfWork, scope: TenantScope, course_id: int, *, for_update: bool = False) -> Any:
    row = await store.get_course(uow.session, scope, course_id, for_update=for_update)
    if row is None:
        raise NotFound("course")
    return row


async def _ensure_slug_free(uow: UnitOfWork, scope: TenantScope, slug: str, except_id: int | None = None) -> None:
    if await store.slug_in_use(uow.session, scope, slug, except_id):
        raise SlugTaken(slug)


async def create_course(uow: UnitOfWork, origin: Origin, body: CourseCreate, *, owner_id: int | None,
                        owner_name: str | None) -> dict[str, Any]:
    scope = TenantScope.of(origin)
    when = utcnow()
    values = {column: getattr(body, field) for field, column in _COLUMNS.items()}
    for name, default in DEFAULTS.items():
        if values[name] is None:
            values[name] = default
    # The gateway forwards the admin user's display name; keep what fits the column rather than fail the create.
    owner_name = owner_name[:200] if owner_name else None
    try:
        async with uow:
            await _ensure_slug_free(uow, scope, body.slug)
            course_id = await store.insert_course(uow.session, scope, dict(
                **values, status=CourseStatus.DRAFT, version_number=1, version_status=CourseStatus.DRAFT, revision=1,
                owner_id=owner_id, owner_name=owner_name, created_at=when, updated_at=when))
            row = await _course(uow, scope, course_id)
            await uow.emit(events.course_created(origin, row))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise SlugTaken(body.slug) from None
        raise
    log.info("course_created", course_id=course_id)
    return views.course_view(row)


async def update_course(uow: UnitOfWork, origin: Origin, course_id: int, changes: dict[str, Any]
                        ) -> dict[str, Any]:
    """Change the fields the client sent (``CourseUpdate.changes()``); ``null`` clears (or restores a default)."""
    scope = TenantScope.of(origin)
    values = {_COLUMNS[name]: value for name, value in changes.items()}
    for name, default in DEFAULTS.items():
        if name in values and values[name] is None:
            values[name] = default  # clearing a field with a default restores the default
    try:
        async with uow:
            row = await _course(uow, scope, course_id, for_update=True)
            require_editable_course(row.status)
            if "slug" in values and values["slug"] != row.slug:
                await _ensure_slug_free(uow, scope, values["slug"], except_id=course_id)
            if not values:
                return views.course_view(row)  # nothing sent, nothing changed, no event
            await store.update_course(uow.session, scope, course_id, values, utcnow())
            row = await _course(uow, scope, course_id)
            await uow.emit(events.course_updated(origin, row))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise SlugTaken(str(values.get("slug"))) from None
        raise
    return views.course_view(row)


async def get_course(uow: UnitOfWork, origin: Origin, course_id: int, *, with_tree: bool = False
                     ) -> dict[str, Any]:
    scope = TenantScope.of(origin)
    if not with_tree:  # the hot read: one statement, no transaction
        row = await store.read_course(uow, scope, course_id)
        if row is None:
            raise NotFound("course")
        return views.course_view(row)
    async with uow:
        view = views.course_view(await _course(uow, scope, course_id))
        view["modules"] = views.course_tree(*await store.tree_rows(uow.session, scope, course_id))
    return view


async def list_courses(uow: UnitOfWork, origin: Origin, page: PageRequest) -> list[dict[str, Any]]:
    """Up to ``page.limit + 1`` courses, newest first (one statement, no transaction)."""
    rows = await store.list_courses(uow, TenantScope.of(origin), page.limit + 1, page.after_id)
    return [views.course_view(r) for r in rows]


# --- the lifecycle ------------------------------------------------------------------------------------------


async def publish_course(uow: UnitOfWork, origin: Origin, course_id: int) -> dict[str, Any]:
    """A new published version: the tree must be publishable; its snapshot is kept in ``course_versions``."""
    scope = TenantScope.of(origin)
    async with uow:
        row = await _course(uow, scope, course_id, for_update=True)
        target = next_status(Transition.PUBLISH, row.status)
        when = utcnow()
        tree = views.course_tree(*await store.tree_rows(uow.session, scope, course_id))
        packages = await _ready_packages(uow, scope, scorm_package_ids(tree))
        require_publishable(row.completion_rule, tree, packages)
        await store.update_course(uow.session, scope, course_id, dict(
            status=target, version_status=CourseStatus.PUBLISHED, published_at=when), when)
        row = await _course(uow, scope, course_id)
        event = events.course_published(origin, row, tree)
        await store.insert_version(uow.session, scope, course_id, row.version_number, when, event.data)
        await uow.emit(event)
    _log_transition(row, Transition.PUBLISH)
    return views.course_view(row)


async def unpublish_course(uow: UnitOfWork, origin: Origin, course_id: int) -> dict[str, Any]:
    """Back to draft: the published version stays as it was (course_versions); edits go into the next version."""
    return await _transition(uow, origin, course_id, Transition.UNPUBLISH, events.course_unpublished,
                             lambda row, when: dict(version_number=row.version_number + 1,
                                                    version_status=CourseStatus.DRAFT, published_at=None))


async def archive_course(uow: UnitOfWork, origin: Origin, course_id: int) -> dict[str, Any]:
    return await _transition(uow, origin, course_id, Transition.ARCHIVE, events.course_archived,
                             lambda row, when: dict(archived_at=when))


async def _transition(uow: UnitOfWork, origin: Origin, course_id: int, action: Transition,
                      event: Callable[[Origin, Any], CloudEvent],
                      changes: Callable[[Any, datetime], dict[str, Any]]) -> dict[str, Any]:
    """A lifecycle action that only changes the course's row: its new status, ``changes``, and ``event``."""
    scope = TenantScope.of(origin)
    async with uow:
        row = await _course(uow, scope, course_id, for_update=True)
        target = next_status(action, row.status)
        when = utcnow()
        await store.update_course(uow.session, scope, course_id, dict(status=target, **changes(row, when)), when)
        row = await _course(uow, scope, course_id)
        await uow.emit(event(origin, row))
    _log_transition(row, action)
    return views.course_view(row)


def _log_transition(row: Any, action: Transition) -> None:
    log.info("course_transitioned", course_id=row.id, action=action.value, status=row.status,
             version=row.version_number)


async def _ready_packages(uow: UnitOfWork, scope: TenantScope, package_ids: set[int]) -> dict[int, ReadyPackage]:
    if not package_ids:
        return {}
    rows = await store.ready_packages(uow.session, scope, package_ids)
    return {r.package_id: _ready_package(r) for r in rows}


def _ready_package(row: Any) -> ReadyPackage:
    scos = sorted(row.scos, key=lambda s: s["position"])
    untracked = frozenset(s["identifier"] for s in scos if not s.get("tracked", True))
    first = next((s["identifier"] for s in scos if s["identifier"] not in untracked),
                 scos[0]["identifier"] if scos else None)
    return ReadyPackage(row.package_id, frozenset(s["identifier"] for s in scos), untracked, first,
                        archived=row.status == "archived")


# --- the tree -----------------------------------------------------------------------------------------------


async def _row(uow: UnitOfWork, scope: TenantScope, resource: str, row_id: int) -> Any:
    row = await store.get_row(uow.session, scope, resource, row_id)
    if row is None:
        raise NotFound(resource)
    return row


def _course_of(level: Level, parent: Any) -> int:
    return int(parent.id if level.parent_resource == "course" else parent.course_id)


async def _lock_draft_course(uow: UnitOfWork, scope: TenantScope, course_id: int) -> None:
    course = await _course(uow, scope, course_id, for_update=True)
    require_draft_for_structure(course.status)


async def _shift(uow: UnitOfWork, scope: TenantScope, level: Level, parent_id: int, lower: int,
                 upper: int | None, delta: int) -> None:
    await store.shift_positions(uow.session, scope, level.resource, level.parent_column, parent_id, lower, upper,
                                delta)


async def _sibling_count(uow: UnitOfWork, scope: TenantScope, level: Level, parent_id: int) -> int:
    return await store.count_children(uow.session, scope, level.resource, level.parent_column, parent_id)


async def create_node(uow: UnitOfWork, origin: Origin, level: Level, parent_id: int, fields: dict[str, Any]
                      ) -> dict[str, Any]:
    """Add a module, lesson or activity under its parent, at ``position`` (clamped) or at the end."""
    scope = TenantScope.of(origin)
    async with uow:
        parent = await _row(uow, scope, level.parent_resource, parent_id)
        course_id = _course_of(level, parent)
        await _lock_draft_course(uow, scope, course_id)
        values = dict(fields)
        if level is ACTIVITIES:
            values = activity_state({"required": True}, values)
            values.setdefault("required", True)
        position = insert_position(values.pop("position", None), await _sibling_count(uow, scope, level, parent_id))
        await _shift(uow, scope, level, parent_id, position, None, +1)
        extra = {} if level is MODULES else {"course_id": course_id}
        node_id = await store.insert_node(uow.session, scope, level.resource, dict(
            **values, **extra, position=position, **{level.parent_column: parent_id}))
        await store.bump_revision(uow.session, scope, course_id, utcnow())
        row = await _row(uow, scope, level.resource, node_id)
    return views.node_view(level.resource, row)


async def update_node(uow: UnitOfWork, origin: Origin, level: Level, node_id: int, changes: dict[str, Any]
                      ) -> dict[str, Any]:
    """Change a node's fields and/or move it among its siblings (``position``, clamped)."""
    scope = TenantScope.of(origin)
    async with uow:
        node = await _row(uow, scope, level.resource, node_id)
        await _lock_draft_course(uow, scope, node.course_id)
        node = await _row(uow, scope, level.resource, node_id)  # re-read under the lock
        values = dict(changes)
        requested = values.pop("position", None)
        if level is ACTIVITIES:
            state = activity_state(dict(node._mapping), values)
            values = {k: state[k] for k in ("title", "kind", "required", "scorm_package_id", "sco_identifier",
                                              "passing_score_scaled", "complete_on_launch")}
        parent_id = getattr(node, level.parent_column)
        if requested is not None:
            target = move_position(requested, await _sibling_count(uow, scope, level, parent_id))
            if target > node.position:
                await _shift(uow, scope, level, parent_id, node.position + 1, target, -1)
            elif target < node.position:
                await _shift(uow, scope, level, parent_id, target, node.position - 1, +1)
            values["position"] = target
        if values:
            await store.update_node(uow.session, scope, level.resource, node_id, values)
            await store.bump_revision(uow.session, scope, node.course_id, utcnow())
        node = await _row(uow, scope, level.resource, node_id)
    return views.node_view(level.resource, node)


async def delete_node(uow: UnitOfWork, origin: Origin, level: Level, node_id: int) -> dict[str, Any]:
    """Delete a node with everything under it; later siblings move up. Returns the deleted node."""
    scope = TenantScope.of(origin)
    async with uow:
        node = await _row(uow, scope, level.resource, node_id)
        await _lock_draft_course(uow, scope, node.course_id)
        node = await _row(uow, scope, level.resource, node_id)
        await _delete_subtree(uow, scope, level, [node_id])
        await _shift(uow, scope, level, getattr(node, level.parent_column), node.position + 1, None, -1)
        await store.bump_revision(uow.session, scope, node.course_id, utcnow())
    return {**views.node_view(level.resource, node), "deleted": True}


async def _delete_subtree(uow: UnitOfWork, scope: TenantScope, level: Level, ids: list[int]) -> None:
    if not ids:
        return
    if level.child is not None:
        child = level.child
        await _delete_subtree(uow, scope, child,
                              await store.child_ids(uow.session, scope, child.resource, child.parent_column, ids))
    await store.delete_nodes(uow.session, scope, level.resource, ids)


async def reorder_children(uow: UnitOfWork, origin: Origin, level: Level, parent_id: int, ids: list[int]
                           ) -> list[dict[str, Any]]:
    """Move a parent's children into the order of ``ids`` (every child exactly once)."""
    scope = TenantScope.of(origin)
    async with uow:
        parent = await _row(uow, scope, level.parent_resource, parent_id)
        course_id = _course_of(level, parent)
        await _lock_draft_course(uow, scope, course_id)
        current = await store.child_ids(uow.session, scope, level.resource, level.parent_column, [parent_id])
        positions = reorder_positions(ids, current, level.resource)
        if positions:
            await store.set_positions(uow.session, scope, level.resource, positions)
        await store.bump_revision(uow.session, scope, course_id, utcnow())
        rows = await store.list_children(uow.session, scope, level.resource, level.parent_column, parent_id)
    return [views.node_view(level.resource, r) for r in rows]


async def get_node(uow: UnitOfWork, origin: Origin, level: Level, node_id: int) -> dict[str, Any]:
    async with uow:
        row = await _row(uow, TenantScope.of(origin), level.resource, node_id)
    return views.node_view(level.resource, row)


async def list_children(uow: UnitOfWork, origin: Origin, level: Level, parent_id: int, page: PageRequest
                        ) -> list[dict[str, Any]]:
    """Up to ``page.limit + 1`` children ordered by position; the cursor is the last position seen."""
    scope = TenantScope.of(origin)
    async with uow:
        await _row(uow, scope, level.parent_resource, parent_id)
        rows = await store.list_children(uow.session, scope, level.resource, level.parent_column, parent_id,
                                         limit=page.limit + 1, after_position=page.after_id)
    return [views.node_view(level.resource, r) for r in rows]


# --- the SCORM packages read model (fed by the scorm service) ----------------------------------------------


async def list_ready_packages(uow: UnitOfWork, origin: Origin, page: PageRequest) -> list[dict[str, Any]]:
    """Ready packages and their SCOs, newest first: what a ``scorm`` activity may reference."""
    async with uow:
        rows = await store.list_ready_packages(uow.session, TenantScope.of(origin), page.limit + 1,
                                               page.after_id)
    return [views.scorm_package_view(r) for r in rows]


async def scorm_package_ready(uow: UnitOfWork, event: CloudEvent, payload: ScormPackageReady) -> None:
    """Publishing checks every ``scorm`` activity against the ready packages and their SCOs. A new version
    (``version_of``) gives the package activities name its SCO list too: they launch the newest version."""
    values = dict(
        title=payload.title[:500], scorm_version=payload.scorm_version[:16], status="ready", error=None,
        scos=[{"identifier": s.identifier, "title": s.title, "position": s.position, "tracked": s.tracked}
              for s in payload.scos],
    )
    await _record_package(uow, event, payload.package_id, values)
    if payload.version_of is not None:
        await _record_package(uow, event, payload.version_of, values)


async def scorm_package_failed(uow: UnitOfWork, event: CloudEvent, payload: ScormPackageFailed) -> None:
    await _record_package(uow, event, payload.package_id, dict(
        title=payload.title[:500], scorm_version=None, status="failed", error=payload.error, scos=[]))


async def scorm_package_archived(uow: UnitOfWork, event: CloudEvent, payload: ScormPackageArchived) -> None:
    """An archived package (and its versions) leaves the picker, and publishing refuses a course naming it. A
    published course that still names it (the two services decided at the same moment) is logged: its launches
    of that activity are refused by the scorm service until the course points at another package."""
    if event.tenantid < 1:
        raise PermanentError(f"event {event.id} has no valid tenant id")
    async with uow:
        await store.archive_scorm_packages(uow.session, event.tenantid, payload.package_ids, payload.title[:500],
                                           utcnow())
        using = await store.published_courses_naming(uow.session, TenantScope(event.tenantid), payload.package_ids)
    if using:
        log.warning("archived_scorm_package_in_published_course", package_id=payload.package_id, course_ids=using)
    log.info("scorm_package_recorded", package_id=payload.package_id, status="archived")


async def _record_package(uow: UnitOfWork, event: CloudEvent, package_id: int, values: dict[str, Any]) -> None:
    """A later event for the same package replaces its state (idempotent: applied twice, the same row)."""
    if event.tenantid < 1:
        raise PermanentError(f"event {event.id} has no valid tenant id")
    async with uow:
        await store.record_scorm_package(uow.session, event.tenantid, package_id,
                                         {**values, "updated_at": utcnow()})
    log.info("scorm_package_recorded", package_id=package_id, status=values["status"])


# --- course teams (ADR 0021) --------------------------------------------------------------------------------


async def check_team(uow: UnitOfWork, origin: Origin, staff_id: int, resource: str, row_id: int) -> None:
    """A staff member who is neither owner nor admin writes only to the courses whose team they are on. A missing
    row passes (the command itself answers 404)."""
    scope = TenantScope(origin.tenant_id)
    async with uow:
        course_id = await store.course_id_of(uow.session, scope, resource, row_id)
        if course_id is None:
            return
        if not await store.on_team(uow.session, origin.tenant_id, course_id, staff_id):
            raise NotOnCourseTeam()


def _member_view(row: Any) -> dict[str, Any]:
    return {"staff_id": row.staff_id, "role": row.role, "email": row.email, "name": row.name,
            "status": row.status, "added_at": row.added_at}


async def course_team(uow: UnitOfWork, origin: Origin, course_id: int) -> list[dict[str, Any]]:
    scope = TenantScope(origin.tenant_id)
    async with uow:
        await _course(uow, scope, course_id)
        return [_member_view(r) for r in await store.team_of(uow.session, origin.tenant_id, course_id)]


async def put_team_member(uow: UnitOfWork, origin: Origin, course_id: int, staff_id: int,
                          role: str) -> list[dict[str, Any]]:
    """Add a staff member to the course's team (or change their team role); the member must be known from the
    gateway's staff events and not suspended."""
    scope = TenantScope(origin.tenant_id)
    async with uow:
        await _course(uow, scope, course_id, for_update=True)
        member = await store.staff_member(uow.session, origin.tenant_id, staff_id)
        if member is None or member.status == "suspended":
            raise InvalidArgument(f"'staff_id': no staff member {staff_id} in this tenant"
                                  + (" (suspended)" if member is not None else "") + ".")
        await store.put_team_member(uow.session, dict(tenant_id=origin.tenant_id, course_id=course_id,
                                                      staff_id=staff_id, role=role, added_at=utcnow()))
        return [_member_view(r) for r in await store.team_of(uow.session, origin.tenant_id, course_id)]


async def remove_team_member(uow: UnitOfWork, origin: Origin, course_id: int, staff_id: int
                             ) -> list[dict[str, Any]]:
    scope = TenantScope(origin.tenant_id)
    async with uow:
        await _course(uow, scope, course_id, for_update=True)
        if not await store.delete_team_member(uow.session, origin.tenant_id, course_id, staff_id):
            raise NotFound("team_member")
        return [_member_view(r) for r in await store.team_of(uow.session, origin.tenant_id, course_id)]


async def staff_changed(uow: UnitOfWork, event: CloudEvent, payload: StaffChanged) -> None:
    """Keep the staff read model; a suspended member loses every team place (idempotent, by revision)."""
    if event.tenantid < 1:
        raise PermanentError(f"event {event.id} has no valid tenant id")
    async with uow:
        applied = await store.record_staff(uow.session, event.tenantid, dict(
            staff_id=payload.staff_id, email=payload.email[:320], name=payload.name[:200], role=payload.role,
            status=payload.status, revision=payload.revision))
        if applied and payload.status == "suspended":
            await store.delete_staff_places(uow.session, event.tenantid, payload.staff_id)
    log.info("staff_recorded", staff_id=payload.staff_id, status=payload.status, applied=applied)
