"""Thin HTTP handlers: parse, call one use case, wrap the result in the envelope.

Public paths are the gateway's (``/api/v1/learn/...``); admin paths are ``/admin/v1/<rest>`` where ``<rest>``
follows ``/admin/api/v1/tenants/{slug}/`` in the gateway, and need the forwarded scope ``admin``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from services.catalog import courses, scorm_packages, structure
from services.catalog.domain import Transition
from services.catalog.schemas import (
    ActivityCreate,
    ActivityUpdate,
    CourseCreate,
    CourseUpdate,
    NodeCreate,
    NodeUpdate,
    Reorder,
)
from services.catalog.structure import ACTIVITIES, LESSONS, MODULES, Level
from shared.http import ApiError, context_of, next_cursor, ok, page_request, path_id, read_json
from shared.service import CURSOR_KEY, DB_KEY

PUBLIC = "/api/v1/learn"
ADMIN = "/admin/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- courses ------------------------------------------------------------------------------------------------


async def list_courses(request: web.Request) -> web.Response:
    ctx = context_of(request)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "courses", ctx.tenant_id, {})
    rows = await courses.list_courses(request.app[DB_KEY], ctx, page)
    cursor = next_cursor(codec, rows, page, "courses", ctx.tenant_id, {})
    return ok(request, rows, cursor)


async def create_course(request: web.Request) -> web.Response:
    body = await read_json(request, CourseCreate)
    return ok(request, await courses.create_course(request.app[DB_KEY], context_of(request), body), status=201)


async def get_course(request: web.Request, *, with_tree: bool = False) -> web.Response:
    course_id = path_id(request, "id", "course")
    return ok(request, await courses.get_course(request.app[DB_KEY], context_of(request), course_id,
                                                with_tree=with_tree))


async def update_course(request: web.Request) -> web.Response:
    course_id = path_id(request, "id", "course")
    ctx = context_of(request)
    body = await read_json(request, CourseUpdate)
    return ok(request, await courses.update_course(request.app[DB_KEY], ctx, course_id, body))


async def transition_course(request: web.Request, *, action: Transition) -> web.Response:
    course_id = path_id(request, "id", "course")
    ctx = context_of(request)
    await _no_body(request)
    return ok(request, await courses.transition_course(request.app[DB_KEY], ctx, course_id, action))


async def _no_body(request: web.Request) -> None:
    """Lifecycle actions take no fields: an empty body or ``{}``; anything else is a mistake worth reporting."""
    raw = (await request.read()).strip()
    if raw and raw != b"{}":
        raise ApiError.invalid("This action takes no body fields.")


# --- the tree -----------------------------------------------------------------------------------------------


async def list_children(request: web.Request, *, level: Level, list_name: str) -> web.Response:
    parent_id = path_id(request, "id", level.parent_resource)
    ctx = context_of(request)
    codec = request.app[CURSOR_KEY]
    filters = {level.parent_column: parent_id}
    page = page_request(request, codec, list_name, ctx.tenant_id, filters)
    rows = await structure.list_children(request.app[DB_KEY], ctx, level, parent_id, page)
    cursor = next_cursor(codec, rows, page, list_name, ctx.tenant_id, filters,
                         id_of=lambda row: int(row["position"]))
    return ok(request, rows, cursor)


async def create_node(request: web.Request, *, level: Level) -> web.Response:
    parent_id = path_id(request, "id", level.parent_resource)
    ctx = context_of(request)
    fields: dict[str, Any]
    if level is ACTIVITIES:
        activity = await read_json(request, ActivityCreate)
        fields = {k: v for k, v in activity.model_dump().items() if v is not None}
        fields["title"] = fields["title"].strip()
    else:
        node = await read_json(request, NodeCreate)
        fields = {k: v for k, v in node.model_dump().items() if v is not None}
    return ok(request, await structure.create_node(request.app[DB_KEY], ctx, level, parent_id, fields),
              status=201)


async def update_node(request: web.Request, *, level: Level) -> web.Response:
    node_id = path_id(request, "id", level.resource)
    ctx = context_of(request)
    update = await read_json(request, ActivityUpdate if level is ACTIVITIES else NodeUpdate)
    changes = update.changes()  # type: ignore[attr-defined]
    return ok(request, await structure.update_node(request.app[DB_KEY], ctx, level, node_id, changes))


async def delete_node(request: web.Request, *, level: Level) -> web.Response:
    node_id = path_id(request, "id", level.resource)
    return ok(request, await structure.delete_node(request.app[DB_KEY], context_of(request), level, node_id))


async def get_node(request: web.Request, *, level: Level) -> web.Response:
    node_id = path_id(request, "id", level.resource)
    return ok(request, await structure.get_node(request.app[DB_KEY], context_of(request), level, node_id))


async def reorder_children(request: web.Request, *, level: Level) -> web.Response:
    parent_id = path_id(request, "id", level.parent_resource)
    ctx = context_of(request)
    body = await read_json(request, Reorder)
    return ok(request, await structure.reorder_children(request.app[DB_KEY], ctx, level, parent_id, body.ids))


async def list_scorm_scos(request: web.Request) -> web.Response:
    ctx = context_of(request)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "scorm-scos", ctx.tenant_id, {})
    rows = await scorm_packages.list_ready_packages(request.app[DB_KEY], ctx, page)
    return ok(request, rows, next_cursor(codec, rows, page, "scorm-scos", ctx.tenant_id, {}))


# --- routing ------------------------------------------------------------------------------------------------


def admin_only(handler: Handler) -> Handler:
    """``/admin/v1/*`` is the admin API's: the gateway forwards the scope ``admin`` for admin tokens only."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not context_of(request).is_admin:
            raise ApiError(403, "insufficient_scope", "This endpoint needs the 'admin' scope.")
        return await handler(request)

    return guarded


def setup_routes(app: web.Application) -> None:
    router = app.router
    course_routes: list[tuple[str, str, Handler]] = [
        ("GET", "/courses", list_courses),
        ("POST", "/courses", create_course),
        ("POST", "/courses/{id}", update_course),
        *[("POST", f"/courses/{{id}}/{action.value}", partial(transition_course, action=action))
          for action in Transition],
    ]
    nested_reads: list[tuple[str, str, Handler]] = [
        ("GET", "/courses/{id}/modules", partial(list_children, level=MODULES, list_name="modules")),
        ("GET", "/modules/{id}/lessons", partial(list_children, level=LESSONS, list_name="lessons")),
        ("GET", "/lessons/{id}/activities", partial(list_children, level=ACTIVITIES, list_name="activities")),
    ]
    for method, path, handler in [*course_routes, *nested_reads, ("GET", "/courses/{id}", get_course)]:
        router.add_route(method, PUBLIC + path, handler)
    for method, path, handler in [*course_routes, *nested_reads]:
        router.add_route(method, ADMIN + path, admin_only(handler))
    router.add_get(ADMIN + "/courses/{id}", admin_only(partial(get_course, with_tree=True)))
    router.add_get(ADMIN + "/scorm-scos", admin_only(list_scorm_scos))
    for level, parent_path, path in ((MODULES, "/courses/{id}/modules", "/modules/{id}"),
                                     (LESSONS, "/modules/{id}/lessons", "/lessons/{id}"),
                                     (ACTIVITIES, "/lessons/{id}/activities", "/activities/{id}")):
        router.add_post(ADMIN + parent_path, admin_only(partial(create_node, level=level)))
        router.add_post(ADMIN + parent_path + "/reorder", admin_only(partial(reorder_children, level=level)))
        router.add_get(ADMIN + path, admin_only(partial(get_node, level=level)))
        router.add_post(ADMIN + path, admin_only(partial(update_node, level=level)))
        router.add_delete(ADMIN + path, admin_only(partial(delete_node, level=level)))
