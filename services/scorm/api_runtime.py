"""HTTP: launches (public API) and the learner runtime (token in the path, no tenant headers).

The runtime paths reach the service with the internal credential only: everything (tenant, launch, package)
comes from the signed token. They are served on the content origin (LEARN_CONTENT_URL, docs/security.md).
Pages and files carry their own headers: the player and the built-in activity page run under
``Content-Security-Policy: default-src 'self'``; pages and package files may be framed only by the content
origin and the admin origin (``frame-ancestors``); nothing that holds a token in its URL leaks it in a
``Referer`` to another site. With one content origin per tenant, the gateway names the tenant of the request's
host (``X-Learn-Content-Tenant``) and a token of another tenant is refused.
"""

from __future__ import annotations

import asyncio
import html
import mimetypes
import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.scorm import handlers
from services.scorm.api_errors import ERRORS, unit_of_work
from services.scorm.context import SCORM_KEY, STATIC_DIR, package_prefix
from services.scorm.domain import BUILTIN_PAGE, LaunchEnded, page_state
from services.scorm.runtime.body import read_runtime_body
from shared.blobstore import BlobNotFound, InvalidBlobKey, validate_key
from shared.bus.envelope import Origin
from shared.http import ApiError, context_of, ok, path_id, read_json, request_id_of, require_scope
from shared.service import DB_KEY

PositiveId = Annotated[int, Field(strict=True, gt=0, lt=2**63)]
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
CONTENT_HEADERS = {
    "Cache-Control": "private, max-age=3600",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+\.(?:js|css)")
# What Python's tables miss or get wrong for web content.
_CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
                  ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2", ".vtt": "text/vtt",
                  ".webp": "image/webp", ".mp4": "video/mp4", ".m4a": "audio/mp4", ".xml": "application/xml",
                  ".xsd": "application/xml", ".swf": "application/x-shockwave-flash", ".htm": "text/html"}


class LaunchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    activity_id: PositiveId


async def create_launch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    require_scope(ctx, "learn:write")
    enrollment_id = path_id(request, "id", "enrollment")
    body = await read_json(request, LaunchCreate)
    data = await handlers.launch(unit_of_work(request), Origin.of_request(ctx), enrollment_id, body.activity_id)
    return ok(request, data, status=201)


H_CONTENT_TENANT = "X-Learn-Content-Tenant"


def _framing(request: web.Request) -> str:
    return f"frame-ancestors 'self' {request.app[SCORM_KEY].settings.common.public_origin}"


def page_headers(request: web.Request) -> dict[str, str]:
    return {**PAGE_HEADERS, "Content-Security-Policy": f"{PAGE_HEADERS['Content-Security-Policy']}; "
                                                       f"{_framing(request)}"}


def content_headers(request: web.Request) -> dict[str, str]:
    return {**CONTENT_HEADERS, "Content-Security-Policy": _framing(request)}


async def _launch_of(request: web.Request, token: str, *, with_cmi: bool = False) -> Any:
    """The launch behind ``token``, on its own tenant's content origin (a 404 on another tenant's)."""
    row = await handlers.open_launch(unit_of_work(request), token, with_cmi=with_cmi)
    host_tenant = request.headers.get(H_CONTENT_TENANT)
    if host_tenant is not None and host_tenant != row.tenant_slug:
        raise ApiError(404, "not_found", "This launch belongs to another tenant's content origin.")
    return row


_ENDED_PAGE = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
               "<body><main><h1>{title}</h1><p>{message}</p></main></body></html>")


def ended_page(exc: LaunchEnded, headers: dict[str, str] | None = None) -> web.Response:
    """The player's answer for a token whose launch has ended: a small page, no launch state."""
    text = _ENDED_PAGE.format(title="This launch has ended", message=html.escape(exc.message))
    return web.Response(status=ERRORS[LaunchEnded].status, text=text, content_type="text/html", charset="utf-8",
                        headers=headers or PAGE_HEADERS)


