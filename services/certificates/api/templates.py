"""HTTP handlers for certificate templates: public reads, admin writes and the admin UI's live preview.

Admin bodies are JSON with ``logo`` (PNG) and ``background_pdf`` (one page) as base64. Responses describe the
two assets (content type, size, SHA-256) instead of echoing megabytes of base64.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from services.certificates import handlers
from services.certificates.api.common import ADMIN, API, origin_of, public_url, uow_of
from services.certificates.api.views import template_resource
from services.certificates.domain import verification_url
from services.certificates.pdf.assets import (
    TemplateAssetError,
    validate_background_pdf,
    validate_color,
    validate_logo,
)
from services.certificates.pdf.spec import CertificateData
from shared.http import (
    ApiError,
    context_of,
    next_cursor,
    ok,
    page_request,
    path_id,
    read_json,
    request_id_of,
    require_all_courses,
    require_scope,
)
from shared.pdf_preview import first_page_png
from shared.service import CURSOR_KEY

log = structlog.get_logger("certificates.api.templates")

_NOT_NULL = ("name", "is_default", "orientation", "page_size", "title_text", "body_text", "primary_color",
             "accent_color")
_NOT_BLANK = ("name", "title_text")
_DATA_URI = {"logo": "data:image/png;base64,", "background_pdf": "data:application/pdf;base64,"}


class TemplateUpdate(BaseModel):
    """Every field of a template; on update an omitted field keeps its value and ``null`` clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    is_default: StrictBool | None = None
    orientation: Literal["landscape", "portrait"] | None = None
    page_size: Literal["A4", "Letter"] | None = None
    title_text: str | None = Field(default=None, max_length=200)
    body_text: str | None = Field(default=None, max_length=2000)
    primary_color: str | None = None
    accent_color: str | None = None
    logo: str | None = Field(default=None, description="PNG, base64, at most 1 MiB decoded")
    background_pdf: str | None = Field(default=None, description="one-page PDF, base64")
    signatory_name: str | None = Field(default=None, max_length=200)
    signatory_title: str | None = Field(default=None, max_length=200)


class TemplateCreate(TemplateUpdate):
    name: str = Field(max_length=200)


class TemplatePreview(TemplateUpdate):
    template_id: int | None = Field(default=None, strict=True, gt=0, lt=2**63,
                                    description="start from this template's values; posted fields win")


def _decode(field: str, text: str) -> bytes:
    text = text.strip()
    text = text.removeprefix(_DATA_URI[field])
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError.invalid(f"'{field}' must be base64.") from None
    if not data:
        raise ApiError.invalid(f"'{field}' is empty.")
    return data


async def _validated_fields(body: TemplateUpdate) -> dict[str, Any]:
    """The posted fields as column values: nulls checked, strings trimmed, colours and assets validated."""
    fields: dict[str, Any] = {}
    for name in body.model_fields_set & set(TemplateUpdate.model_fields):
        value = getattr(body, name)
        if isinstance(value, str):
            value = value.strip()
        if (value is None and name in _NOT_NULL) or (name in _NOT_BLANK and value == ""):
            raise ApiError.missing(name)
        if name in ("signatory_name", "signatory_title") and value == "":
            value = None
        fields[name] = value
    for name in ("primary_color", "accent_color"):
        if name in fields:
            try:
                validate_color(fields[name])
            except TemplateAssetError as exc:
                raise ApiError.invalid(f"'{name}': {exc}.") from None
    for name, check in (("logo", validate_logo), ("background_pdf", validate_background_pdf)):
        if fields.get(name) is not None:
            data = _decode(name, fields[name])
            try:
                # Decoding an image or parsing a PDF is CPU work: keep the event loop free.
                await asyncio.to_thread(check, data)
            except TemplateAssetError as exc:
                raise ApiError.invalid(f"'{name}': {exc}.") from None
            fields[name] = data
    return fields


