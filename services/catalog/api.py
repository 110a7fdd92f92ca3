"""HTTP only: parse the request, call one handler (``handlers.py``), return its result in the envelope.

Domain errors become the error envelope through one table, :data:`ERRORS`.

Public paths are the gateway's (``/api/v1/learn/...``); admin paths are ``/admin/v1/<rest>`` where ``<rest>``
follows ``/admin/api/v1/tenants/{slug}/`` in the gateway, and need the forwarded scope ``admin``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial, wraps
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, field_validator

from services.catalog import handlers
from services.catalog.domain import (
    ACTIVITIES,
    ALL_COURSES_ROLES,
    LESSONS,
    MODULES,
    TEAM_ROLES,
    CatalogError,
    InvalidArgument,
    Level,
    MissingField,
    NotFound,
    NotOnCourseTeam,
    StaffRoleRefused,
    Transition,
)
from services.catalog.schemas import (
    ActivityCreate,
    ActivityUpdate,
    CourseCreate,
    CourseUpdate,
    NodeCreate,
    NodeUpdate,
    Reorder,
)
from shared.bus.envelope import Origin
from shared.domain_errors import Answer, ErrorTable
from shared.http import (
    H_STAFF_ID,
    H_STAFF_ROLE,
    ApiError,
    admin_only,
    context_of,
    next_cursor,
    ok,
    page_request,
    path_id,
    positive_int,
    read_json,
    require_all_courses,
)
from shared.service import CURSOR_KEY, DB_KEY
from shared.uow import UnitOfWork

PUBLIC = "/api/v1/learn"
ADMIN = "/admin/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: domain error -> answer (shared/domain_errors.py); the error code and message are the error's own (nearest class)
ERRORS: ErrorTable = {
    NotOnCourseTeam: Answer(403),  # not_on_course_team (ADR 0021)
    StaffRoleRefused: Answer(403),  # insufficient_role
    NotFound: Answer(404),  # course_not_found, module_not_found, lesson_not_found, activity_not_found
    MissingField: Answer(400),  # missing_field
    InvalidArgument: Answer(400),  # invalid_argument: slug taken, illegal transition, not publishable, not editable
    CatalogError: Answer(400),
}


def _uow(request: web.Request) -> UnitOfWork:
    return UnitOfWork(request.app[DB_KEY])


def _origin(request: web.Request) -> Origin:
    return Origin.of_request(context_of(request))


# --- courses ------------------------------------------------------------------------------------------------


async def list_courses(request: web.Request) -> web.Response:
    ctx = context_of(request)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "courses", ctx.tenant_id, {})
    rows = await handlers.list_courses(_uow(request), _origin(request), page)
    cursor = next_cursor(codec, rows, page, "courses", ctx.tenant_id, {})
    return ok(request, rows, cursor)


async def create_course(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_all_courses(ctx)
    body = await read_json(request, CourseCreate)
    course = await handlers.create_course(_uow(request), Origin.of_request(ctx), body, owner_id=ctx.owner_id,
                                          owner_name=ctx.owner_name)
    return ok(request, course, status=201)


async def get_course(request: web.Request, *, with_tree: bool = False) -> web.Response:
    course_id = path_id(request, "id", "course")
    return ok(request, await handlers.get_course(_uow(request), _origin(request), course_id, with_tree=with_tree))


async def update_course(request: web.Request) -> web.Response:
    course_id = path_id(request, "id", "course")
    origin = _origin(request)
    changes = (await read_json(request, CourseUpdate)).changes()
    return ok(request, await handlers.update_course(_uow(request), origin, course_id, changes))


LIFECYCLE = {
    Transition.PUBLISH: handlers.publish_course,
    Transition.UNPUBLISH: handlers.unpublish_course,
    Transition.ARCHIVE: handlers.archive_course,
}


async def transition_course(request: web.Request, *, action: Transition) -> web.Response:
    course_id = path_id(request, "id", "course")
    origin = _origin(request)
    await _no_body(request)
    return ok(request, await LIFECYCLE[action](_uow(request), origin, course_id))


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
    rows = await handlers.list_children(_uow(request), _origin(request), level, parent_id, page)
    cursor = next_cursor(codec, rows, page, list_name, ctx.tenant_id, filters,
                         id_of=lambda row: int(row["position"]))
    return ok(request, rows, cursor)


async def create_node(request: web.Request, *, level: Level) -> web.Response:
    parent_id = path_id(request, "id", level.parent_resource)
    origin = _origin(request)
    fields: dict[str, Any]
    if level is ACTIVITIES:
        activity = await read_json(request, ActivityCreate)
        fields = {k: v for k, v in activity.model_dump().items() if v is not None}
        fields["title"] = fields["title"].strip()
    else:
        node = await read_json(request, NodeCreate)
        fields = {k: v for k, v in node.model_dump().items() if v is not None}
    return ok(request, await handlers.create_node(_uow(request), origin, level, parent_id, fields),
              status=201)


async def update_node(request: web.Request, *, level: Level) -> web.Response:
    node_id = path_id(request, "id", level.resource)
    origin = _origin(request)
    update = await read_json(request, ActivityUpdate if level is ACTIVITIES else NodeUpdate)
    changes = update.changes()  # type: ignore[attr-defined]
    return ok(request, await handlers.update_node(_uow(request), origin, level, node_id, changes))


async def delete_node(request: web.Request, *, level: Level) -> web.Response:
    node_id = path_id(request, "id", level.resource)
    return ok(request, await handlers.delete_node(_uow(request), _origin(request), level, node_id))


async def get_node(request: web.Request, *, level: Level) -> web.Response:
    node_id = path_id(request, "id", level.resource)
    return ok(request, await handlers.get_node(_uow(request), _origin(request), level, node_id))


async def reorder_children(request: web.Request, *, level: Level) -> web.Response:
    parent_id = path_id(request, "id", level.parent_resource)
    origin = _origin(request)
    body = await read_json(request, Reorder)
    return ok(request, await handlers.reorder_children(_uow(request), origin, level, parent_id, body.ids))


async def list_scorm_scos(request: web.Request) -> web.Response:
    ctx = context_of(request)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "scorm-scos", ctx.tenant_id, {})
    rows = await handlers.list_ready_packages(_uow(request), _origin(request), page)
    return ok(request, rows, next_cursor(codec, rows, page, "scorm-scos", ctx.tenant_id, {}))


# --- course teams (ADR 0021) -------------------------------------------------------------------------------


class TeamPlace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in TEAM_ROLES:
            raise ValueError(f"must be one of {', '.join(TEAM_ROLES)}")
        return v


def _staff_role(request: web.Request) -> str | None:
    """The acting staff member's role, set by the gateway's admin proxy (None: the platform operator)."""
    return request.headers.get(H_STAFF_ROLE)


def _team_editors_only(request: web.Request) -> None:
    role = _staff_role(request)
    if role is not None and role not in ALL_COURSES_ROLES:
        raise StaffRoleRefused("Only an owner or admin changes this.")


async def get_team(request: web.Request) -> web.Response:
    course_id = path_id(request, "id", "course")
    return ok(request, await handlers.course_team(_uow(request), _origin(request), course_id))


async def put_team(request: web.Request) -> web.Response:
    _team_editors_only(request)
    course_id = path_id(request, "id", "course")
    staff_id = path_id(request, "staff_id", "team_member")
    body = await read_json(request, TeamPlace)
    return ok(request, await handlers.put_team_member(_uow(request), _origin(request), course_id, staff_id,
                                                      body.role))


async def delete_team(request: web.Request) -> web.Response:
    _team_editors_only(request)
    course_id = path_id(request, "id", "course")
    staff_id = path_id(request, "staff_id", "team_member")
    return ok(request, await handlers.remove_team_member(_uow(request), _origin(request), course_id, staff_id))


def team_rule(resource: str | None, handler: Handler) -> Handler:
    """Admin writes to a course, its tree and its lifecycle: owners and admins (and the operator) change every
    course; other staff only those whose team they are on (``resource``: the row the path's ``{id}`` names;
    None: a new course, which owners and admins create)."""

    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        role = _staff_role(request)
        if role is not None and role not in ALL_COURSES_ROLES:
            if resource is None:
                raise StaffRoleRefused("An owner or admin creates courses; authors edit those whose team they "
                                       "are on.")
            staff_id = positive_int(request.headers.get(H_STAFF_ID, ""))
            if staff_id is None:
                raise NotOnCourseTeam()
            row_id = positive_int(request.match_info.get("id", ""))
            if row_id is not None:
                await handlers.check_team(_uow(request), _origin(request), staff_id, resource, row_id)
        return await handler(request)

    return guarded


# --- routing ------------------------------------------------------------------------------------------------


def setup_routes(app: web.Application) -> None:
    def add(method: str, path: str, handler: Handler) -> None:
        app.router.add_route(method, path, handler)

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
        add(method, PUBLIC + path, handler)
    course_writes: dict[str, str | None] = {"/courses": None, "/courses/{id}": "course",
                                            **{f"/courses/{{id}}/{a.value}": "course" for a in Transition}}
    for method, path, handler in [*course_routes, *nested_reads]:
        if method == "POST":
            handler = team_rule(course_writes[path], handler)
        add(method, ADMIN + path, admin_only(handler))
    add("GET", ADMIN + "/courses/{id}/team", admin_only(get_team))
    add("PUT", ADMIN + "/courses/{id}/team/{staff_id}", admin_only(put_team))
    add("DELETE", ADMIN + "/courses/{id}/team/{staff_id}", admin_only(delete_team))
    add("GET", ADMIN + "/courses/{id}", admin_only(partial(get_course, with_tree=True)))
    add("GET", ADMIN + "/scorm-scos", admin_only(list_scorm_scos))
    for level, parent_path, path in ((MODULES, "/courses/{id}/modules", "/modules/{id}"),
                                     (LESSONS, "/modules/{id}/lessons", "/lessons/{id}"),
                                     (ACTIVITIES, "/lessons/{id}/activities", "/activities/{id}")):
        parent = level.parent_resource
        add("POST", ADMIN + parent_path, admin_only(team_rule(parent, partial(create_node, level=level))))
        add("POST", ADMIN + parent_path + "/reorder",
            admin_only(team_rule(parent, partial(reorder_children, level=level))))
        add("GET", ADMIN + path, admin_only(partial(get_node, level=level)))
        add("POST", ADMIN + path, admin_only(team_rule(level.resource, partial(update_node, level=level))))
        add("DELETE", ADMIN + path, admin_only(team_rule(level.resource, partial(delete_node, level=level))))