async def player(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    scorm = request.app[SCORM_KEY]
    try:
        row = await _launch_of(request, token, with_cmi=True)
    except LaunchEnded as exc:  # a genuine token whose launch has ended (401s stay in the JSON envelope)
        return ended_page(exc, page_headers(request))
    # A saved snapshot may be close to 1 MiB: parse and render it off the event loop.
    html_text = await asyncio.to_thread(_render_player, scorm, row, token)
    return web.Response(text=html_text, content_type="text/html", charset="utf-8", headers=page_headers(request))


def _render_player(scorm: Any, row: Any, token: str) -> str:
    state = page_state(row, token, limits=scorm.settings.cmi_limits())
    return str(scorm.templates.get_template("player.html").render(state=state))


def content_path(raw: str) -> str:
    """The package file a content URL names: ``.`` and empty segments dropped; ``..`` and the like refused."""
    segments = [segment for segment in raw.split("/") if segment not in ("", ".")]
    if not segments or ".." in segments:
        raise ApiError(404, "not_found", "No such file in this package.")
    path = "/".join(segments)
    try:
        return validate_key(path)
    except InvalidBlobKey:
        raise ApiError(404, "not_found", "No such file in this package.") from None


def content_type_of(path: str) -> str:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


async def content(request: web.Request) -> web.StreamResponse:
    scorm = request.app[SCORM_KEY]
    db = request.app[DB_KEY]
    row = await _launch_of(request, request.match_info["token"])
    path = content_path(request.match_info["path"])
    if row.package_id is None:
        if path != BUILTIN_PAGE:
            raise ApiError(404, "not_found", "No such file in this launch.")
        html = scorm.templates.get_template("activity.html").render(title=row.title, kind=row.kind)
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=page_headers(request))
    # The key is always under this launch's own package: no path can name another package's files.
    chunks = scorm.blob_store(db).stream(f"{package_prefix(row.tenant_id, row.package_id)}/{path}")
    try:
        first = await anext(chunks)
    except BlobNotFound:
        raise ApiError(404, "not_found", "No such file in this package.") from None
    except StopAsyncIteration:
        first = b""
    response = web.StreamResponse(headers={**content_headers(request), "Content-Type": content_type_of(path)})
    try:
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the browser went away (a SCO navigating on): nothing to answer
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["path"]
    path = STATIC_DIR / name
    if not _STATIC_NAME.fullmatch(name) or not path.is_file():
        raise ApiError(404, "not_found", "No such player file.")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=300",
                                           "Content-Type": content_type_of(name),
                                           "X-Content-Type-Options": "nosniff"})


async def _runtime_write(request: web.Request, *, finish: bool) -> web.Response:
    scorm, token = request.app[SCORM_KEY], request.match_info["token"]
    scorm.tokens.verify(token)  # a bad token is refused before its body is read
    # A bare finish (no body at all) ends the launch with the snapshot already stored.
    cmi = (await read_runtime_body(request, max_elements=scorm.settings.cmi_max_elements)
           if request.can_read_body or not finish else None)
    if cmi is None and not finish:
        raise ApiError.missing("cmi")
    result = await handlers.commit(unit_of_work(request), token, cmi, finish=finish,
                                   request_id=request_id_of(request))
    return ok(request, result.as_dict())


async def commit(request: web.Request) -> web.Response:
    return await _runtime_write(request, finish=False)


async def finish(request: web.Request) -> web.Response:
    return await _runtime_write(request, finish=True)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/learn/enrollments/{id}/launches", create_launch)
    app.router.add_get("/learn/player/{token}", player)
    app.router.add_get("/learn/content/{token}/{path:.+}", content)
    app.router.add_get("/learn/static/{path:.+}", static)
    app.router.add_post("/learn/runtime/{token}/commit", commit)
    app.router.add_post("/learn/runtime/{token}/finish", finish)
