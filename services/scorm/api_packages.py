"""HTTP: SCORM packages. Admin upload, list, get and preview under ``/admin/v1``; public list and get."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.scorm import launches, packages
from services.scorm.context import SCORM_KEY
from services.scorm.importer import outcome_event_id
from shared.consistency import observed
from shared.http import (
    context_of,
    next_cursor,
    ok,
    page_request,
    path_id,
    read_json,
    require_scope,
)
from shared.idempotency import claim_streamed, streams_its_body
from shared.service import CURSOR_KEY, DB_KEY

PUBLIC = "/api/v1/learn/scorm-packages"
ADMIN = "/admin/v1/scorm-packages"
LIST_NAME = "scorm_packages"


@streams_its_body
async def upload(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    scorm = request.app[SCORM_KEY]
    title = packages.title_param(request)
    received = await packages.receive_upload(request, scorm.settings)
    # Idempotency-Key: the same zip (by its sha256) to the same path replays the first upload's answer.
    try:
        replay = await claim_streamed(request, received.sha256)
    except BaseException:
        received.path.unlink(missing_ok=True)
        raise
    if replay is not None:
        received.path.unlink(missing_ok=True)
        return replay
    row = await packages.create_package(request.app[DB_KEY], ctx, received, title)
    scorm.import_wanted.set()
    return ok(request, packages.package_resource(row, [], admin=True), status=201)


async def _list(request: web.Request, scope: str, admin: bool) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, LIST_NAME, ctx.tenant_id, {})
    rows = await packages.list_packages(request.app[DB_KEY], ctx, page)
    cursor = next_cursor(codec, rows, page, LIST_NAME, ctx.tenant_id, {}, id_of=lambda row: int(row.id))
    return ok(request, [packages.package_resource(row, admin=admin) for row in rows], cursor)


async def _get(request: web.Request, scope: str, admin: bool) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    package_id = path_id(request, "id", "scorm_package")
    row, scos = await packages.get_package(request.app[DB_KEY], ctx, package_id)
    if row.status in ("ready", "failed"):
        # The client has seen the import's outcome: the event that announced it must hold on its next request.
        event_type = f"scorm_package.{row.status}"
        observed(ctx.tenant_slug, event_type, outcome_event_id(ctx.tenant_id, package_id, event_type))
    return ok(request, packages.package_resource(row, scos, admin=admin))


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
    data = await launches.preview(request.app[DB_KEY], request.app[SCORM_KEY], ctx, package_id,
                                  body.sco_identifier)
    return ok(request, data, status=201)


def setup(app: web.Application) -> None:
    app.router.add_get(PUBLIC, public_list)
    app.router.add_get(PUBLIC + "/{id}", public_get)
    app.router.add_post(ADMIN, upload)
    app.router.add_get(ADMIN, admin_list)
    app.router.add_get(ADMIN + "/{id}", admin_get)
    app.router.add_post(ADMIN + "/{id}/preview", admin_preview)
