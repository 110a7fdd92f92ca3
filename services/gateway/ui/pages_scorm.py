"""SCORM packages: upload (streamed, with progress), the package page with its SCO tree, and the preview.

The zip never sits in the gateway's memory: the browser's body (a raw XHR body, or the file part of the no-script
multipart form) is streamed chunk by chunk into the admin API ``POST .../scorm-packages``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from services.gateway.ui.client import AdminApiError
from services.gateway.ui.pages_courses import refusal
from services.gateway.ui.views import Problem, Ui, View

log = structlog.get_logger("gateway.ui")

CHUNK = 64 * 1024
MAX_TITLE = 300
PROBE_TTL = 60.0



def sco_tree(scos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SCOs nested under their parent SCO (a parent that is not a SCO itself leaves its children at the top)."""
    known = {s["identifier"] for s in scos}
    nodes = {s["identifier"]: {**s, "children": []} for s in scos}
    roots: list[dict[str, Any]] = []
    for sco in sorted(scos, key=lambda s: s["position"]):
        parent = sco.get("parent_identifier")
        if parent in known and parent != sco["identifier"]:
            nodes[parent]["children"].append(nodes[sco["identifier"]])
        else:
            roots.append(nodes[sco["identifier"]])
    return roots


# --- pages ------------------------------------------------------------------------------------------------


async def packages_index(view: View) -> web.StreamResponse:
    reply = await view.api.get(view.tenant_api_path("scorm-packages"),
                               {"limit": 50, "cursor": view.request.query.get("cursor")})
    return view.render("scorm_list.html", packages=reply.data, next_cursor=reply.next_cursor)


async def upload_form(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    return view.render("scorm_new.html", status=status, problem=problem, upload_limit=view.ui.upload_limit)


async def upload_page(view: View) -> web.StreamResponse:
    return await upload_form(view)


async def preview_available(view: View) -> bool:
    """Whether the SCORM service offers preview launches (asked once a minute: an unknown package id answers
    ``scorm_package_not_found`` where the route exists and ``not_found`` where it does not)."""
    known = view.ui.probes.get("scorm_preview")
    now = time.monotonic()
    if known is not None and now - known[1] < PROBE_TTL:
        return known[0]
    try:
        await view.api.post(view.tenant_api_path("scorm-packages/0/preview"))
        available = True
    except AdminApiError as exc:
        if exc.status >= 500:
            return False  # unknown for now: ask again next time
        available = not exc.no_such_route
    view.ui.probes["scorm_preview"] = (available, now)
    return available


async def package_page(view: View) -> web.StreamResponse:
    package = (await view.api.get(view.tenant_api_path(f"scorm-packages/{view.path_id()}"))).data
    can_preview = package["status"] == "ready" and await preview_available(view)
    return view.render("scorm_package.html", package=package, tree=sco_tree(package.get("scos") or []),
                       assets=sorted(package.get("assets") or [], key=lambda s: s["position"]),
                       can_preview=can_preview, switch_path="/admin/learn/scorm")


async def package_status(view: View) -> web.StreamResponse:
    package = (await view.api.get(view.tenant_api_path(f"scorm-packages/{view.path_id()}"))).data
    return web.json_response({"status": package["status"]})


# --- upload -----------------------------------------------------------------------------------------------


async def _send_zip(view: View, chunks: AsyncIterator[bytes], title: str | None) -> dict[str, Any]:
    reply = await view.api.call("POST", view.tenant_api_path("scorm-packages"), data=chunks,
                                content_type="application/zip", params={"title": title})
    package: dict[str, Any] = reply.data
    log.info("admin_ui_scorm_uploaded", tenant=view.slug, package_id=package["id"])
    return package


async def upload_stream(view: View) -> web.StreamResponse:
    """The script's upload: the raw zip as the body (CSRF token in a header), answered in JSON."""
    title = (view.request.query.get("title") or "").strip()[:MAX_TITLE] or None

    async def body() -> AsyncIterator[bytes]:
        async for chunk in view.request.content.iter_chunked(CHUNK):
            yield chunk

    try:
        package = await _send_zip(view, body(), title)
    except AdminApiError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}},
                                 status=exc.status if exc.status >= 400 else 502)
    location = view.url(f"/admin/learn/scorm/{package['id']}")
    return web.json_response({"id": package["id"], "status": package["status"], "location": location},
                             status=201)


async def upload_multipart(view: View) -> web.StreamResponse:
    """The no-script form: ``csrf_token`` (checked by the guard), ``title``, then ``file`` (streamed on)."""
    reader = await view.multipart_reader()
    title: str | None = None
    while True:
        part = await reader.next()
        if part is None:
            return await upload_form(view, status=400, problem=Problem("upload", "Choose a SCORM zip file."))
        if not isinstance(part, aiohttp.BodyPartReader):
            continue
        if part.name == "title":
            title = (await part.text()).strip()[:MAX_TITLE] or None
        elif part.name == "file":
            break
    if not part.filename:
        return await upload_form(view, status=400, problem=Problem("upload", "Choose a SCORM zip file."))

    async def body() -> AsyncIterator[bytes]:
        while chunk := await part.read_chunk(CHUNK):
            yield chunk

    try:
        package = await _send_zip(view, body(), title)
    except AdminApiError as exc:
        return await upload_form(view, status=400, problem=Problem("upload", refusal(exc), {"title": title or ""}))
    return view.done(view.url(f"/admin/learn/scorm/{package['id']}"), "Package uploaded.")


async def preview(view: View) -> web.StreamResponse:
    """Open the player on one SCO (the SCORM service issues a short-lived preview launch) on the content origin:
    the package's JavaScript never runs on this origin (docs/security.md)."""
    package_id = view.path_id()
    sco = (await view.form()).get("sco_identifier") or None
    launch = (await view.api.post(view.tenant_api_path(f"scorm-packages/{package_id}/preview"),
                                  {"sco_identifier": sco} if sco else {})).data
    launch_url = str(launch.get("launch_url") or "")
    content_base = (view.ui.content_url or "").replace("{tenant}", view.slug).rstrip("/")
    if not content_base or not launch_url.startswith(content_base + "/learn/player/"):
        log.warning("admin_ui_preview_off_origin", tenant=view.slug, package_id=package_id)
        return view.error_page(502, "The SCORM service gave no player address on the content origin for the "
                                    "preview.")
    return view.redirect(launch_url)


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    base = "/admin/learn/scorm"
    router.add_get(base, ui.page(packages_index, tenant=True))
    router.add_get(base + "/new", ui.page(upload_page, tenant=True))
    router.add_post(base + "/new", ui.page(upload_multipart, tenant=True, multipart=True))
    router.add_post(base + "/upload", ui.page(upload_stream, tenant=True, json_errors=True))
    router.add_get(base + "/{id:[0-9]+}", ui.page(package_page, tenant=True))
    router.add_get(base + "/{id:[0-9]+}/status", ui.page(package_status, tenant=True, json_errors=True))
    router.add_post(base + "/{id:[0-9]+}/preview", ui.page(preview, tenant=True))
