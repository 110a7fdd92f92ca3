"""HTTP handlers for ``/api/v1/learn/enrollments``."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from services.enrollment import enrollments as use_cases
from services.enrollment.api_support import PositiveId, future_expiry, note_tenant
from services.enrollment.caches import CACHES_KEY
from services.enrollment.store import (
    enrollment_resource,
    enrollments,
    keyset_page,
    reading,
)
from shared.db import utcnow
from shared.http import context_of, int_param, next_cursor, ok, page_request, path_id, read_json, require_scope
from shared.service import CURSOR_KEY, DB_KEY


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: PositiveId
    course_id: PositiveId
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = "api"
    expires_at: str | None = None


async def create_enrollment(request: web.Request) -> web.Response:
    """``Idempotency-Key`` is handled by the shared rule (shared/idempotency.py), like every other write."""
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    body = await read_json(request, EnrollRequest)
    now = utcnow()
    expires_at = future_expiry(body.expires_at, now)
    db, caches = request.app[DB_KEY], request.app[CACHES_KEY]
    async with db.transaction() as session:
        await note_tenant(session, caches, ctx, now)
        row, created = await use_cases.enroll(
            session, caches, use_cases.Caller.of(ctx), user_id=body.user_id, course_id=body.course_id,
            source=body.source, expires_at=expires_at, now=now)
    return ok(request, enrollment_resource(row), status=201 if created else 200)


async def list_enrollments(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:read")
    filters = {"course_id": int_param(request, "course_id"), "user_id": int_param(request, "user_id")}
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "enrollments", ctx.tenant_id, filters)
    rows = await keyset_page(request.app[DB_KEY], enrollments, ctx.tenant_id, filters, page.after_id,
                             page.limit + 1)
    cursor = next_cursor(codec, rows, page, "enrollments", ctx.tenant_id, filters, id_of=lambda r: r.id)
    return ok(request, [enrollment_resource(r) for r in rows], next_cursor=cursor)


async def get_enrollment(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:read")
    enrollment_id = path_id(request, "id", "enrollment")
    async with reading(request.app[DB_KEY]) as conn:
        row = await use_cases.get_enrollment(conn, ctx.tenant_id, enrollment_id)
    return ok(request, enrollment_resource(row))


async def cancel_enrollment(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    enrollment_id = path_id(request, "id", "enrollment")
    now = utcnow()
    async with request.app[DB_KEY].transaction() as session:
        await note_tenant(session, request.app[CACHES_KEY], ctx, now)
        row = await use_cases.cancel(session, use_cases.Caller.of(ctx), enrollment_id, now)
    return ok(request, enrollment_resource(row))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/learn/enrollments", list_enrollments)
    app.router.add_post("/api/v1/learn/enrollments", create_enrollment)
    app.router.add_get("/api/v1/learn/enrollments/{id}", get_enrollment)
    app.router.add_post("/api/v1/learn/enrollments/{id}/cancel", cancel_enrollment)

