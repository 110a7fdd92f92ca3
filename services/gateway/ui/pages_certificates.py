"""Certificates: search by user, course or verification id; one certificate with its PDF, revoke and regenerate."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from services.gateway.ui import forms
from services.gateway.ui.client import AdminApiError
from services.gateway.ui.pages_courses import refusal
from services.gateway.ui.views import Problem, Ui, View
from shared.pdf_preview import first_page_png, pdftoppm

log = structlog.get_logger("gateway.ui")

FILTERS = (("user_id", "User id"), ("course_id", "Course id"))
PAGE_DPI = 72



async def search(view: View) -> web.StreamResponse:
    query = view.request.query
    asked = {name: (query.get(name) or "").strip() for name in ("user_id", "course_id", "verification_id")}
    problem: Problem | None = None
    results: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        for name, label in FILTERS:
            forms.integer(asked, name, label, minimum=1)
        vid = asked["verification_id"]
        if vid and len(vid) != 40:
            raise forms.FormError("A verification id has exactly 40 characters (the end of the verification URL).")
        reply = await view.api.get(view.tenant_api_path("certificates"),
                                   {**asked, "limit": 50, "cursor": query.get("cursor")})
        results, cursor = reply.data, reply.next_cursor
    except (forms.FormError, AdminApiError) as exc:
        problem = Problem("search", refusal(exc), asked)
    searching = any(asked.values())
    return view.render("certificates.html", status=400 if problem else 200, problem=problem, asked=asked,
                       certificates=results, next_cursor=cursor, searching=searching,
                       more_url=view.url("/admin/learn/certificates", **asked))


async def certificate_page(view: View, *, problem: Problem | None = None, status: int = 200
                           ) -> web.StreamResponse:
    certificate_id = view.path_id()
    certificate = (await view.api.get(view.tenant_api_path(f"certificates/{certificate_id}"))).data
    return view.render("certificate.html", status=status, problem=problem, certificate=certificate,
                       as_image=pdftoppm() is not None, switch_path="/admin/learn/certificates")


async def certificate_index(view: View) -> web.StreamResponse:
    return await certificate_page(view)


async def pdf(view: View) -> web.StreamResponse:
    """The certificate's PDF, for the frame on its page (the admin API's bytes, as they are)."""
    document = await view.api.document("GET", view.tenant_api_path(f"certificates/{view.path_id()}/pdf"))
    view.frameable = True
    return web.Response(body=document.body, content_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="certificate-{view.path_id()}.pdf"',
                                 "Cache-Control": "private, no-store"})


async def page_image(view: View) -> web.StreamResponse:
    """The PDF's first page as a PNG, for the certificate's page."""
    # With poppler's pdftoppm the page shows the certificate as an image (PDF viewers in frames are unreliable,
    # on phones above all); without it the page frames the PDF.
    tool = pdftoppm()
    if tool is None:
        raise web.HTTPNotFound(reason="No PDF rasteriser is installed.")
    document = await view.api.document("GET", view.tenant_api_path(f"certificates/{view.path_id()}/pdf"))
    async with view.ui.raster_gate:  # rasterising is CPU work in a child process: a couple at a time is plenty
        png = await first_page_png(document.body, dpi=PAGE_DPI, tool=tool, log=log,
                                   failure_event="admin_ui_pdf_image_failed")
    if png is None:
        raise web.HTTPBadGateway(reason="The PDF could not be turned into an image.")
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, no-store"})


async def revoke(view: View) -> web.StreamResponse:
    certificate_id = view.path_id()
    form = await view.form()
    try:
        reason = forms.required(form, "reason", "A reason")
        certificate = (await view.api.post(view.tenant_api_path(f"certificates/{certificate_id}/revoke"),
                                           {"reason": reason})).data
    except (forms.FormError, AdminApiError) as exc:
        return await certificate_page(view, problem=Problem("revoke", refusal(exc), dict(form)), status=400)
    return view.done(view.url(f"/admin/learn/certificates/{certificate_id}"),
                     f"Certificate {certificate['verification_id']} is revoked; its verification page says so.")


async def regenerate(view: View) -> web.StreamResponse:
    certificate_id = view.path_id()
    try:
        certificate = (await view.api.post(
            view.tenant_api_path(f"certificates/{certificate_id}/regenerate-pdf"))).data
    except AdminApiError as exc:
        return await certificate_page(view, problem=Problem("regenerate", refusal(exc)), status=400)
    return view.done(view.url(f"/admin/learn/certificates/{certificate_id}"),
                     f"The PDF was rebuilt (version {certificate['pdf']['version']}).")


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    base = "/admin/learn/certificates"
    router.add_get(base, ui.page(search, tenant=True))
    router.add_get(base + "/{id:[0-9]+}", ui.page(certificate_index, tenant=True))
    router.add_get(base + "/{id:[0-9]+}/pdf", ui.page(pdf, tenant=True))
    router.add_get(base + "/{id:[0-9]+}/page.png", ui.page(page_image, tenant=True))
    router.add_post(base + "/{id:[0-9]+}/revoke", ui.page(revoke, tenant=True))
    router.add_post(base + "/{id:[0-9]+}/regenerate", ui.page(regenerate, tenant=True))
