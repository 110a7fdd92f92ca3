"""Sign-in and sign-out, tenants, API keys: the directory pages (admin API: tenants, api-keys)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import structlog
from aiohttp import web

from services.gateway import handlers
from services.gateway.clientip import client_ip
from services.gateway.domain import PLANS, SCOPES, TenantNotFound, plan_allows_api
from services.gateway.ui import forms
from services.gateway.ui.client import AdminApiError, tenant_path
from services.gateway.ui.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    set_cookie,
    tokens_match,
)
from services.gateway.ui.views import Problem, Ui, View
from shared.http import ApiError
from shared.uow import UnitOfWork

log = structlog.get_logger("gateway.ui")
ADMIN_ACCOUNT = "admin"  # the UI has one account: whoever holds the admin token

SCOPE_HELP = {
    "learn:read": "List and read courses, enrollments, attempts, certificates, templates and SCORM packages.",
    "learn:write": "Create and change courses, enroll and cancel, revoke and regenerate certificates.",
    "learn:cohorts:grant": "Grant cohort access (POST /api/v1/learn/cohorts/grant).",
}
PLAN_LABELS = {"free": "Free", "starter": "Starter", "pro": "Pro", "creator_plus": "Creator Plus",
               "sovereign": "Sovereign"}


def _safe_next(target: str | None) -> str:
    """Only this UI's own pages: never another host, never the API."""
    if (not target or not target.startswith("/admin") or target.startswith("//") or "\\" in target
            or target.startswith("/admin/api/") or target.startswith("/admin/login")):
        return "/admin"
    return target


# --- sign-in ----------------------------------------------------------------------------------------------


async def login_form(view: View) -> web.StreamResponse:
    if await view.ui.session_of(view.request) is not None:
        return view.redirect(_safe_next(view.request.query.get("next")))
    sso = False
    slug = view.ui.host_tenant(view.request)
    if slug is not None:
        try:
            sso = (await handlers.sso_config(UnitOfWork(view.ui.db_of()), slug))[1] is not None
        except TenantNotFound:
            sso = False
    return _login_page(view, sso=sso)


def _login_page(view: View, *, message: str | None = None, status: int = 200, email: str = "",
                sso: bool = False) -> web.Response:
    nonce = view.ui.login_tokens.new_nonce()
    host_tenant = view.ui.host_tenant(view.request)
    response = view.render("login.html", sso=sso, status=status, login_token=view.ui.login_tokens.token_for(nonce),
                           message=message, next=_safe_next(view.request.query.get("next")),
                           signed_out=view.request.query.get("signed_out") == "1", host_tenant=host_tenant,
                           email=email, info=view.request.query.get("info"))
    set_cookie(view.request, response, LOGIN_COOKIE, nonce, max_age=3600)
    return response


async def _limited(view: View, checks: list[tuple[Any, str, str]]) -> web.Response | None:
    for limiter, key, whom in checks:
        wait = await limiter.retry_after(key)
        if wait is not None:
            log.warning("admin_ui_sign_in_limited", client=client_ip(view.request), limit=whom)
            response = _login_page(view, status=429, message=(
                f"Too many failed sign-ins {whom}. Try again in {int(wait // 60) + 1} minutes."))
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
    return None


async def login(view: View) -> web.StreamResponse:
    """The operator signs in with the admin token on the platform host; staff with their email and password on
    their tenant's host (``<slug>.<base>/admin``, ADR 0021)."""
    ui, request = view.ui, view.request
    client = client_ip(request)  # behind a trusted proxy, the address it forwarded for
    host_tenant = ui.host_tenant(request)
    if host_tenant is not None:
        return await _staff_login(view, host_tenant)
    # Per address (a mistyping operator locks out only their own address) and for the one admin account from
    # every address together (a higher limit that bounds guessing spread over many addresses).
    limited = await _limited(view, [(ui.limiter, client, "from your address"),
                                    (ui.account_limiter, ADMIN_ACCOUNT, "for the admin account")])
    if limited is not None:
        return limited
    form = await view.form()
    if not ui.login_tokens.valid(request.cookies.get(LOGIN_COOKIE), form.get("login_token")):
        return _login_page(view, status=403, message="The sign-in form expired. Try again.")
    if not tokens_match(ui.admin_token, form.get("token", "").strip()):
        await ui.limiter.failed(client)
        await ui.account_limiter.failed(ADMIN_ACCOUNT)
        log.warning("admin_ui_sign_in_failed", client=client)
        return _login_page(view, status=401, message="That is not the admin token.")
    await ui.limiter.succeeded(client)
    session = await ui.sessions.create_operator()  # always a new id: an id planted before sign-in is worthless
    return await _signed_in(view, session.id, form.get("next"))


