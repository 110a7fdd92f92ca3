"""Tenant staff on the admin API (ADR 0021): the staff routes, staff sessions as admin API credentials, and the
audit log of every write.

``StaffAccess`` is what the admin guard (``pipeline.Gateway.admin``) asks: who a staff session's bearer token is,
and what a write changed (a digest of the resource before and after, read through this gateway's own admin API
with the admin token). ``StaffApi`` holds the HTTP routes; the use cases are in ``handlers.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway import domain, handlers
from services.gateway.admin import ADMIN, _one_of, _Page, _positive, refusals
from services.gateway.clientip import client_ip
from services.gateway.mail import Mailer, MailError, staff_link_url
from services.gateway.sso import SsoConfig, sso_view
from shared.db import Database, as_utc
from shared.http import ApiError, CursorCodec, ok, read_json, request_id_of
from shared.uow import UnitOfWork

log = structlog.get_logger("gateway.staff")


class StaffInvite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    name: str = Field(min_length=1, max_length=200)
    role: str

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not domain.EMAIL_RE.match(v.strip()):
            raise ValueError("is not an email address")
        return v.strip()

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        return _one_of(v, domain.STAFF_ROLES) or v


class StaffUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: str | None = None
    status: str | None = None

    @field_validator("role")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        return _one_of(v, domain.STAFF_ROLES)

    @field_validator("status")
    @classmethod
    def _status(cls, v: str | None) -> str | None:
        return _one_of(v, ("active", "suspended"))


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    password: str = Field(max_length=domain.MAX_PASSWORD)


class LinkLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=128)


class LinkAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=128)
    password: str = Field(max_length=domain.MAX_PASSWORD)


def staff_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "email": row.email, "name": row.name, "role": row.role, "status": row.status,
            "revision": row.revision, "created_at": as_utc(row.created_at), "updated_at": as_utc(row.updated_at)}


def audit_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "actor": row.actor, "staff_id": row.staff_id, "actor_email": row.actor_email,
            "method": row.method, "path": row.path, "status": row.status, "request_id": row.request_id,
            "before_digest": row.before_digest, "after_digest": row.after_digest, "at": as_utc(row.at)}


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def resource_of(rest: str) -> str | None:
    """The resource a write changes, as a readable admin path below the tenant: ``courses/5/publish`` →
    ``courses/5``, ``lessons/7/activities`` → ``lessons/7``, ``staff/3`` → ``staff/3``; the tenant itself for
    ``""``; None for a creation in a top-level collection (``courses``: there was nothing before)."""
    segments = [s for s in rest.split("/") if s]
    if not segments:
        return ""
    last_id = max((i for i, s in enumerate(segments) if s.isdigit()), default=-1)
    if last_id < 0:
        return None
    return "/".join(segments[: last_id + 1])


class StaffAccess:
    """Who a staff bearer token is, and the audit log's before/after digests (asked by the admin guard)."""

    def __init__(self, admin_token: str, base_domain: str):
        self.db_of: Any = None  # the app's database, once the routes are set up
        self.admin_token = admin_token
        self.base_domain = base_domain
        self.http: aiohttp.ClientSession | None = None

    @property
    def uow(self) -> UnitOfWork:
        db: Database = self.db_of()
        return UnitOfWork(db)

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                                          timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    async def actor(self, token: str) -> domain.Actor | None:
        found = await handlers.session(self.uow, token)
        if found is None:
            return None
        _row, member, tenant = found
        if member is None:
            return None  # an operator's UI session is no admin API credential
        return domain.Actor("staff", tenant_id=tenant.id, tenant_slug=tenant.slug, staff_id=member.id,
                            role=member.role, email=member.email)

    async def _snapshot(self, request: web.Request, slug: str, resource: str | None) -> str | None:
        """Digest of ``GET /tenants/{slug}/{resource}`` (the admin view), or None if there is none."""
        if resource is None or self.http is None:
            return None
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if not sockname:
            return None
        host = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        url = f"http://{host}:{sockname[1]}{ADMIN}/tenants/{slug}" + (f"/{resource}" if resource else "")
        try:
            async with self.http.get(url, headers={"Authorization": f"Bearer {self.admin_token}"}) as resp:
                if resp.status != 200 or "json" not in resp.headers.get("Content-Type", ""):
                    return None
                return digest((await resp.json()).get("data"))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def audit_begin(self, request: web.Request, actor: domain.Actor, slug: str, rest: str
                          ) -> dict[str, Any]:
        resource = resource_of(rest)
        if rest.startswith("sessions"):
            resource = None
        return {"actor": actor, "slug": slug, "resource": resource, "rest": rest,
                "before": await self._snapshot(request, slug, resource)}

    async def audit_end(self, request: web.Request, audit: dict[str, Any], response: web.StreamResponse) -> None:
        after: str | None = None
        if audit["resource"] is not None and request.method != "DELETE":
            after = await self._snapshot(request, audit["slug"], audit["resource"])
        elif isinstance(response, web.Response) and isinstance(response.body, bytes | bytearray):
            try:
                after = digest(json.loads(response.body).get("data"))
            except (ValueError, AttributeError):
                after = None
        try:
            await handlers.record_audit(self.uow, audit["slug"], request_id_of(request), audit["actor"],
                                        method=request.method, path=request.path, status=response.status,
                                        before=audit["before"], after=after)
        except domain.TenantNotFound:
            return