async def list_templates(request: web.Request, scope: str = "learn:read") -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    require_all_courses(ctx, "read certificate templates")  # tenant-wide, not one course's (ADR 0019)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "cert-templates", ctx.tenant_id, {})
    rows = await handlers.list_templates(uow_of(request), ctx.tenant_id, page.after_id, page.limit + 1)
    cursor = next_cursor(codec, rows, page, "cert-templates", ctx.tenant_id, {}, id_of=lambda r: r.id)
    return ok(request, [template_resource(r) for r in rows], next_cursor=cursor)


async def admin_list_templates(request: web.Request) -> web.Response:
    return await list_templates(request, "admin")


async def get_template(request: web.Request, scope: str = "learn:read") -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, scope)
    require_all_courses(ctx, "read certificate templates")
    row = await handlers.get_template(uow_of(request), ctx.tenant_id, path_id(request, "id", "template"))
    return ok(request, template_resource(row))


async def admin_get_template(request: web.Request) -> web.Response:
    return await get_template(request, "admin")


async def create_template(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    fields = await _validated_fields(await read_json(request, TemplateCreate))
    row = await handlers.create_template(uow_of(request), origin_of(ctx), fields, tenant_name=ctx.tenant_name)
    return ok(request, template_resource(row), status=201)


async def update_template(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "admin")
    template_id = path_id(request, "id", "template")
    fields = await _validated_fields(await read_json(request, TemplateUpdate))
    row = await handlers.update_template(uow_of(request), origin_of(ctx), template_id, fields,
                                         tenant_name=ctx.tenant_name)
    return ok(request, template_resource(row))


async def regeneration_progress(request: web.Request) -> web.Response:
    """How many of the template's live (non-revoked) certificates already show its current version."""
    ctx = context_of(request)
    require_scope(ctx, "admin")
    template_id = path_id(request, "id", "template")
    return ok(request, await handlers.regeneration_progress(uow_of(request), ctx.tenant_id, template_id))


# --- preview -----------------------------------------------------------------------------------------------

_SAMPLE_VID = "PREVIEW0PREVIEW0PREVIEW0PREVIEW0PREVIEW0"
_PREVIEW_DPI = 60


def _sample_certificate(public_url: str) -> CertificateData:
    issued = datetime.now(UTC).replace(microsecond=0)
    return CertificateData(
        recipient_name="Zoë Łukasiewicz-Ångström", course_title="Sample Course: Getting Started",
        credit_hours=Decimal("2.5"), credit_kind="CEU", issued_at=issued, expires_at=issued + timedelta(days=730),
        verification_id=_SAMPLE_VID, verification_url=verification_url(public_url, _SAMPLE_VID),
    )


async def preview_template(request: web.Request) -> web.Response:
    """Render a sample certificate with the posted fields (over ``template_id``'s, over the defaults)."""
    ctx = context_of(request)
    require_scope(ctx, "admin")
    wanted = request.query.get("format", "png")
    if wanted not in ("png", "pdf"):
        raise ApiError.invalid("'format' must be png or pdf.")
    body = await read_json(request, TemplatePreview)
    fields = await _validated_fields(body)
    pdf = await handlers.preview_template(uow_of(request), ctx.tenant_id, body.template_id, fields,
                                          ctx.tenant_name, _sample_certificate(public_url(request)))
    headers = {"X-Request-Id": request_id_of(request), "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff"}
    png = (await first_page_png(pdf, dpi=_PREVIEW_DPI, log=log, failure_event="preview_png_failed")
           if wanted == "png" else None)
    if png is not None:
        return web.Response(body=png, content_type="image/png", headers=headers)
    return web.Response(body=pdf, content_type="application/pdf",
                        headers={**headers, "Content-Disposition": 'inline; filename="preview.pdf"'})


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get(API + "/cert-templates", list_templates)
    router.add_get(API + "/cert-templates/{id}", get_template)
    router.add_get(ADMIN + "/cert-templates", admin_list_templates)
    router.add_post(ADMIN + "/cert-templates", create_template)
    router.add_post(ADMIN + "/cert-templates/preview", preview_template)
    router.add_get(ADMIN + "/cert-templates/{id}", admin_get_template)
    router.add_post(ADMIN + "/cert-templates/{id}", update_template)
    router.add_get(ADMIN + "/cert-templates/{id}/regeneration", regeneration_progress)