async def _signed_in(view: View, secret: str, next_page: str | None) -> web.Response:
    request = view.request
    previous = request.cookies.get(SESSION_COOKIE)
    if previous and previous != secret:
        await view.ui.sessions.delete(previous)
    log.info("admin_ui_signed_in", client=client_ip(request))
    response = view.redirect(_safe_next(next_page))
    set_cookie(request, response, SESSION_COOKIE, secret, max_age=int(view.ui.settings.session_ttl))
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


async def _staff_login(view: View, slug: str) -> web.StreamResponse:
    ui, request = view.ui, view.request
    form = await view.form()
    email = (form.get("email") or "").strip()
    if not ui.login_tokens.valid(request.cookies.get(LOGIN_COOKIE), form.get("login_token")):
        return _login_page(view, status=403, message="The sign-in form expired. Try again.", email=email)
    if ui.staff_api_of is None:
        return _login_page(view, status=503, message="Staff sign-in is not available here.")
    try:
        result = await ui.staff_api_of().authenticate(request, slug, email, form.get("password") or "")
    except TenantNotFound:
        return _login_page(view, status=404, message="There is no such tenant here.", email=email)
    if isinstance(result, ApiError):
        response = _login_page(view, status=result.status, message=result.message, email=email)
        if "Retry-After" in result.headers:
            response.headers["Retry-After"] = result.headers["Retry-After"]
        return response
    secret, _row, _member = result
    return await _signed_in(view, secret, form.get("next") or "/admin/learn/courses")


async def logout_form(view: View) -> web.StreamResponse:
    return view.render("logout.html")


async def logout(view: View) -> web.StreamResponse:
    assert view.session is not None
    await view.ui.sessions.delete(view.session.id)
    view.ended = view.session.id
    response = view.redirect("/admin/login?signed_out=1")
    clear_cookie(view.request, response, SESSION_COOKIE)
    return response


# --- invitations and password resets (no session: the link is the credential) --------------------------------


async def accept_form(view: View, *, message: str | None = None, status: int = 200) -> web.StreamResponse:
    token = view.request.query.get("token") or (await view.form()).get("token") or ""
    try:
        target = (await view.ui.client.for_request(view.request).post("/staff-links/lookup", {"token": token})).data
    except AdminApiError as exc:
        if exc.status >= 500:
            raise
        return view.error_page(400, exc.message)
    nonce = view.ui.login_tokens.new_nonce()
    response = view.render("accept.html", status=status, target=target, link_token=token, message=message,
                           login_token=view.ui.login_tokens.token_for(nonce))
    set_cookie(view.request, response, LOGIN_COOKIE, nonce, max_age=3600)
    return response


async def accept(view: View) -> web.StreamResponse:
    form = await view.form()
    if not view.ui.login_tokens.valid(view.request.cookies.get(LOGIN_COOKIE), form.get("login_token")):
        return await accept_form(view, message="The form expired. Try again.", status=403)
    password, again = form.get("password") or "", form.get("password_again") or ""
    if password != again:
        return await accept_form(view, message="The two passwords differ.", status=400)
    try:
        done = (await view.ui.client.for_request(view.request).post(
            "/staff-links/accept", {"token": form.get("token") or "", "password": password})).data
    except AdminApiError as exc:
        if exc.status >= 500:
            raise
        return await accept_form(view, message=exc.message, status=400)
    return view.redirect("/admin/login?" + urlencode({"info": f"Password set for {done['staff']['email']}: "
                                                               "sign in."}))


# --- tenants ----------------------------------------------------------------------------------------------


