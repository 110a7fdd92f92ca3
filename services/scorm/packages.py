"""SCORM packages: receiving an upload, the package resource, listing and reading.

An upload is streamed to a file under ``<data_dir>/scorm-uploads`` (hashing as it goes, refusing past the cap)
and recorded as a ``processing`` package; ``importer.py`` checks and extracts it in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import structlog
from aiohttp import web

from services.scorm.config import ScormSettings
from services.scorm.package_import import NOT_A_ZIP
from services.scorm.store import now, scorm_packages, scorm_scos
from shared.db import Database, TenantScope, as_utc
from shared.http import ApiError, PageRequest, RequestContext

log = structlog.get_logger("scorm.packages")

UPLOAD_CHUNK = 256 * 1024
WRITE_BUFFER = 1024 * 1024
ZIP_CONTENT_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip",
                               "application/octet-stream"})
UNTITLED = "Untitled package"
MAX_TITLE = 300


@dataclass(frozen=True)
class ReceivedUpload:
    path: Path
    bytes: int
    sha256: str


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The package is over the upload limit of {limit:,} bytes.")


async def receive_upload(request: web.Request, settings: ScormSettings) -> ReceivedUpload:
    """Stream the request body into a new file; 413 past the cap, 400 when it is plainly not a zip."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype and ctype not in ZIP_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type", "Send the package as the body with Content-Type "
                       "application/zip.")
    limit = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise payload_too_large(limit)
    directory = settings.upload_path
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.zip"
    handle: BinaryIO = await asyncio.to_thread(path.open, "xb")
    hasher = hashlib.sha256()
    size = 0
    head = b""
    buffer = bytearray()
    try:
        async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
            size += len(chunk)
            if size > limit:
                raise payload_too_large(limit)
            if len(head) < 4:
                head = (head + chunk)[:4]
                if len(head) >= 2 and not head.startswith(b"PK"):
                    raise ApiError.invalid(f"The body is not a zip file: {NOT_A_ZIP}.")
            hasher.update(chunk)
            buffer += chunk
            if len(buffer) >= WRITE_BUFFER:
                await asyncio.to_thread(handle.write, bytes(buffer))
                buffer.clear()
        if size == 0:
            raise ApiError.invalid("The body is empty: send the SCORM package zip as the request body.")
        if not head.startswith(b"PK"):
            raise ApiError.invalid(f"The body is not a zip file: {NOT_A_ZIP}.")
        if buffer:
            await asyncio.to_thread(handle.write, bytes(buffer))
        await asyncio.to_thread(handle.close)
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    return ReceivedUpload(path=path, bytes=size, sha256=hasher.hexdigest())


def title_param(request: web.Request) -> str | None:
    raw = request.query.get("title")
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_TITLE:
        raise ApiError.invalid(f"'title' must be at most {MAX_TITLE} characters.")
    return raw.strip()


async def create_package(db: Database, ctx: RequestContext, upload: ReceivedUpload, title: str | None) -> Any:
    """Record the upload as a ``processing`` package (the importer picks it up)."""
    stamp = now()
    try:
        async with db.transaction() as session:
            row = (await session.execute(TenantScope(ctx.tenant_id).insert(
                scorm_packages, tenant_slug=ctx.tenant_slug, title=title or UNTITLED,
                title_given=title is not None,
                scorm_version=None, status="processing", error=None, bytes=upload.bytes, sha256=upload.sha256,
                organization_identifier=None, warnings=[], files=None, upload_path=str(upload.path),
                lease_owner=None, lease_until=None, import_attempts=0, request_id=ctx.request_id,
                created_at=stamp, updated_at=stamp,
            ).returning(*scorm_packages.c))).one()
    except BaseException:
        with contextlib.suppress(OSError):
            upload.path.unlink()
        raise
    log.info("scorm_package_uploaded", package_id=row.id, bytes=upload.bytes, sha256=upload.sha256)
    return row


# --- reading ------------------------------------------------------------------------------------------------


def package_resource(row: Any, scos: list[Any] | None = None, *, admin: bool = False) -> dict[str, Any]:
    """The contract's SCORM package (CONTRACT §6); ``scos`` on get. Admins also see the import warnings."""
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
    }
    if scos is not None:
        data["scos"] = [sco_resource(sco) for sco in scos]
    if admin:
        data["warnings"] = list(row.warnings or [])
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


async def get_package(db: Database, ctx: RequestContext, package_id: int) -> tuple[Any, list[Any]]:
    scope = TenantScope(ctx.tenant_id)
    async with db.transaction() as session:
        row = (await session.execute(
            scope.select(scorm_packages).where(scorm_packages.c.id == package_id))).first()
        if row is None:
            raise ApiError.not_found("scorm_package")
        scos = (await session.execute(
            scope.select(scorm_scos).where(scorm_scos.c.package_id == package_id)
            .order_by(scorm_scos.c.position)
        )).all()
    return row, list(scos)


async def list_packages(db: Database, ctx: RequestContext, page: PageRequest) -> list[Any]:
    stmt = (TenantScope(ctx.tenant_id).select(scorm_packages)
            .order_by(scorm_packages.c.id.desc()).limit(page.limit + 1))
    if page.after_id is not None:
        stmt = stmt.where(scorm_packages.c.id < page.after_id)
    async with db.transaction() as session:
        return list((await session.execute(stmt)).all())

