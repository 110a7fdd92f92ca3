"""HTTP handlers for certificates: ``/api/v1/learn/certificates...`` and the same under ``/admin/v1/certificates``
(scope ``admin``, plus a search by verification id or template)."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.certificates import handlers
from services.certificates.api.common import ADMIN, API, origin_of, public_url, uow_of
from services.certificates.api.views import certificate_resource
from services.certificates.domain import is_verification_id
from services.certificates.store import PDF_CONTENT_TYPE
from shared.http import (
    H_REQUEST_ID,
    ApiError,
    RequestContext,
    context_of,
    int_param,
    next_cursor,
    ok,
    page_request,
    path_id,
    read_json,
    request_id_of,
    require_scope,
)
from shared.service import CURSOR_KEY


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=1000)


def _resource(request: web.Request, row: Any) -> dict[str, Any]:
    return certificate_resource(row, public_url(request))


async def _list(request: web.Request, ctx: RequestContext, list_name: str, filters: dict[str, Any]) -> web.Response:
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, list_name, ctx.tenant_id, filters)
    rows = await handlers.list_certificates(uow_of(request), ctx.tenant_id, filters, page.after_id, page.limit + 1,
                                            course_ids=ctx.course_ids)
    cursor = next_cursor(codec, rows, page, list_name, ctx.tenant_id, filters, id_of=lambda r: r.id)
    return ok(request, [_resource(request, r) for r in rows], next_cursor=cursor)


async def list_certificates(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:read")
    filters = {"user_id": int_param(request, "user_id"), "course_id": int_param(request, "course_id")}
    return await _list(request, ctx, "certificates", filters)


async def admin_list_certificates(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    vid = request.query.get("verification_id") or None
    if vid is not None and not is_verification_id(vid):
        raise ApiError.invalid("'verification_id' must be the 40-character verification id.")
    filters = {"user_id": int_param(request, "user_id"), "course_id": int_param(request, "course_id"),
               "template_id": int_param(request, "template_id"), "verification_id": vid}
    return await _list(request, ctx, "admin-certificates", filters)


async def get_certificate(request: web.Request, scope: str = "learn:read") -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    certificate_id = path_id(request, "id", "certificate")
    row = await handlers.get_certificate(uow_of(request), ctx.tenant_id, certificate_id,
                                         course_ids=ctx.course_ids)
    return ok(request, _resource(request, row))


async def verify_certificate(request: web.Request) -> web.Response:
    """By verification id, within the caller's tenant (another tenant's vid answers like an unknown one)."""
    ctx = context_of(request)
    require_scope(ctx, "learn:read")
    row = await handlers.find_certificate(uow_of(request), ctx.tenant_id, request.match_info["vid"],
                                          course_ids=ctx.course_ids)
    return ok(request, _resource(request, row))


async def revoke_certificate(request: web.Request, scope: str = "learn:write") -> web.Response:
    """Revoke (or regenerate, below): render and write in one transaction, so it happens whole or not at all; a
    render that cannot happen just now answers ``503 service_unavailable`` with ``Retry-After``."""
    ctx = context_of(request)
    require_scope(ctx, scope)
    certificate_id = path_id(request, "id", "certificate")
    body = await read_json(request, RevokeRequest)
    row = await handlers.revoke_certificate(uow_of(request), origin_of(ctx), certificate_id, body.reason.strip(),
                                            tenant_name=ctx.tenant_name)
    return ok(request, _resource(request, row))


async def regenerate_pdf(request: web.Request, scope: str = "learn:write") -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    certificate_id = path_id(request, "id", "certificate")
    row = await handlers.regenerate_certificate_pdf(uow_of(request), origin_of(ctx), certificate_id,
                                                    tenant_name=ctx.tenant_name)
    return ok(request, _resource(request, row))


def _filename(row: Any) -> str:
    """``certificate-42.pdf`` for every client, and a readable UTF-8 name for those that understand RFC 6266."""
    readable = f"{row.course_title} - {row.recipient_name}".replace("/", "-").replace("\\", "-")[:150]
    return (f'attachment; filename="certificate-{row.id}.pdf"; '
            f"filename*=UTF-8''{quote(readable + '.pdf', safe='')}")


async def download_pdf(request: web.Request, scope: str = "learn:read") -> web.StreamResponse:
    ctx = context_of(request)
    require_scope(ctx, scope)
    certificate_id = path_id(request, "id", "certificate")
    row, chunks = await handlers.certificate_pdf(uow_of(request), ctx.tenant_id, certificate_id,
                                                  course_ids=ctx.course_ids)
    etag = f'"{row.pdf_sha256}"'
    headers = {H_REQUEST_ID: request_id_of(request), "ETag": etag, "Cache-Control": "private, no-cache",
               "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    first = await anext(aiter(chunks))  # a missing blob fails here, before any byte is sent
    response = web.StreamResponse(headers={**headers, "Content-Disposition": _filename(row)})
    response.content_type = PDF_CONTENT_TYPE
    response.content_length = row.pdf_bytes
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get(API + "/certificates", list_certificates)
    router.add_get(API + "/certificates/verify/{vid}", verify_certificate)
    router.add_get(API + "/certificates/{id}", get_certificate)
    router.add_post(API + "/certificates/{id}/revoke", revoke_certificate)
    router.add_post(API + "/certificates/{id}/regenerate-pdf", regenerate_pdf)
    router.add_get(API + "/certificates/{id}/pdf", download_pdf)
    # The admin API (the admin UI, learnctl) reaches the same certificates with the scope ``admin``.
    router.add_get(ADMIN + "/certificates", admin_list_certificates)
    router.add_get(ADMIN + "/certificates/{id}", partial(get_certificate, scope="admin"))
    router.add_get(ADMIN + "/certificates/{id}/pdf", partial(download_pdf, scope="admin"))
    router.add_post(ADMIN + "/certificates/{id}/revoke", partial(revoke_certificate, scope="admin"))
    router.add_post(ADMIN + "/certificates/{id}/regenerate-pdf", partial(regenerate_pdf, scope="admin"))
