"""What every admin UI page shares: the app state, the per-request view, the guard around handlers, templates.

Each handler is wrapped by :meth:`Ui.page`, which checks the session (and the CSRF token on writes), picks the
tenant, turns admin API refusals into readable pages, and adds the security headers to whatever is answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jinja2
import structlog
from aiohttp import web
from markupsafe import Markup
from multidict import MultiDict

from services.gateway.clientip import client_ip
from services.gateway.domain import host_slug
from services.gateway.ui.client import AdminApi, AdminApiError, AdminClient, tenant_path
from services.gateway.ui.config import UiSettings
from services.gateway.ui.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginTokens,
    Session,
    SharedLimiter,
    SharedSessions,
    secure_headers,
    tokens_match,
)
from shared.config import origin_of
from shared.http import positive_int

log = structlog.get_logger("gateway.ui")

HERE = Path(__file__).parent
SLUG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass
class Problem:
    """A refused form: which form (``section``), the message to show beside it, and what was typed."""

    section: str
    message: str
    values: Mapping[str, Any] = field(default_factory=dict)


class StaticAssets:
    """The UI's own CSS/JS, read once; URLs carry a content hash so browsers may cache them for good."""

    def __init__(self, directory: Path):
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for path in sorted(directory.iterdir()):
            if path.is_file():
                body = path.read_bytes()
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                self.files[path.name] = (body, ctype, hashlib.sha256(body).hexdigest()[:12])

    def url(self, name: str) -> str:
        return f"/admin/static/{name}?v={self.files[name][2]}"


def _when(value: str | None, seconds: bool = False) -> Markup:
    """An RFC 3339 timestamp as ``2026-06-02 10:00 UTC`` (``10:00:07`` with ``seconds``) in a ``<time>`` element
    (empty values as a dash)."""
    if not value:
        return Markup('<span class="muted">—</span>')
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return Markup("{}").format(value)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}">{}</time>').format(value, shown)