async def tenants_page(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    cursor = view.request.query.get("cursor")
    reply = await view.api.get("/tenants", {"limit": 50, "cursor": cursor})
    return view.render("tenants.html", status=status, problem=problem, tenants=reply.data,
                       next_cursor=reply.next_cursor, plans=PLANS, plan_labels=PLAN_LABELS,
                       plan_options=[(p, PLAN_LABELS[p]) for p in PLANS])


async def tenants_index(view: View) -> web.StreamResponse:
    if view.session is not None and view.session.is_staff:
        return view.redirect("/admin/learn/courses")  # staff have one tenant: its pages
    return await tenants_page(view)


async def create_tenant(view: View) -> web.StreamResponse:
    form = await view.form()
    values = {"slug": (form.get("slug") or "").strip(), "name": (form.get("name") or "").strip(),
              "plan": form.get("plan") or ""}
    try:
        body = {"slug": forms.required(form, "slug", "Slug"), "name": forms.required(form, "name", "Name"),
                "plan": forms.required(form, "plan", "Plan")}
        tenant = (await view.api.post("/tenants", body)).data
    except (forms.FormError, AdminApiError) as exc:
        if isinstance(exc, AdminApiError) and exc.status >= 500:
            raise
        return await tenants_page(view, problem=Problem("new-tenant", _message(exc), values), status=400)
    view.session.tenant = tenant["slug"]  # type: ignore[union-attr]
    return view.done("/admin#tenants", f"Tenant {tenant['slug']} created.")


async def update_tenant(view: View) -> web.StreamResponse:
    slug = view.request.match_info["slug"]
    form = await view.form()
    plan = form.get("plan")
    try:
        tenant = (await view.api.post(tenant_path(slug), {"plan": plan})).data
    except AdminApiError as exc:
        if exc.status >= 500:
            raise
        return await tenants_page(view, problem=Problem(f"tenant-{slug}", exc.message, {"plan": plan}),
                                  status=400)
    return view.done(f"/admin#tenant-{slug}",
                     f"{tenant['name']} is now on the {PLAN_LABELS.get(tenant['plan'], tenant['plan'])} plan.")


# --- API keys ---------------------------------------------------------------------------------------------


async def keys_page(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    cursor = view.request.query.get("cursor")
    reply = await view.api.get(view.tenant_api_path("api-keys"), {"limit": 50, "cursor": cursor})
    assert view.tenant is not None
    return view.render("api_keys.html", status=status, problem=problem, keys=reply.data,
                       next_cursor=reply.next_cursor, scopes=SCOPES, scope_help=SCOPE_HELP,
                       api_enabled=plan_allows_api(view.tenant["plan"]),
                       plan_label=PLAN_LABELS.get(view.tenant["plan"], view.tenant["plan"]))


async def keys_index(view: View) -> web.StreamResponse:
    return await keys_page(view)


async def create_key(view: View) -> web.StreamResponse:
    form = await view.form()
    chosen = [s for s in form.getall("scopes", []) if s in SCOPES]
    values: dict[str, Any] = {"name": (form.get("name") or "").strip(), "scopes": chosen,
                              "expires_on": form.get("expires_on") or "", "mode": form.get("mode") or "live",
                              "course_ids": (form.get("course_ids") or "").strip()}
    try:
        if not chosen:
            raise forms.FormError("Tick at least one scope.")
        body: dict[str, Any] = {"name": forms.required(form, "name", "Name"), "scopes": chosen,
                                "mode": "test" if values["mode"] == "test" else "live"}
        expires = forms.end_of_day_utc(form.get("expires_on"))
        if expires is not None:
            body["expires_at"] = expires
        if values["course_ids"]:
            body["course_ids"] = _course_ids(values["course_ids"])
        key = (await view.api.post(view.tenant_api_path("api-keys"), body)).data
    except (forms.FormError, AdminApiError) as exc:
        if isinstance(exc, AdminApiError) and exc.status >= 500:
            raise
        return await keys_page(view, problem=Problem("new-key", _message(exc), values), status=400)
    log.info("admin_ui_key_created", tenant=view.slug, key_id=key["id"])
    # Shown once, in this answer only: never stored in the session, never in a URL.
    return view.render("api_key_created.html", key=key)


def _course_ids(raw: str) -> list[int]:
    parts = raw.replace(",", " ").split()
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise forms.FormError("Courses: give course ids (whole numbers), separated by commas or spaces.")
    return [int(p) for p in parts]


async def revoke_key_form(view: View) -> web.StreamResponse:
    key = (await view.api.get(view.tenant_api_path(f"api-keys/{view.path_id()}"))).data
    return view.render("api_key_revoke.html", key=key)


async def revoke_key(view: View) -> web.StreamResponse:
    key = (await view.api.post(view.tenant_api_path(f"api-keys/{view.path_id()}/revoke"))).data
    return view.done(view.url("/admin/api-keys"), f"Key {key['name']} ({key['prefix']}…) is revoked.")


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, AdminApiError) else str(exc)


# --- routing ----------------------------------------------------------------------------------------------


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    router.add_get("/admin/login", ui.page(login_form, signed_in=False))
    router.add_post("/admin/login", ui.page(login, signed_in=False))
    router.add_get("/admin/accept", ui.page(accept_form, signed_in=False))
    router.add_post("/admin/accept", ui.page(accept, signed_in=False))
    router.add_get("/admin/logout", ui.page(logout_form))
    router.add_post("/admin/logout", ui.page(logout))
    router.add_get("/admin", ui.page(tenants_index))
    router.add_post("/admin/tenants", ui.page(create_tenant))
    router.add_post("/admin/tenants/{slug}", ui.page(update_tenant))
    router.add_get("/admin/api-keys", ui.page(keys_index, tenant=True))
    router.add_post("/admin/api-keys", ui.page(create_key, tenant=True))
    router.add_get("/admin/api-keys/{id}/revoke", ui.page(revoke_key_form, tenant=True))
    router.add_post("/admin/api-keys/{id}/revoke", ui.page(revoke_key, tenant=True))
