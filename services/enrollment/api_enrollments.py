"""HTTP handlers for ``/api/v1/learn/enrollments``."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from services.enrollment import enrollments as use_cases
from services.enrollment.api_support import PositiveId, future_expiry, note_tenant, require_scope
from services.enrollment.caches import CACHES_KEY
from services.enrollment.store import (
    enrollment_resource,
    enrollments,
    idempotency_keys,
    insert_if_absent,
    keyset_page,
    reading,
)
from shared.db import utcnow
from shared.http import (
    ApiError,
    context_of,
    dumps,
    int_param,
    next_cursor,
    ok,
    page_request,
    path_id,
    read_json,
)
from shared.service import CURSOR_KEY, DB_KEY

IDEMPOTENCY_HEADER = "Idempotency-Key"


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: PositiveId
    course_id: PositiveId
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = "api"
    expires_at: str | None = None


class _KeyTaken(Exception):
    """Another request stored a response under this idempotency key first."""


async def create_enrollment(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 1 <= len(key) <= 255:
        raise ApiError.invalid(f"'{IDEMPOTENCY_HEADER}' must be 1 to 255 characters.")
    body = await read_json(request, EnrollRequest)
    body_hash = _body_hash(await request.read())
    now = utcnow()
    expires_at = future_expiry(body.expires_at, now)
    db, caches = request.app[DB_KEY], request.app[CACHES_KEY]
    try:
        async with db.transaction() as session:
            if key is not None and (stored := await _stored(session, ctx.tenant_id, key)) is not None:
                return _replay(request, stored, body_hash)
            await note_tenant(session, caches, ctx, now)
            row, created = await use_cases.enroll(
                session, caches, use_cases.Caller.of(ctx), user_id=body.user_id, course_id=body.course_id,
                source=body.source, expires_at=expires_at, now=now)
            data = enrollment_resource(row)
            status = 201 if created else 200
            if key is not None:
                # Only successes are remembered: a request that failed can be retried with the same key.
                saved = await insert_if_absent(session, idempotency_keys, {
                    "tenant_id": ctx.tenant_id, "key": key, "body_sha256": body_hash, "status_code": status,
                    "response": json.loads(dumps(data)), "created_at": now})
                if not saved:
                    raise _KeyTaken
    except _KeyTaken:
        async with db.transaction() as session:
            stored = await _stored(session, ctx.tenant_id, key or "")
        assert stored is not None
        return _replay(request, stored, body_hash)
    return ok(request, data, status=status)


def _body_hash(raw: bytes) -> str:
    """Same JSON, same hash: key order and whitespace do not make a different request."""
    canonical = json.dumps(json.loads(raw or b"{}"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_STORED = sa.select(idempotency_keys).where(idempotency_keys.c.tenant_id == sa.bindparam("tenant_id"),
                                            idempotency_keys.c.key == sa.bindparam("key"))


async def _stored(session: Any, tenant_id: int, key: str) -> Any | None:
    return (await session.execute(_STORED, {"tenant_id": tenant_id, "key": key})).first()


def _replay(request: web.Request, stored: Any, body_hash: str) -> web.Response:
    if stored.body_sha256 != body_hash:
        raise ApiError.invalid(f"This '{IDEMPOTENCY_HEADER}' was already used with a different body.")
    response = ok(request, stored.response, status=stored.status_code)
    response.headers["Idempotent-Replayed"] = "true"
    return response


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

