"""HTTP for the enrollment service: ``/api/v1/learn/enrollments``, ``/api/v1/learn/attempts`` (read-only:
attempts are written by the learner runtime), the admin cohorts (``/admin/v1/cohorts``) and the public grant.

A write parses its body into a command, calls one handler (handlers.py) and answers the row it returns; the
domain exceptions the handlers raise become the error envelope through :data:`ERRORS`, the one table of this
service. Reads go to store.py on an autocommit connection (one statement, no transaction).
``Idempotency-Key`` is handled by the shared rule (shared/idempotency.py), like every other write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.enrollment import domain, handlers, store
from shared.bus.envelope import Origin
from shared.db import as_utc
from shared.domain_errors import Answer, ErrorTable
from shared.http import (
    ApiError,
    context_of,
    int_param,
    next_cursor,
    ok,
    page_request,
    path_id,
    read_json,
    require_scope,
)
from shared.service import CURSOR_KEY, DB_KEY
from shared.uow import UnitOfWork

#: the app's caches, handed to every handler as ``uow.deps`` (one set per app: each app has its own database)
CACHES_KEY = web.AppKey("enrollment_caches", handlers.Caches)

#: domain exception -> answer of the error envelope (shared/domain_errors.py); a subclass answers as its nearest
#: listed base (every ``Rejected`` is ``400 invalid_argument``). The message is the exception's.
ERRORS: ErrorTable = {
    domain.CourseNotFound: Answer(404, "course_not_found"),
    domain.EnrollmentNotFound: Answer(404, "enrollment_not_found"),
    domain.CohortNotFound: Answer(404, "cohort_not_found"),
    domain.Rejected: Answer(400, "invalid_argument"),
    domain.ConcurrentChange: Answer(503, "service_unavailable", headers={"Retry-After": "1"}),
}


def _uow(request: web.Request) -> UnitOfWork:
    return UnitOfWork(request.app[DB_KEY], deps=request.app[CACHES_KEY])


# --- request bodies ----------------------------------------------------------------------------------------------

#: a positive integer id, strictly typed ("12" and true are not ids), that fits a BIGINT
PositiveId = Annotated[int, Field(strict=True, gt=0, lt=2**63)]
CohortName = Annotated[str, Field(min_length=1, max_length=200)]
CourseIds = Annotated[list[PositiveId], Field(min_length=1, max_length=100)]


def _distinct(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: PositiveId
    course_id: PositiveId
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = "api"
    expires_at: str | None = None


class CreateCohortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CohortName
    course_ids: CourseIds

    _dedupe = field_validator("course_ids")(_distinct)


class UpdateCohortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CohortName | None = None
    course_ids: CourseIds | None = None

    _dedupe = field_validator("course_ids")(lambda ids: None if ids is None else _distinct(ids))


class GrantCohortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: PositiveId
    cohort_id: PositiveId
    expires_at: str | None = None


# --- views: the contract's JSON of a row -------------------------------------------------------------------------


def _number(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value).normalize()


def enrollment_view(row: Any) -> dict[str, Any]:
    """The contract's Enrollment object (plus ``course_version``, the published version it follows)."""
    return {
        "id": row.id,
        "user_id": row.user_id,
        "course_id": row.course_id,
        "course_version": row.course_version,
        "status": row.status,
        "source": row.source,
        "enrolled_at": as_utc(row.enrolled_at),
        "expires_at": as_utc(row.expires_at),
        "completed_at": as_utc(row.completed_at),
        "cancelled_at": as_utc(row.cancelled_at),
        "progress": {"required_total": row.required_total, "required_done": row.required_done},
    }


def attempt_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "enrollment_id": row.enrollment_id,
        "activity_id": row.activity_id,
        "user_id": row.user_id,
        "course_id": row.course_id,
        "status": row.status,
        "score_raw": _number(row.score_raw),
        "score_scaled": _number(row.score_scaled),
        "passed": row.passed,
        "time_started_at": as_utc(row.time_started_at),
        "time_ended_at": as_utc(row.time_ended_at),
        "total_time_seconds": _number(row.total_time_seconds),
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }


def cohort_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "course_ids": list(row.course_ids),
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }


def grant_view(grant: handlers.Grant) -> dict[str, Any]:
    return {
        "cohort_id": grant.cohort_id,
        "user_id": grant.user_id,
        "granted_at": grant.granted_at,
        "enrollments": [enrollment_view(r) for r in grant.enrollments],
    }


# --- reads -------------------------------------------------------------------------------------------------------