def _bytes(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


class Ui:
    def __init__(self, settings: UiSettings, admin_token: str, upload_limit: int, content_url: str | None = None,
                 *, db_of: Callable[[], Any], base_domain: str = "localhost",
                 staff_api_of: Callable[[], Any] | None = None):
        self.settings = settings
        # LEARN_CONTENT_URL (SCORM previews open there) and the same as a CSP source ({tenant}: a wildcard).
        self.content_url = content_url
        self.content_origin = origin_of(content_url.replace("{tenant}", "*")) if content_url else None
        self.upload_limit = upload_limit
        self.admin_token = admin_token
        # In the gateway's database: shared by every replica (ADR 0021).
        self.sessions = SharedSessions(db_of, settings.session_ttl)
        self.limiter = SharedLimiter(db_of, settings.sign_in_max_failures, settings.sign_in_window, "ui-ip")
        self.account_limiter = SharedLimiter(db_of, settings.sign_in_max_account_failures, settings.sign_in_window,
                                             "ui-account")
        self.base_domain = base_domain
        self.db_of = db_of
        self.oidc: Any = None  # services/gateway/sso.OidcClient and the flow cookie's sealer (pages_sso.setup)
        self.sso_cookie: Any = None
        self.staff_api_of = staff_api_of  # the admin API's staff sign-in (services/gateway/staff.py)
        self.login_tokens = LoginTokens(admin_token.encode())
        self.client = AdminClient(admin_token, settings.api_url, settings.api_timeout)
        self.raster_gate = asyncio.Semaphore(2)  # certificate page images (pdftoppm child processes)
        self.probes: dict[str, tuple[bool, float]] = {}  # what the admin API offers: (available, checked at)
        self.assets = StaticAssets(HERE / "static")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True,
        )
        self.env.globals["static"] = self.assets.url
        self.env.filters["when"] = _when
        self.env.filters["bytes"] = _bytes

    def render(self, template: str, context: Mapping[str, Any], status: int = 200) -> web.Response:
        html = self.env.get_template(template).render(context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def page(self, handler: Callable[[View], Awaitable[web.StreamResponse]], *, tenant: bool = False,
             signed_in: bool = True, json_errors: bool = False, multipart: bool = False
             ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap ``handler``: session (and CSRF on writes) first, then the tenant when the page needs one.

        ``multipart``: the handler reads a ``multipart/form-data`` body (files) from :attr:`View.parts`, whose first
        part, the CSRF token, the guard has already read and checked.
        """

        async def guarded(request: web.Request) -> web.StreamResponse:
            view = View(self, request)
            view.multipart = multipart
            try:
                response = await self._run(view, handler, tenant=tenant, signed_in=signed_in,
                                           json_errors=json_errors)
            except AdminApiError as exc:
                response = view.failure(exc, json_errors)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = view.error_page(exc.status, exc.reason, json_errors)
            except Exception:
                log.exception("admin_ui_error", path=request.path, method=request.method)
                response = view.error_page(500, "Something went wrong on our side; it has been logged.",
                                           json_errors)
            secure_headers(response, frameable=view.frameable, content_origin=self.content_origin)
            return response

        return guarded

    async def _run(self, view: View, handler: Callable[[View], Awaitable[web.StreamResponse]], *, tenant: bool,
                   signed_in: bool, json_errors: bool) -> web.StreamResponse:
        request = view.request
        if signed_in:
            session = await self.session_of(request)
            if session is None:
                if json_errors or request.method != "GET":
                    return view.error_page(401, "Your session has ended: sign in again.", json_errors)
                return view.redirect("/admin/login?" + urlencode({"next": request.path_qs}))
            view.session = session
            if request.method not in ("GET", "HEAD") and not await view.csrf_ok():
                log.warning("admin_ui_csrf_refused", path=request.path, client=client_ip(request))
                return view.error_page(403, "The form has expired or did not come from this site. "
                                            "Reload the page and try again.", json_errors)
        try:
            if tenant:
                picked = await view.pick_tenant()
                if picked is not None:
                    return picked
            return await handler(view)
        finally:
            if view.session is not None and view.session.id != view.ended:
                await self.sessions.save(view.session)

    def host_tenant(self, request: web.Request) -> str | None:
        """The tenant whose own host this is (``<slug>.<base>``), or None on the platform host."""
        return host_slug(request.host, self.base_domain)

    async def session_of(self, request: web.Request) -> Session | None:
        """The request's session, if it belongs on this host: a staff session only on its tenant's host, an
        operator session only on the platform host (ADR 0021)."""
        session = await self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        host = self.host_tenant(request)
        if session.is_staff:
            return session if host == session.home else None
        return session if host is None else None


class View:
    """One request's view of the UI: session, tenant, the admin API, rendering."""

    def __init__(self, ui: Ui, request: web.Request):
        self.ui = ui
        self.request = request
        self.session: Session | None = None
        self.tenant: dict[str, Any] | None = None
        self.frameable = False
        self.multipart = False
        self.parts: aiohttp.MultipartReader | None = None
        self._api: AdminApi | None = None
        self._form: MultiDict[str] | None = None
        self.ended: str | None = None  # a session signed out during this request (not to be saved again)

    # --- access ---------------------------------------------------------------------------------------------

    @property
    def api(self) -> AdminApi:
        if self._api is None:
            # A staff member's calls carry their own session (the admin API applies their role); the operator's
            # the admin token.
            token = self.session.id if self.session is not None and self.session.is_staff else None
            self._api = self.ui.client.for_request(self.request, token)
        return self._api

    @property
    def role(self) -> str | None:
        """The staff member's role (None: the operator)."""
        return self.session.role if self.session is not None else None

    @property
    def slug(self) -> str:
        assert self.tenant is not None, "a tenant page"
        return str(self.tenant["slug"])

    def path_id(self, name: str = "id") -> int:
        """The positive id in the route's ``{name}`` segment; a page that does not exist otherwise."""
        value = positive_int(self.request.match_info[name])
        if value is None:
            raise web.HTTPNotFound(reason="There is no such page.")
        return value

    def tenant_api_path(self, rest: str = "") -> str:
        return tenant_path(self.slug, rest)

    async def form(self) -> MultiDict[str]:
        """The urlencoded form of a POST (files come through :meth:`multipart_reader` instead)."""
        if self._form is None:
            posted = await self.request.post()
            self._form = MultiDict((k, v) for k, v in posted.items() if isinstance(v, str))
        return self._form

    async def multipart_reader(self) -> aiohttp.MultipartReader:
        """The parts of a multipart body still to read (after the CSRF token, when the form sent it first)."""
        if self.parts is None:
            self.parts = await self.request.multipart()
        return self.parts

    async def csrf_ok(self) -> bool:
        assert self.session is not None
        given = self.request.headers.get(CSRF_HEADER)
        ctype = self.request.content_type
        if given is None and ctype == "application/x-www-form-urlencoded":
            given = (await self.form()).get(CSRF_FIELD)
        elif given is None and ctype == "multipart/form-data" and self.multipart:
            # The form puts the token first, so that it is checked before any file byte is read.
            self.parts = await self.request.multipart()
            first = await self.parts.next()
            if isinstance(first, aiohttp.BodyPartReader) and first.name == CSRF_FIELD:
                token = bytearray()
                while len(token) <= 256 and (chunk := await first.read_chunk(256)):
                    token += chunk
                given = token.decode(errors="replace") if len(token) <= 256 else None
        return tokens_match(self.session.csrf_token, given)

    async def pick_tenant(self) -> web.StreamResponse | None:
        """The tenant of this page (``?tenant=``, else the session's last one), or the tenant picker."""
        assert self.session is not None
        slug = self.request.query.get("tenant") or self.session.tenant
        if self.request.query.get("choose"):
            slug = None
        if self.session.is_staff:
            if slug not in (None, self.session.home):
                raise web.HTTPNotFound(reason="There is no such page.")
            slug = self.session.home
        if slug and set(slug) <= SLUG_CHARS and len(slug) <= 63:
            try:
                self.tenant = (await self.api.get(tenant_path(slug))).data
            except AdminApiError as exc:
                if exc.status != 404:
                    raise
                self.session.tenant = None
                self.session.flash("error", f"There is no tenant '{slug}'. Choose one below.")
        if self.tenant is None:
            tenants = await self.api.all_pages("/tenants", most=500)
            return self.render("tenant_pick.html", tenants=tenants, status=200)
        self.session.tenant = self.slug
        return None

    # --- answers --------------------------------------------------------------------------------------------

    def url(self, path: str, **params: Any) -> str:
        """``path`` for this page's tenant (every tenant link carries it: two tabs may show two tenants)."""
        query = {k: v for k, v in params.items() if v is not None and v != ""}
        if self.tenant is not None:
            query = {"tenant": self.slug, **query}
        return path + ("?" + urlencode(query) if query else "")

    def render(self, template_name: str, /, *, status: int = 200, problem: Problem | None = None,
               **context: Any) -> web.Response:
        flashes = self.session.take_flashes() if self.session is not None else []
        base = {
            "session": self.session, "csrf_token": self.session.csrf_token if self.session else "",
            "role": self.role, "staff": self.session.staff if self.session else None,
            "tenant": self.tenant, "flashes": flashes, "problem": problem, "url": self.url,
            "path": self.request.path, "value": _value_of(problem),
        }
        return self.ui.render(template_name, {**base, **context}, status)

    def redirect(self, location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location})

    def done(self, location: str, message: str) -> web.Response:
        """Post/redirect/get: remember a success message for the next page and go there."""
        if self.session is not None:
            self.session.flash("success", message)
        return self.redirect(location)

    def error_page(self, status: int, message: str, as_json: bool = False) -> web.Response:
        if as_json:
            return web.json_response({"error": {"message": message}}, status=status)
        return self.render("error.html", status=status, status_code=status, message=message)

    def failure(self, exc: AdminApiError, as_json: bool = False) -> web.Response:
        if exc.no_such_route:
            log.warning("admin_ui_route_missing", route=exc.route)
            return self.error_page(501, f"The admin API of this installation does not offer this yet ({exc.route} "
                                        "answers “no such route”): the service that owns it is older than this UI.",
                                   as_json)
        if exc.code == "unreachable" or exc.status >= 500:
            return self.error_page(503 if exc.status < 500 else exc.status, exc.message, as_json)
        return self.error_page(exc.status, exc.message, as_json)


def _value_of(problem: Problem | None) -> Callable[..., Any]:
    """``value(section, name, default)`` in templates: what was typed into a refused form, else the default."""

    def value(section: str, name: str, default: Any = "") -> Any:
        if problem is not None and problem.section == section and name in problem.values:
            return problem.values[name]
        return default

    return value
