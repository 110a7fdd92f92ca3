"""HTTP: SCORM packages. Admin upload, list, get and preview under ``/admin/v1``; public list and get."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.scorm import handlers
from services.scorm.api_errors import unit_of_work
from services.scorm.context import SCORM_KEY
from services.scorm.domain import MAX_TITLE
from services.scorm.events import outcome_event_id
from services.scorm.packages.upload import ReceivedUpload, receive_upload
from shared.bus.envelope import Origin
from shared.consistency import observed
from shared.db import as_utc
from shared.http import (
    ApiError,
    context_of,
    next_cursor,
    ok,
    page_request,
    path_id,
    read_json,
    require_all_courses,
    require_scope,
)
from shared.idempotency import claim_streamed, streams_its_body
from shared.service import CURSOR_KEY

PUBLIC = "/api/v1/learn/scorm-packages"
ADMIN = "/admin/v1/scorm-packages"
LIST_NAME = "scorm_packages"


def package_resource(row: Any, scos: list[Any] | None = None, *, admin: bool = False) -> dict[str, Any]:
    """The contract's SCORM package (CONTRACT §6) with its import warnings; ``scos`` on get."""
    data: dict[str, Any] = {
        "id": row.id,
        "title": row.title,
        "scorm_version": row.scorm_version,
        "status": row.status,
        "error": row.error,
        "bytes": row.bytes,
        "sha256": row.sha256,
        "organization_identifier": row.organization_identifier,
        "created_at": as_utc(row.created_at),
        "warnings": list(row.warnings or []),
        "version": row.version,
        "version_of": row.version_of,
        "archived_at": as_utc(row.archived_at) if row.archived_at is not None else None,
    }
    if scos is not None:
        data["scos"] = [sco_resource(sco) for sco in scos if sco.tracked]
        data["assets"] = [sco_resource(sco) for sco in scos if not sco.tracked]
    return data


def sco_resource(row: Any) -> dict[str, Any]:
    return {
        "identifier": row.identifier,
        "title": row.title,
        "launch_url": row.launch_url,
        "parameters": row.parameters,
        "mastery_score": row.mastery_score,
        "position": row.position,
        "parent_identifier": row.parent_identifier,
    }


def title_param(request: web.Request) -> str | None:
    raw = request.query.get("title")
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_TITLE:
        raise ApiError.invalid(f"'title' must be at most {MAX_TITLE} characters.")
    return raw.strip()


async def _replay_of(request: web.Request, received: ReceivedUpload) -> web.Response | None:
    """Idempotency-Key: the same zip (by its sha256) to the same path replays the first upload's answer. The
    received file is discarded when the answer is a replay, or when the claim fails."""
    try:
        replay = await claim_streamed(request, received.sha256)
    except BaseException:
        received.path.unlink(missing_ok=True)
        raise
    if replay is not None:
        received.path.unlink(missing_ok=True)
    return replay


