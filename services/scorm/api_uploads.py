"""HTTP: resumable uploads of SCORM packages (tus 1.0.0 core + creation; ADR 0020).

``POST /api/v1/learn/scorm-uploads`` (``Upload-Length``) → ``201`` + ``Location``; ``HEAD`` → ``Upload-Offset``;
``PATCH`` (``application/offset+octet-stream``, ``Upload-Offset``) appends → ``204``; the last byte starts the
import, and ``GET`` shows the upload with its ``package_id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from services.scorm import handlers
from services.scorm.api_errors import unit_of_work
from services.scorm.api_packages import title_param
from services.scorm.context import SCORM_KEY
from services.scorm.domain import MAX_TITLE, Invalid, OffsetMismatch, UnsupportedMediaType
from services.scorm.packages import resumable
from services.scorm.packages.upload import UPLOAD_CHUNK, media_type
from shared.bus.envelope import Origin
from shared.db import as_utc
from shared.http import context_of, ok, path_id, require_scope
from shared.idempotency import streams_its_body

UPLOADS = "/api/v1/learn/scorm-uploads"
TUS = {"Tus-Resumable": resumable.TUS_VERSION}


def _check_version(request: web.Request) -> None:
    sent = request.headers.get("Tus-Resumable")
    if sent is not None and sent.strip() != resumable.TUS_VERSION:
        raise Invalid(f"'Tus-Resumable' must be {resumable.TUS_VERSION} (the only version served).")


async def upload_resource(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "length": row.length,
        "offset": row.length if row.package_id is not None else await resumable.offset_of(_part(row)),
        "package_id": row.package_id,
        "created_at": as_utc(row.created_at),
        "expires_at": as_utc(row.expires_at),
    }


def _part(row: Any) -> Path:
    return Path(row.part_path)


async def create(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    _check_version(request)
    settings = request.app[SCORM_KEY].settings
    length = resumable.parse_length(request.headers.get("Upload-Length"), settings.max_upload_bytes)
    metadata = resumable.parse_metadata(request.headers.get("Upload-Metadata"))
    title = title_param(request) or (metadata.get("title") or "").strip()[:MAX_TITLE] or None
    row = await handlers.create_resumable(unit_of_work(request), Origin.of_request(ctx), length, title)
    response = ok(request, await upload_resource(row), status=201)
    response.headers.update({**TUS, "Location": f"{UPLOADS}/{row.id}", "Upload-Offset": "0"})
    return response


async def get(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:read")
    row = await handlers.resumable_upload(unit_of_work(request), Origin.of_request(ctx),
                                          path_id(request, "id", "scorm_upload"))
    return ok(request, await upload_resource(row))


async def head(request: web.Request) -> web.Response:
    """The offset the server holds: where the next PATCH starts."""
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    row = await handlers.resumable_upload(unit_of_work(request), Origin.of_request(ctx),
                                          path_id(request, "id", "scorm_upload"))
    async with resumable.lock_of(row.id):  # a PATCH still writing (its client just dropped) finishes first
        data = await upload_resource(row)
    return web.Response(status=200, headers={**TUS, "Upload-Offset": str(data["offset"]),
                                             "Upload-Length": str(row.length), "Cache-Control": "no-store"})


@streams_its_body  # the body goes to disk as it arrives; the offset makes a repeat harmless (no Idempotency-Key)
async def patch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    _check_version(request)
    origin = Origin.of_request(ctx)
    upload_id = path_id(request, "id", "scorm_upload")
    row = await handlers.resumable_upload(unit_of_work(request), origin, upload_id)
    if media_type(request) != resumable.OFFSET_MEDIA_TYPE:
        raise UnsupportedMediaType(f"Send the bytes with Content-Type {resumable.OFFSET_MEDIA_TYPE} (tus 1.0.0).")
    sent = resumable.parse_offset(request.headers.get("Upload-Offset"))
    async with resumable.lock_of(row.id):
        if row.package_id is not None:
            raise OffsetMismatch(f"This upload is complete (package {row.package_id}); nothing more is taken.")
        held = await resumable.offset_of(_part(row))
        if sent != held:
            raise OffsetMismatch(f"The server holds {held} bytes of this upload; send from Upload-Offset {held}.")
        offset = await resumable.append(_part(row), request.content.iter_chunked(UPLOAD_CHUNK), held,
                                        int(row.length))
        headers = {**TUS, "Upload-Offset": str(offset)}
        if offset == row.length:
            package = await handlers.complete_resumable(unit_of_work(request), origin, row)
            headers["Location"] = f"/api/v1/learn/scorm-packages/{package.id}"
    return web.Response(status=204, headers=headers)


def setup(app: web.Application) -> None:
    app.router.add_post(UPLOADS, create)
    app.router.add_route("HEAD", UPLOADS + "/{id}", head)
    app.router.add_get(UPLOADS + "/{id}", get, allow_head=False)
    app.router.add_patch(UPLOADS + "/{id}", patch)
