"""HTTP handlers for cohorts: the admin API (``/admin/v1/cohorts``) and the public grant."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.enrollment import cohorts as use_cases
from services.enrollment.api_support import PositiveId, future_expiry, note_tenant
from services.enrollment.caches import CACHES_KEY
from services.enrollment.enrollments import Caller
from services.enrollment.store import cohort_resource, cohorts, keyset_page, reading
from shared.db import utcnow
from shared.http import ApiError, context_of, next_cursor, ok, page_request, path_id, read_json, require_scope
from shared.service import CURSOR_KEY, DB_KEY

CohortName = Annotated[str, Field(min_length=1, max_length=200)]
CourseIds = Annotated[list[PositiveId], Field(min_length=1, max_length=100)]


def _distinct(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


class CreateCohort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CohortName
    course_ids: CourseIds

    _dedupe = field_validator("course_ids")(_distinct)


class UpdateCohort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CohortName | None = None
    course_ids: CourseIds | None = None

    _dedupe = field_validator("course_ids")(lambda ids: None if ids is None else _distinct(ids))


class GrantCohort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: PositiveId
    cohort_id: PositiveId
    expires_at: str | None = None


async def create_cohort(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    body = await read_json(request, CreateCohort)
    now = utcnow()
    async with request.app[DB_KEY].transaction() as session:
        await note_tenant(session, request.app[CACHES_KEY], ctx, now)
        row = await use_cases.create_cohort(session, ctx.tenant_id, body.name.strip(), body.course_ids, now)
    return ok(request, cohort_resource(row), status=201)


async def list_cohorts(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "cohorts", ctx.tenant_id, {})
    rows = await keyset_page(request.app[DB_KEY], cohorts, ctx.tenant_id, {}, page.after_id, page.limit + 1)
    cursor = next_cursor(codec, rows, page, "cohorts", ctx.tenant_id, {}, id_of=lambda r: r.id)
    return ok(request, [cohort_resource(r) for r in rows], next_cursor=cursor)


async def get_cohort(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    cohort_id = path_id(request, "id", "cohort")
    async with reading(request.app[DB_KEY]) as conn:
        row = await use_cases.get_cohort(conn, ctx.tenant_id, cohort_id)
    return ok(request, cohort_resource(row))


async def update_cohort(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    cohort_id = path_id(request, "id", "cohort")
    body = await read_json(request, UpdateCohort)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for name, value in changes.items():
        if value is None:
            raise ApiError.invalid(f"'{name}' cannot be null.")
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    async with request.app[DB_KEY].transaction() as session:
        row = await use_cases.update_cohort(session, ctx.tenant_id, cohort_id, changes, utcnow())
    return ok(request, cohort_resource(row))


async def grant_cohort(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:cohorts:grant")
    body = await read_json(request, GrantCohort)
    now = utcnow()
    expires_at = future_expiry(body.expires_at, now)
    async with request.app[DB_KEY].transaction() as session:
        caches = request.app[CACHES_KEY]
        await note_tenant(session, caches, ctx, now)
        result, changed = await use_cases.grant(session, caches, Caller.of(ctx), user_id=body.user_id,
                                                cohort_id=body.cohort_id, expires_at=expires_at, now=now)
    return ok(request, result, status=201 if changed else 200)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/learn/cohorts/grant", grant_cohort)
    app.router.add_post("/admin/v1/cohorts", create_cohort)
    app.router.add_get("/admin/v1/cohorts", list_cohorts)
    app.router.add_get("/admin/v1/cohorts/{id}", get_cohort)
    app.router.add_post("/admin/v1/cohorts/{id}", update_cohort)