@streams_its_body
async def upload(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    title = title_param(request)
    received = await receive_upload(request, request.app[SCORM_KEY].settings)
    if (replay := await _replay_of(request, received)) is not None:
        return replay
    row = await handlers.upload_package(unit_of_work(request), Origin.of_request(ctx), received, title)
    return ok(request, package_resource(row, [], admin=True), status=201)


def flag_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw.lower() in ("false", "0", ""):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise ApiError.invalid(f"'{name}' must be true or false.")


def _created(request: web.Request, row: Any, status: int) -> web.Response:
    response = ok(request, package_resource(row, []), status=status)
    response.headers["Location"] = f"{PUBLIC}/{row.id}"
    return response


@streams_its_body
async def public_upload(request: web.Request) -> web.Response:
    """``POST /api/v1/learn/scorm-packages``: the zip (raw or the ``file`` part of a form) → ``202`` processing.

    ``?dedupe=true``: the same bytes as a package of this tenant that did not fail answer that package (200)."""
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    title = title_param(request)
    dedupe = flag_param(request, "dedupe")
    received = await receive_upload(request, request.app[SCORM_KEY].settings, multipart=True)
    try:
        replay = await claim_streamed(request, received.sha256)
        if replay is not None:
            received.path.unlink(missing_ok=True)
            return replay
        if dedupe:
            existing = await handlers.duplicate_of(unit_of_work(request), Origin.of_request(ctx), received.sha256)
            if existing is not None:
                received.path.unlink(missing_ok=True)
                scos = (await handlers.get_package(unit_of_work(request), Origin.of_request(ctx), existing.id))[1]
                response = ok(request, package_resource(existing, scos), status=200)
                response.headers["Location"] = f"{PUBLIC}/{existing.id}"
                return response
    except BaseException:
        received.path.unlink(missing_ok=True)
        raise
    row = await handlers.upload_package(unit_of_work(request), Origin.of_request(ctx), received,
                                        title or received.form_title)
    return _created(request, row, 202)


@streams_its_body
async def public_new_version(request: web.Request) -> web.Response:
    """``POST /api/v1/learn/scorm-packages/{id}/versions``: a new version of a package (``202`` processing)."""
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    package_id = path_id(request, "id", "scorm_package")
    title = title_param(request)
    # An unknown package is refused before a byte of the body is read (the version is checked again on record).
    await handlers.get_package(unit_of_work(request), Origin.of_request(ctx), package_id)
    received = await receive_upload(request, request.app[SCORM_KEY].settings, multipart=True)
    if (replay := await _replay_of(request, received)) is not None:
        return replay
    row = await handlers.upload_package(unit_of_work(request), Origin.of_request(ctx), received,
                                        title or received.form_title, version_of=package_id)
    return _created(request, row, 202)


async def public_archive(request: web.Request) -> web.Response:
    """``DELETE /api/v1/learn/scorm-packages/{id}``: archive it (and its versions) unless a published course uses
    it (``409 scorm_package_in_use`` naming them)."""
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    package_id = path_id(request, "id", "scorm_package")
    await handlers.archive_package(unit_of_work(request), Origin.of_request(ctx), package_id)
    row, scos = await handlers.get_package(unit_of_work(request), Origin.of_request(ctx), package_id)
    return ok(request, package_resource(row, scos))


async def _list(request: web.Request, scope: str, admin: bool) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    require_all_courses(ctx, "read SCORM packages")  # tenant-wide, not one course's (ADR 0019)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, LIST_NAME, ctx.tenant_id, {})
    rows = await handlers.list_packages(unit_of_work(request), Origin.of_request(ctx), page.limit + 1,
                                        page.after_id)
    cursor = next_cursor(codec, rows, page, LIST_NAME, ctx.tenant_id, {}, id_of=lambda row: int(row.id))
    return ok(request, [package_resource(row, admin=admin) for row in rows], cursor)


async def _get(request: web.Request, scope: str, admin: bool) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    require_all_courses(ctx, "read SCORM packages")
    package_id = path_id(request, "id", "scorm_package")
    row, scos = await handlers.get_package(unit_of_work(request), Origin.of_request(ctx), package_id)
    if row.status in ("ready", "failed"):
        # The client has seen the import's outcome: the event that announced it must hold on its next request.
        event_type = f"scorm_package.{row.status}"
        observed(ctx.tenant_slug, event_type, outcome_event_id(ctx.tenant_id, package_id, event_type))
    if row.archived_at is not None:  # so must the archive (the catalog refuses to publish with the package)
        event_type = "scorm_package.archived"
        observed(ctx.tenant_slug, event_type,
                 outcome_event_id(ctx.tenant_id, int(row.version_of or row.id), event_type))
    return ok(request, package_resource(row, scos, admin=admin))


async def public_list(request: web.Request) -> web.Response:
    return await _list(request, "learn:read", admin=False)


async def public_get(request: web.Request) -> web.Response:
    return await _get(request, "learn:read", admin=False)


async def admin_list(request: web.Request) -> web.Response:
    return await _list(request, "admin", admin=True)


async def admin_get(request: web.Request) -> web.Response:
    return await _get(request, "admin", admin=True)


class PreviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sco_identifier: str | None = Field(default=None, min_length=1, max_length=4000)


async def admin_preview(request: web.Request) -> web.Response:
    """A launch of one SCO for the admin to try (the admin UI's Preview): browse mode, no attempt."""
    ctx = context_of(request)
    require_scope(ctx, "admin")
    package_id = path_id(request, "id", "scorm_package")
    body = await read_json(request, PreviewCreate)
    data = await handlers.preview(unit_of_work(request), Origin.of_request(ctx), package_id, body.sco_identifier,
                                  ctx.owner_id)
    return ok(request, data, status=201)


def setup(app: web.Application) -> None:
    app.router.add_get(PUBLIC, public_list)
    app.router.add_post(PUBLIC, public_upload)
    app.router.add_get(PUBLIC + "/{id}", public_get)
    app.router.add_delete(PUBLIC + "/{id}", public_archive)
    app.router.add_post(PUBLIC + "/{id}/versions", public_new_version)
    app.router.add_post(ADMIN, upload)
    app.router.add_get(ADMIN, admin_list)
    app.router.add_get(ADMIN + "/{id}", admin_get)
    app.router.add_post(ADMIN + "/{id}/preview", admin_preview)