async def _page(request: web.Request, scope: str, table: sa.Table, filter_names: tuple[str, ...],
                view: Callable[[Any], dict[str, Any]]) -> web.Response:
    """A keyset page of the tenant's rows of ``table`` (the resource named like it), filtered by query params."""
    ctx = context_of(request)
    require_scope(ctx, scope)
    filters = {name: int_param(request, name) for name in filter_names}
    codec, resource = request.app[CURSOR_KEY], table.name
    page = page_request(request, codec, resource, ctx.tenant_id, filters)
    rows = await store.keyset_page(request.app[DB_KEY], table, ctx.tenant_id, filters, page.after_id,
                                   page.limit + 1, course_ids=ctx.course_ids)
    cursor = next_cursor(codec, rows, page, resource, ctx.tenant_id, filters, id_of=lambda r: r.id)
    return ok(request, [view(r) for r in rows], next_cursor=cursor)


async def _one(request: web.Request, scope: str, resource: str,
               query: Callable[..., Awaitable[Any]],
               view: Callable[[Any], dict[str, Any]]) -> web.Response:
    """One of the tenant's rows by the path's id (``404 <resource>_not_found`` if there is none)."""
    ctx = context_of(request)
    require_scope(ctx, scope)
    row_id = path_id(request, "id", resource)
    async with store.reading(request.app[DB_KEY]) as conn:
        row = await query(conn, ctx.tenant_id, row_id, course_ids=ctx.course_ids)
    if row is None:
        raise ApiError.not_found(resource)
    return ok(request, view(row))


# --- enrollments -------------------------------------------------------------------------------------------------


async def create_enrollment(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    body = await read_json(request, EnrollRequest)
    command = handlers.Enroll(user_id=body.user_id, course_id=body.course_id, source=body.source,
                              expires_at=body.expires_at)
    row, created = await handlers.enroll(_uow(request), Origin.of_request(ctx), command,
                                         tenant_name=ctx.tenant_name)
    return ok(request, enrollment_view(row), status=201 if created else 200)


async def list_enrollments(request: web.Request) -> web.Response:
    return await _page(request, "learn:read", store.enrollments, ("course_id", "user_id"), enrollment_view)


async def get_enrollment(request: web.Request) -> web.Response:
    return await _one(request, "learn:read", "enrollment", store.enrollment, enrollment_view)


async def cancel_enrollment(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    enrollment_id = path_id(request, "id", "enrollment")
    row = await handlers.cancel(_uow(request), Origin.of_request(ctx), enrollment_id, tenant_name=ctx.tenant_name)
    return ok(request, enrollment_view(row))


# --- cohorts -----------------------------------------------------------------------------------------------------


async def create_cohort(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    body = await read_json(request, CreateCohortRequest)
    command = handlers.CreateCohort(name=body.name.strip(), course_ids=body.course_ids)
    row = await handlers.create_cohort(_uow(request), Origin.of_request(ctx), command, tenant_name=ctx.tenant_name)
    return ok(request, cohort_view(row), status=201)


async def list_cohorts(request: web.Request) -> web.Response:
    return await _page(request, "admin", store.cohorts, (), cohort_view)


async def get_cohort(request: web.Request) -> web.Response:
    return await _one(request, "admin", "cohort", store.cohort, cohort_view)


async def update_cohort(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    cohort_id = path_id(request, "id", "cohort")
    body = await read_json(request, UpdateCohortRequest)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for name, value in changes.items():
        if value is None:
            raise ApiError.invalid(f"'{name}' cannot be null.")
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    row = await handlers.update_cohort(_uow(request), Origin.of_request(ctx),
                                       handlers.UpdateCohort(cohort_id=cohort_id, changes=changes))
    return ok(request, cohort_view(row))


async def grant_cohort(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:cohorts:grant")
    body = await read_json(request, GrantCohortRequest)
    command = handlers.GrantCohort(user_id=body.user_id, cohort_id=body.cohort_id, expires_at=body.expires_at)
    grant = await handlers.grant_cohort(_uow(request), Origin.of_request(ctx), command, tenant_name=ctx.tenant_name)
    return ok(request, grant_view(grant), status=201 if grant.changed else 200)


# --- attempts ----------------------------------------------------------------------------------------------------


async def list_attempts(request: web.Request) -> web.Response:
    return await _page(request, "learn:read", store.attempts, ("enrollment_id", "activity_id"), attempt_view)


async def get_attempt(request: web.Request) -> web.Response:
    return await _one(request, "learn:read", "attempt", store.attempt, attempt_view)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/learn/enrollments", list_enrollments)
    app.router.add_post("/api/v1/learn/enrollments", create_enrollment)
    app.router.add_get("/api/v1/learn/enrollments/{id}", get_enrollment)
    app.router.add_post("/api/v1/learn/enrollments/{id}/cancel", cancel_enrollment)
    app.router.add_post("/api/v1/learn/cohorts/grant", grant_cohort)
    app.router.add_post("/admin/v1/cohorts", create_cohort)
    app.router.add_get("/admin/v1/cohorts", list_cohorts)
    app.router.add_get("/admin/v1/cohorts/{id}", get_cohort)
    app.router.add_post("/admin/v1/cohorts/{id}", update_cohort)
    app.router.add_get("/api/v1/learn/attempts", list_attempts)
    app.router.add_get("/api/v1/learn/attempts/{id}", get_attempt)
