"""HTTP handlers for ``/api/v1/learn/attempts`` (read-only: attempts are written by the learner runtime)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from services.enrollment.store import attempt_resource, attempts, keyset_page, reading
from shared.http import ApiError, context_of, int_param, next_cursor, ok, page_request, path_id, require_scope
from shared.service import CURSOR_KEY, DB_KEY

_ATTEMPT = sa.select(attempts).where(attempts.c.tenant_id == sa.bindparam("tenant_id"),
                                     attempts.c.id == sa.bindparam("id"))


async def list_attempts(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:read")
    filters = {"enrollment_id": int_param(request, "enrollment_id"),
               "activity_id": int_param(request, "activity_id")}
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "attempts", ctx.tenant_id, filters)
    rows = await keyset_page(request.app[DB_KEY], attempts, ctx.tenant_id, filters, page.after_id, page.limit + 1)
    cursor = next_cursor(codec, rows, page, "attempts", ctx.tenant_id, filters, id_of=lambda r: r.id)
    return ok(request, [attempt_resource(r) for r in rows], next_cursor=cursor)


async def get_attempt(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:read")
    attempt_id = path_id(request, "id", "attempt")
    async with reading(request.app[DB_KEY]) as conn:
        row = (await conn.execute(_ATTEMPT, {"tenant_id": ctx.tenant_id, "id": attempt_id})).first()
    if row is None:
        raise ApiError.not_found("attempt")
    return ok(request, attempt_resource(row))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/learn/attempts", list_attempts)
    app.router.add_get("/api/v1/learn/attempts/{id}", get_attempt)
