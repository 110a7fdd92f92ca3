"""Course use cases: create, update, list, get, and the lifecycle (publish / unpublish / archive).

Each runs in one transaction; the event it causes is written to the outbox in that same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import store
from services.catalog.domain import (
    CourseStatus,
    ReadyPackage,
    Transition,
    next_status,
    publish_problems,
    require_editable_course,
    scorm_package_ids,
)
from services.catalog.schemas import CourseCreate, CourseUpdate
from services.catalog.store import courses
from shared.bus import outbox
from shared.bus.envelope import new_event
from shared.db import Database, TenantScope, is_unique_violation
from shared.events.base import Credit
from shared.events.catalog import (
    ActivityNode,
    CourseArchived,
    CourseCreated,
    CoursePublished,
    CourseSnapshot,
    CourseUnpublished,
    CourseUpdated,
    LessonNode,
    ModuleNode,
)
from shared.http import ApiError, PageRequest, RequestContext

log = structlog.get_logger("catalog.courses")

DEFAULTS: dict[str, Any] = {"language": "en", "completion_rule": "all_required"}

#: request field -> column (the rest have the same name)
_COLUMNS = {name: name for name in CourseCreate.model_fields}


def _slug_taken(slug: str) -> ApiError:
    return ApiError.invalid(f"'slug': '{slug}' is already taken by another course of this tenant.")


def _snapshot_fields(row: Any) -> dict[str, Any]:
    return dict(
        course_id=row.id,
        slug=row.slug,
        title=row.title,
        status=row.status,
        version_number=row.version_number,
        completion_rule=row.completion_rule,
        credit=Credit(hours=row.credit_hours, kind=row.credit_kind,
                      expires_after_months=row.credit_expires_after_months),
        certificate_template_id=row.certificate_template_id,
        owner_id=row.owner_id,
        revision=row.revision,
        updated_at=store.utc(row.updated_at),
    )


async def _emit(session: AsyncSession, ctx: RequestContext, event_type: str, payload: CourseSnapshot) -> None:
    await outbox.add(session, new_event(
        event_type, payload, service="catalog", tenant=ctx.tenant_slug, tenant_id=ctx.tenant_id,
        subject=f"course/{payload.course_id}", request_id=ctx.request_id,
    ))


async def create_course(db: Database, ctx: RequestContext, body: CourseCreate) -> dict[str, Any]:
    scope = TenantScope(ctx.tenant_id)
    when = store.now()
    values = {column: getattr(body, field) for field, column in _COLUMNS.items()}
    for name, default in DEFAULTS.items():
        if values[name] is None:
            values[name] = default
    try:
        async with db.transaction() as session:
            await _ensure_slug_free(session, scope, body.slug)
            course_id = (await session.execute(
                scope.insert(courses, **values, status=CourseStatus.DRAFT, version_number=1,
                             version_status=CourseStatus.DRAFT, revision=1, owner_id=ctx.owner_id,
                             owner_name=_owner_name(ctx), created_at=when, updated_at=when)
                .returning(courses.c.id)
            )).scalar_one()
            row = await store.get_course(session, scope, course_id)
            await _emit(session, ctx, "course.created", CourseCreated(**_snapshot_fields(row)))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise _slug_taken(body.slug) from None
        raise
    log.info("course_created", course_id=course_id)
    return store.course_view(row)


def _owner_name(ctx: RequestContext) -> str | None:
    # The gateway forwards the admin user's display name; keep what fits the column rather than fail the create.
    return ctx.owner_name[:200] if ctx.owner_name else None


async def _ensure_slug_free(session: AsyncSession, scope: TenantScope, slug: str,
                            except_id: int | None = None) -> None:
    stmt = scope.select(courses, courses.c.id).where(courses.c.slug == slug)
    if except_id is not None:
        stmt = stmt.where(courses.c.id != except_id)
    if (await session.execute(stmt)).first() is not None:
        raise _slug_taken(slug)


async def update_course(db: Database, ctx: RequestContext, course_id: int, body: CourseUpdate) -> dict[str, Any]:
    changes = body.changes()
    scope = TenantScope(ctx.tenant_id)
    values = {_COLUMNS[name]: value for name, value in changes.items()}
    for name, default in DEFAULTS.items():
        if name in values and values[name] is None:
            values[name] = default  # clearing a field with a default restores the default
    try:
        async with db.transaction() as session:
            row = await store.get_course(session, scope, course_id, for_update=True)
            require_editable_course(row.status)
            if "slug" in values and values["slug"] != row.slug:
                await _ensure_slug_free(session, scope, values["slug"], except_id=course_id)
            if not values:
                return store.course_view(row)  # nothing sent, nothing changed, no event
            await session.execute(
                scope.update(courses).where(courses.c.id == course_id)
                .values(**values, revision=courses.c.revision + 1, updated_at=store.now())
            )
            row = await store.get_course(session, scope, course_id)
            await _emit(session, ctx, "course.updated", CourseUpdated(**_snapshot_fields(row)))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise _slug_taken(str(values.get("slug"))) from None
        raise
    return store.course_view(row)


async def get_course(db: Database, ctx: RequestContext, course_id: int, *, with_tree: bool = False
                     ) -> dict[str, Any]:
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        row = await store.get_course(session, scope, course_id)
        view = store.course_view(row)
        if with_tree:
            view["modules"] = await store.course_tree(session, scope, course_id)
    return view


async def list_courses(db: Database, ctx: RequestContext, page: PageRequest) -> list[dict[str, Any]]:
    """Up to ``page.limit + 1`` courses, newest first (keyset on the (tenant_id, id) index)."""
    scope = TenantScope(ctx.tenant_id)
    stmt = scope.select(courses).order_by(courses.c.id.desc()).limit(page.limit + 1)
    if page.after_id is not None:
        stmt = stmt.where(courses.c.id < page.after_id)
    async with db.transaction() as session:
        rows = (await session.execute(stmt)).all()
    return [store.course_view(r) for r in rows]


# --- lifecycle ----------------------------------------------------------------------------------------------


async def transition_course(db: Database, ctx: RequestContext, course_id: int, action: Transition
                            ) -> dict[str, Any]:
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        row = await store.get_course(session, scope, course_id, for_update=True)
        target = next_status(action, row.status)
        when = store.now()
        tree: list[dict[str, Any]] = []
        values: dict[str, Any] = {"status": target}
        if action is Transition.PUBLISH:
            tree = await store.course_tree(session, scope, course_id)
            packages = await _ready_packages(session, ctx.tenant_id, scorm_package_ids(tree))
            problems = publish_problems(row.completion_rule, tree, packages)
            if problems:
                raise ApiError.invalid("Cannot publish this course: " + "; ".join(problems) + ".")
            values.update(version_status=CourseStatus.PUBLISHED, published_at=when)
        elif action is Transition.UNPUBLISH:
            # The published version stays as it was (course_versions); edits go into the next version.
            values.update(version_number=row.version_number + 1, version_status=CourseStatus.DRAFT,
                          published_at=None)
        elif action is Transition.ARCHIVE:
            values.update(archived_at=when)
        await session.execute(
            scope.update(courses).where(courses.c.id == course_id)
            .values(**values, revision=courses.c.revision + 1, updated_at=when)
        )
        row = await store.get_course(session, scope, course_id)
        payload = _lifecycle_event(action, row, tree)
        if isinstance(payload, CoursePublished):
            await session.execute(sa.insert(store.course_versions).values(
                tenant_id=ctx.tenant_id, course_id=course_id, number=row.version_number, published_at=when,
                snapshot=payload.model_dump(mode="json"),
            ))
        await _emit(session, ctx, f"course.{_EVENT_SUFFIX[action]}", payload)
    log.info("course_transitioned", course_id=course_id, action=action.value, status=target.value,
             version=row.version_number)
    return store.course_view(row)


_EVENT_SUFFIX = {Transition.PUBLISH: "published", Transition.UNPUBLISH: "unpublished",
                 Transition.ARCHIVE: "archived"}


def _lifecycle_event(action: Transition, row: Any, tree: list[dict[str, Any]]) -> CourseSnapshot:
    fields = _snapshot_fields(row)
    builders: dict[Transition, Callable[[], CourseSnapshot]] = {
        Transition.PUBLISH: lambda: CoursePublished(**fields, published_at=fields["updated_at"],
                                                    modules=_tree_nodes(tree)),
        Transition.UNPUBLISH: lambda: CourseUnpublished(**fields),
        Transition.ARCHIVE: lambda: CourseArchived(**fields),
    }
    return builders[action]()


def _tree_nodes(tree: list[dict[str, Any]]) -> list[ModuleNode]:
    return [
        ModuleNode(module_id=m["id"], title=m["title"], position=m["position"], lessons=[
            LessonNode(lesson_id=lesson["id"], title=lesson["title"], position=lesson["position"], activities=[
                ActivityNode(activity_id=a["id"], title=a["title"], position=a["position"], kind=a["kind"],
                             required=a["required"], scorm_package_id=a["scorm_package_id"],
                             sco_identifier=a["sco_identifier"], passing_score_scaled=a["passing_score_scaled"])
                for a in lesson["activities"]
            ])
            for lesson in m["lessons"]
        ])
        for m in tree
    ]


async def _ready_packages(session: AsyncSession, tenant_id: int, package_ids: set[int]
                          ) -> dict[int, ReadyPackage]:
    if not package_ids:
        return {}
    table = store.scorm_packages
    rows = (await session.execute(
        sa.select(table.c.package_id, table.c.scos).where(
            table.c.tenant_id == tenant_id, table.c.package_id.in_(package_ids), table.c.status == "ready"
        )
    )).all()
    return {r.package_id: ReadyPackage(r.package_id, frozenset(s["identifier"] for s in r.scos)) for r in rows}
