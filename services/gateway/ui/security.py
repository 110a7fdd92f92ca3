"""Sessions, CSRF tokens, the sign-in limiter and the headers every admin UI response carries.

Sessions and failed sign-ins live in the gateway's database, so several gateway processes share them (ADR 0021):
a random secret in the cookie, its SHA-256 and everything else in ``ui_sessions``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.gateway import handlers
from shared.db import as_utc
from shared.uow import UnitOfWork

SESSION_COOKIE = "learn_admin_session"
LOGIN_COOKIE = "learn_admin_login"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; frame-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
# Documents the UI itself shows in a frame (certificate PDFs) may be framed by the UI, and by nothing else.
FRAMEABLE_CSP = CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # A tab the UI opens on the content origin (a SCORM preview) gets no handle on the UI's window.
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass
class Flash:
    kind: str  # "success" | "error" | "info"
    text: str


@dataclass
class Session:
    """One signed-in browser: the operator (on the platform host) or a staff member (on their tenant's host)."""

    id: str  # the secret (the cookie's value); the database holds only its SHA-256
    csrf_token: str
    expires_at: float
    tenant: str | None = None  # the tenant the pages show
    flashes: list[Flash] = field(default_factory=list)
    kind: str = "operator"  # operator | staff
    staff: dict[str, Any] | None = None  # id, email, name, role (staff sessions)
    home: str | None = None  # the staff member's tenant slug: the only one their session works for
    _saved: tuple[Any, ...] = ()

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append(Flash(kind, text))

    def take_flashes(self) -> list[Flash]:
        taken, self.flashes = self.flashes, []
        return taken

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    @property
    def role(self) -> str | None:
        return str(self.staff["role"]) if self.staff else None

    def state(self) -> tuple[Any, ...]:
        return (self.tenant, tuple((f.kind, f.text) for f in self.flashes))


class SharedSessions:
    """Sessions in the gateway's database (``ui_sessions``): every replica sees every session, and a sign-out or
    a suspension ends it everywhere at once. Absolute lifetime ``ttl``."""

    def __init__(self, db_of: Callable[[], Any], ttl: float):
        self._db_of = db_of
        self.ttl = ttl

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self._db_of())

    @staticmethod
    def _of(secret: str, row: Any, member: Any = None, tenant: Any = None) -> Session:
        session = Session(id=secret, csrf_token=row.csrf_token, expires_at=as_utc(row.expires_at).timestamp(),
                          tenant=row.current_tenant, flashes=[Flash(f["kind"], f["text"]) for f in row.flashes],
                          kind=row.kind)
        if member is not None and tenant is not None:
            session.staff = {"id": member.id, "email": member.email, "name": member.name, "role": member.role}
            session.home = tenant.slug
            session.tenant = tenant.slug
        session._saved = session.state()
        return session

    async def create_operator(self) -> Session:
        secret, row = await handlers.create_session(self._uow(), kind="operator", ttl=self.ttl)
        return self._of(secret, row)

    async def get(self, secret: str | None) -> Session | None:
        found = await handlers.session(self._uow(), secret)
        if found is None or secret is None:
            return None
        row, member, tenant = found
        return self._of(secret, row, member, tenant)

    async def save(self, session: Session) -> None:
        """Write back what a request changed (the tenant shown, the flash messages), if anything."""
        if session.state() == session._saved:
            return
        await handlers.save_session(self._uow(), session.id, {
            "current_tenant": session.tenant, "flashes": [{"kind": f.kind, "text": f.text} for f in session.flashes]})
        session._saved = session.state()

    async def delete(self, secret: str) -> None:
        await handlers.end_session(self._uow(), secret)


class SharedLimiter:
    """Failed sign-ins counted in the gateway's database (``sign_in_failures``), so every replica counts them
    together: after ``max_failures`` within ``window`` seconds a key is refused until the oldest one ages out."""

    def __init__(self, db_of: Callable[[], Any], max_failures: int, window: float, namespace: str):
        self._db_of = db_of
        self.max_failures = max_failures
        self.window = window
        self.namespace = namespace

    def fresh(self, *, max_failures: int, window: float) -> SharedLimiter:
        """Another limiter with counts of its own (tests)."""
        return SharedLimiter(self._db_of, max_failures, window, f"{self.namespace}-{secrets.token_hex(4)}")

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self._db_of())

    async def retry_after(self, key: str) -> float | None:
        return await handlers.failure_wait(self._uow(), f"{self.namespace}:{key}", self.max_failures, self.window)

    async def failed(self, key: str) -> None:
        await handlers.sign_in_failed(self._uow(), [f"{self.namespace}:{key}"], self.window)

    async def succeeded(self, key: str) -> None:
        await handlers.sign_in_succeeded(self._uow(), f"{self.namespace}:{key}")


def tokens_match(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


class LoginTokens:
    """CSRF for the sign-in form, before any session exists: a random nonce in a cookie, its HMAC in the form."""

    def __init__(self, secret: bytes):
        self._key = hashlib.sha256(b"learn-admin-ui-login\0" + secret).digest()

    def new_nonce(self) -> str:
        return secrets.token_urlsafe(24)

    def token_for(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token or len(nonce) > 64:
            return False
        return tokens_match(self.token_for(nonce), token)


def is_https(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.scheme == "https" or forwarded == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=is_https(request))


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=is_https(request))


def secure_headers(response: web.StreamResponse, *, frameable: bool = False, content_origin: str | None = None
                   ) -> None:
    """The UI's headers; ``content_origin`` (a CSP source): the one other origin a form may lead to, the content
    origin a SCORM preview opens on (form-action applies to the redirect after the form)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if frameable:
        response.headers["Content-Security-Policy"] = FRAMEABLE_CSP
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    if content_origin and response.headers["Content-Security-Policy"] in (CSP, FRAMEABLE_CSP):
        response.headers["Content-Security-Policy"] = with_content_origin(
            response.headers["Content-Security-Policy"], content_origin)
    response.headers.setdefault("Cache-Control", "no-store")


def with_content_origin(policy: str, content_origin: str | None) -> str:
    """``policy`` letting a form lead to ``content_origin`` (and nothing else: it still frames and loads nothing
    from there)."""
    if not content_origin:
        return policy
    return policy.replace("form-action 'self'", f"form-action 'self' {content_origin}")
