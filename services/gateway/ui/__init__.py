"""The admin web UI, served by the gateway under ``/admin`` (docs/admin-ui.md).

Server-rendered pages (Jinja2, autoescaped) whose forms work without JavaScript; a small script of our own adds
upload progress, live previews and status polling. Every change goes through the admin API
(``/admin/api/v1/...``) over HTTP with the admin token, so everything the UI does is also scriptable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from services.gateway.config import GatewaySettings
from services.gateway.ui import (
    pages_certificates,
    pages_cohorts,
    pages_courses,
    pages_directory,
    pages_scorm,
    pages_sso,
    pages_staff,
    pages_templates,
    pages_webhooks,
)
from services.gateway.ui.config import UiSettings
from services.gateway.ui.security import secure_headers
from services.gateway.ui.views import Ui, View

__all__ = ["UI_KEY", "setup_admin_ui"]

UI_KEY = web.AppKey("admin_ui", Ui)


def setup_admin_ui(app: web.Application, settings: GatewaySettings, ui_settings: UiSettings | None = None, *,
                   db_of: Callable[[], Any], staff_api_of: Callable[[], Any] | None = None) -> Ui:
    """Mount the UI's routes on the gateway ``app`` (none collides with ``/admin/api/v1``)."""
    ui = Ui(ui_settings or UiSettings(), settings.resolved_admin_token(), settings.max_upload_bytes,
            settings.common.content_url, db_of=db_of, base_domain=settings.common.base_domain,
            staff_api_of=staff_api_of)
    app[UI_KEY] = ui
    router = app.router
    router.add_get("/admin/static/{name}", _static(ui))
    router.add_get("/admin/", _to_home)
    pages_directory.setup(ui, router)
    pages_courses.setup(ui, router)
    pages_scorm.setup(ui, router)
    pages_templates.setup(ui, router)
    pages_certificates.setup(ui, router)
    pages_cohorts.setup(ui, router)
    pages_staff.setup(ui, router)
    pages_sso.setup(ui, router)
    pages_webhooks.setup(ui, router)
    router.add_route("*", "/admin/{tail:.*}", ui.page(_not_found, signed_in=False))

    async def client_ctx(_app: web.Application) -> AsyncIterator[None]:
        await ui.client.start()
        yield
        await ui.client.close()

    app.cleanup_ctx.append(client_ctx)
    return ui


async def _to_home(_request: web.Request) -> web.StreamResponse:
    response = web.Response(status=308, headers={"Location": "/admin"})
    secure_headers(response)
    return response


async def _not_found(view: View) -> web.StreamResponse:
    return view.error_page(404, "There is no such page.")


def _static(ui: Ui) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        asset = ui.assets.files.get(request.match_info["name"])
        if asset is None:
            response = web.Response(status=404, text="Not found.")
        else:
            body, ctype, _ = asset
            response = web.Response(body=body, content_type=ctype,
                                    headers={"Cache-Control": "public, max-age=31536000, immutable"})
        secure_headers(response)
        return response

    return serve
