"""Staff single sign-on on the tenant's host (ADR 0021): ``/admin/sso/start`` → the provider → ``/admin/sso/callback``.

No session exists before the callback; the flow's state, nonce and PKCE verifier are in a signed cookie that is
``SameSite=Lax`` (the provider's redirect back is a cross-site navigation, which a ``Strict`` cookie would miss)
and lives ten minutes.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from services.gateway import domain, handlers
from services.gateway.clientip import client_ip
from services.gateway.sso import FLOW_TTL, FlowCookie, OidcClient, SsoError
from services.gateway.ui.pages_directory import _signed_in
from services.gateway.ui.security import COOKIE_PATH, is_https
from services.gateway.ui.views import Ui, View
from shared.uow import UnitOfWork

log = structlog.get_logger("gateway.ui")
SSO_COOKIE = "learn_admin_sso"


async def _config(view: View) -> tuple[Any, Any]:
    slug = view.ui.host_tenant(view.request)
    if slug is None:
        raise web.HTTPNotFound(reason="Single sign-on is offered on a tenant's own address.")
    try:
        tenant, config = await handlers.sso_config(UnitOfWork(view.ui.db_of()), slug)
    except domain.TenantNotFound:
        raise web.HTTPNotFound(reason="There is no such tenant here.") from None
    if config is None:
        raise web.HTTPNotFound(reason="This tenant has no single sign-on.")
    return tenant, config


async def start(view: View) -> web.StreamResponse:
    tenant, config = await _config(view)
    request = view.request
    redirect_uri = f"{'https' if is_https(request) else 'http'}://{request.host}/admin/sso/callback"
    try:
        url, flow = await view.ui.oidc.start(config, redirect_uri, tenant.slug)
    except SsoError as exc:
        return view.error_page(502, str(exc))
    response = web.Response(status=303, headers={"Location": url})
    response.set_cookie(SSO_COOKIE, view.ui.sso_cookie.seal(flow), max_age=FLOW_TTL, path=COOKIE_PATH,
                        httponly=True, samesite="Lax", secure=is_https(request))
    return response


async def callback(view: View) -> web.StreamResponse:
    tenant, config = await _config(view)
    request = view.request
    flow = view.ui.sso_cookie.open(request.cookies.get(SSO_COOKIE))
    if (flow is None or flow.get("tenant") != tenant.slug or not request.query.get("code")
            or request.query.get("state") != flow.get("state")):
        return view.error_page(400, "The sign-in did not come back as it left: start again from the sign-in page.")
    try:
        email = await view.ui.oidc.finish(config, flow, request.query["code"])
    except SsoError as exc:
        log.warning("staff_sso_failed", tenant=tenant.slug, error=str(exc), client=client_ip(request))
        return view.error_page(401, str(exc))
    _tenant, member = await handlers.staff_for_sign_in(UnitOfWork(view.ui.db_of()), tenant.slug, email)
    if member is None or member.status != "active" or tenant.status != "active":
        log.warning("staff_sso_unknown", tenant=tenant.slug, client=client_ip(request))
        return view.error_page(403, f"{email} is not an active staff member of this tenant.")
    assert view.ui.staff_api_of is not None
    secret, _row = await view.ui.staff_api_of().session_for(tenant, member)
    log.info("staff_signed_in_sso", tenant=tenant.slug, staff_id=member.id)
    response = await _signed_in(view, secret, "/admin/learn/courses")
    response.del_cookie(SSO_COOKIE, path=COOKIE_PATH)
    return response


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    ui.oidc = OidcClient()
    ui.sso_cookie = FlowCookie(ui.admin_token.encode())
    router.add_get("/admin/sso/start", ui.page(start, signed_in=False))
    router.add_get("/admin/sso/callback", ui.page(callback, signed_in=False))
