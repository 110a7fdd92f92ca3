"""Sessions, CSRF tokens, the sign-in limiter and the headers every admin UI response carries.

Sessions live in this process's memory: a random id in the cookie, everything else here (see docs/admin-ui.md for
what that means with several gateway processes).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from services.gateway.clientip import FailureLimiter

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
    id: str
    csrf_token: str
    expires_at: float
    tenant: str | None = None
    flashes: list[Flash] = field(default_factory=list)

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append(Flash(kind, text))

    def take_flashes(self) -> list[Flash]:
        taken, self.flashes = self.flashes, []
        return taken


def _digest(session_id: str) -> str:
    # The store is keyed by a hash, so that nothing in memory is a usable cookie value.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Server-side sessions with an absolute lifetime; the oldest go first when the store is full."""

    def __init__(self, ttl: float, max_sessions: int, now: Callable[[], float] = time.time):
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._now = now
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self) -> Session:
        self._purge()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = Session(id=secrets.token_urlsafe(32), csrf_token=secrets.token_urlsafe(32),
                          expires_at=self._now() + self.ttl)
        self._sessions[_digest(session.id)] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at <= self._now():
            del self._sessions[key]
            return None
        return session

    def delete(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _purge(self) -> None:
        now = self._now()
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]


# Failed sign-ins are counted per client IP (see services/gateway/clientip.py for how the IP is found behind
# trusted proxies) and, with a higher limit, for the admin account as a whole.
SignInLimiter = FailureLimiter


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