class StaffApi:
    """``/admin/api/v1/tenants/{slug}/staff``, ``…/sessions``, ``…/audit-log`` and ``/admin/api/v1/staff-links``."""

    def __init__(self, db_of: Any, codec: CursorCodec, *, passwords: domain.Passwords, mailer: Mailer | None,
                 public_url: str, base_domain: str, link_ttl: float, session_ttl: float, max_failures: int,
                 window: float, proxies: Any):
        self._db_of = db_of
        self.codec = codec
        self.passwords = passwords
        self.mailer = mailer
        self.public_url = public_url
        self.base_domain = base_domain
        self.link_ttl = link_ttl
        self.session_ttl = session_ttl
        self.max_failures = max_failures
        self.window = window
        self.proxies = proxies

    @property
    def uow(self) -> UnitOfWork:
        db: Database = self._db_of()
        return UnitOfWork(db)

    async def _deliver(self, member: Any, slug: str, token: str, purpose: str) -> dict[str, Any]:
        """Mail the link when SMTP is configured; otherwise hand it to the caller (shown once)."""
        url = staff_link_url(self.public_url, self.base_domain, slug, token)
        expires = datetime.now(UTC) + timedelta(seconds=self.link_ttl)
        link: dict[str, Any] = {"purpose": purpose, "expires_at": expires, "mailed": False}
        if self.mailer is not None:
            subject = ("You are invited to " if purpose == "invite" else "Set a new password for ") + slug
            text = (f"Hello {member.name},\n\nOpen this link to set your password and sign in to {slug}:\n\n"
                    f"{url}\n\nIt works once and expires at {expires:%Y-%m-%d %H:%M} UTC.\n")
            try:
                await self.mailer.send(member.email, subject, text)
                link["mailed"] = True
                return link
            except MailError:
                link["mail_error"] = "The mail could not be sent; give the member this link yourself."
        link["url"] = url
        return link

    @refusals
    async def invite(self, request: web.Request) -> web.Response:
        body = await read_json(request, StaffInvite)
        owner, row, token = await handlers.invite_staff(self.uow, request.match_info["slug"], request_id_of(request),
                                                        email=body.email, name=body.name, role=body.role,
                                                        link_ttl=self.link_ttl)
        view = staff_view(row)
        view["invitation"] = await self._deliver(row, owner.slug, token, "invite")
        return ok(request, view, status=201)

    @refusals
    async def list(self, request: web.Request) -> web.Response:
        page = _Page(request, self.codec, "staff")
        rows = await handlers.list_staff(self.uow, request.match_info["slug"], page)
        cursor = page.cursor(rows, id_of=lambda r: r.id)
        return ok(request, [staff_view(r) for r in rows], cursor)

    @refusals
    async def get(self, request: web.Request) -> web.Response:
        staff_id = _positive(request.match_info["id"], "staff")
        return ok(request, staff_view(await handlers.staff_member(self.uow, request.match_info["slug"], staff_id)))

    @refusals
    async def update(self, request: web.Request) -> web.Response:
        staff_id = _positive(request.match_info["id"], "staff")
        body = await read_json(request, StaffUpdate)
        changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
        if "name" in changes:
            changes["name"] = changes["name"].strip()
        row = await handlers.update_staff(self.uow, request.match_info["slug"], request_id_of(request), staff_id,
                                          changes)
        return ok(request, staff_view(row))

    @refusals
    async def reset_password(self, request: web.Request) -> web.Response:
        staff_id = _positive(request.match_info["id"], "staff")
        owner, row, token = await handlers.reset_link(self.uow, request.match_info["slug"], staff_id, self.link_ttl)
        view = staff_view(row)
        view["link"] = await self._deliver(row, owner.slug, token, "invite" if row.password_hash is None else "reset")
        return ok(request, view)

    @refusals
    async def audit_log(self, request: web.Request) -> web.Response:
        page = _Page(request, self.codec, "audit")
        rows = await handlers.list_audit(self.uow, request.match_info["slug"], page)
        cursor = page.cursor(rows, id_of=lambda r: r.id)
        return ok(request, [audit_view(r) for r in rows], cursor)

    # --- single sign-on configuration (owners) --------------------------------------------------------------

    @refusals
    async def get_sso(self, request: web.Request) -> web.Response:
        _tenant, row = await handlers.sso_config(self.uow, request.match_info["slug"])
        return ok(request, {"sso": sso_view(row)})

    @refusals
    async def put_sso(self, request: web.Request) -> web.Response:
        body = await read_json(request, SsoConfig)
        _tenant, row = await handlers.set_sso(self.uow, request.match_info["slug"], body.issuer, body.client_id,
                                              body.client_secret)
        return ok(request, {"sso": sso_view(row)})

    @refusals
    async def delete_sso(self, request: web.Request) -> web.Response:
        _tenant, row = await handlers.set_sso(self.uow, request.match_info["slug"], None, None, None)
        return ok(request, {"sso": sso_view(row)})

    # --- sign-in (no credential: these routes are the way to get one) -------------------------------------

    @refusals
    async def sign_in(self, request: web.Request) -> web.Response:
        """``{email, password}`` → a staff session ``{token, expires_at, staff}``; the token is a bearer credential
        of the admin API (and the UI's cookie). Failures are limited per account and per client address, in the
        database (every replica counts them together)."""
        slug = request.match_info["slug"]
        body = await read_json(request, SignIn)
        result = await self.authenticate(request, slug, body.email, body.password)
        if isinstance(result, ApiError):
            raise result
        token, row, member = result
        return ok(request, {"token": token, "expires_at": as_utc(row.expires_at), "csrf_token": row.csrf_token,
                            "staff": staff_view(member)}, status=201)

    async def session_for(self, tenant: Any, member: Any) -> tuple[str, Any]:
        return await handlers.create_session(self.uow, kind="staff", ttl=self.session_ttl, tenant_id=tenant.id,
                                             staff_id=member.id, current_tenant=tenant.slug)

    async def authenticate(self, request: web.Request, slug: str, email: str, password: str
                           ) -> tuple[str, Any, Any] | ApiError:
        host = domain.host_slug(request.host, self.base_domain)
        if host is not None and host != slug:
            return ApiError(404, "tenant_not_found", "Tenant not found.")
        email = domain.normal_email(email)
        address = self.proxies.client_ip(request) if self.proxies else client_ip(request)
        keys = [f"staff:{slug}:{email}", f"ip:{address}"]
        for key in keys:
            wait = await handlers.failure_wait(self.uow, key, self.max_failures, self.window)
            if wait is not None:
                retry = str(int(wait) + 1)
                return ApiError(429, "rate_limited", f"Too many failed sign-ins; retry in {retry} s.",
                                {"Retry-After": retry})
        tenant, member = await handlers.staff_for_sign_in(self.uow, slug, email)
        good = await asyncio.to_thread(self.passwords.verify, member.password_hash if member else None, password)
        if not good or member is None or member.status != "active" or tenant.status != "active":
            await handlers.sign_in_failed(self.uow, keys, self.window)
            log.warning("staff_sign_in_failed", tenant=slug)
            return ApiError(401, "invalid_credentials", "Wrong email or password (or the account is not active).")
        await handlers.sign_in_succeeded(self.uow, keys[0])
        token, row = await handlers.create_session(self.uow, kind="staff", ttl=self.session_ttl,
                                                   tenant_id=tenant.id, staff_id=member.id,
                                                   current_tenant=tenant.slug)
        log.info("staff_signed_in", tenant=slug, staff_id=member.id)
        return token, row, member

    async def sign_out(self, request: web.Request) -> web.Response:
        token = domain.bearer_token(request.headers.get("Authorization")) or ""
        if token.startswith(domain.SESSION_PREFIX):
            await handlers.end_session(self.uow, token)
        return ok(request, {"signed_out": True})

    @refusals
    async def link_lookup(self, request: web.Request) -> web.Response:
        body = await read_json(request, LinkLookup)
        tenant, member, purpose = await handlers.link_target(self.uow, body.token)
        return ok(request, {"tenant": tenant.slug, "tenant_name": tenant.name, "email": member.email,
                            "name": member.name, "purpose": purpose})

    @refusals
    async def link_accept(self, request: web.Request) -> web.Response:
        body = await read_json(request, LinkAccept)
        if not domain.valid_password(body.password):
            raise domain.WeakPassword()
        hashed = await asyncio.to_thread(self.passwords.hash, body.password)
        tenant, member = await handlers.use_link(self.uow, body.token, hashed, request_id_of(request))
        return ok(request, {"tenant": tenant.slug, "staff": staff_view(member)})


def setup(app: web.Application, gateway: Any, api: StaffApi, idempotency: Any, scope: Any) -> None:
    r = app.router
    t = f"{ADMIN}/tenants/{{slug}}"
    routes = [
        ("GET", t + "/staff", api.list),
        ("POST", t + "/staff", api.invite),
        ("GET", t + "/staff/{id}", api.get),
        ("POST", t + "/staff/{id}", api.update),
        ("POST", t + "/staff/{id}/reset-password", api.reset_password),
        ("GET", t + "/audit-log", api.audit_log),
        ("GET", t + "/sso", api.get_sso),
        ("PUT", t + "/sso", api.put_sso),
        ("DELETE", t + "/sso", api.delete_sso),
        ("DELETE", t + "/sessions/current", api.sign_out),
    ]
    for method, path, handler in routes:
        r.add_route(method, path, gateway.admin(path, idempotency.guard(handler, scope)))
    for method, path, handler in [("POST", t + "/sessions", api.sign_in),
                                  ("POST", f"{ADMIN}/staff-links/lookup", api.link_lookup),
                                  ("POST", f"{ADMIN}/staff-links/accept", api.link_accept)]:
        r.add_route(method, path, gateway.admin(path, handler, public=True))
