"""Pure rules of the directory and the request pipeline: slugs, plans, scopes, key format, token buckets; and the
directory's domain exceptions (the admin API maps them to the error envelope, ``admin.ERRORS``)."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass

from shared.domain_errors import DomainError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PLANS = ("free", "starter", "pro", "creator_plus", "sovereign")
API_PLANS = frozenset({"pro", "creator_plus", "sovereign"})
TENANT_STATUSES = ("active", "suspended")
SCOPES = ("learn:read", "learn:write", "learn:cohorts:grant")
ADMIN_SCOPE = "admin"
MAX_KEY_COURSES = 100  # a per-course key names at most this many courses (ADR 0019)
MAX_ID = 2**63 - 1

KEY_PREFIXES = ("mc_live_", "mc_test_")
KEY_BODY_BYTES = 32  # 256 bits, 43 URL-safe characters
_KEY_RE = re.compile(r"^mc_(?:live|test)_[A-Za-z0-9_-]{40,128}$")
DISPLAY_PREFIX_LEN = 12  # "mc_live_" + 4 characters: enough to tell keys apart in a list


class DirectoryError(DomainError):
    """A directory command or query refused; ``admin.ERRORS`` gives its status and error code."""


class NotFound(DirectoryError):
    """No such row; the exception names it (slug or id), the envelope's message is ``admin.ERRORS``'."""

    def __init__(self, ref: object) -> None:
        super().__init__(str(ref))


class TenantNotFound(NotFound):
    pass


class ApiKeyNotFound(NotFound):
    pass


class UserNotFound(NotFound):
    pass


class SlugTaken(DirectoryError):
    def __init__(self, slug: str):
        super().__init__(f"The slug '{slug}' is taken.")


class UnknownCreator(DirectoryError):
    def __init__(self, user_id: int):
        super().__init__(f"'created_by': no directory user {user_id} in this tenant.")


def valid_slug(slug: str) -> bool:
    return bool(SLUG_RE.match(slug))


def plan_allows_api(plan: str) -> bool:
    return plan in API_PLANS


def generate_key(mode: str = "live") -> str:
    return f"mc_{mode}_{secrets.token_urlsafe(KEY_BODY_BYTES)}"


def well_formed_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LEN]


def hash_key(pepper: bytes, key: str) -> str:
    """HMAC-SHA256 with a server secret: a stolen table alone cannot be used to test key guesses."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header, or None (absent or another scheme)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def host_slug(host: str | None, base_domain: str) -> str | None:
    """The tenant slug a ``Host`` header names (``acme.example.com`` → ``acme``), or None for any other host."""
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    suffix = "." + base_domain.lower()
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    return label if label and "." not in label else None


@dataclass
class TokenBucket:
    """Classic token bucket: ``burst`` tokens, refilled at ``rate`` per second. Time is passed in (pure)."""

    rate: float
    burst: int
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate, burst, float(burst), now)

    def take(self, now: float) -> bool:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    @property
    def remaining(self) -> int:
        return int(self.tokens)

    def seconds_until_token(self) -> int:
        """Whole seconds (≥ 1) until one request is allowed again: the ``Retry-After`` value."""
        return max(1, math.ceil((1.0 - self.tokens) / self.rate))

    def seconds_until_full(self) -> int:
        return max(0, math.ceil((self.burst - self.tokens) / self.rate))

    @property
    def window(self) -> int:
        """The policy window: how long an empty bucket takes to refill."""
        return max(1, math.ceil(self.burst / self.rate))


# --- tenant staff (ADR 0021) -----------------------------------------------------------------------------

STAFF_ROLES = ("owner", "admin", "author", "viewer")
STAFF_STATUSES = ("invited", "active", "suspended")
TEAM_ROLES = ("lead", "editor")
LINK_PURPOSES = ("invite", "reset")
SESSION_PREFIX = "lss_"  # a staff session's secret: the UI cookie's value, and a bearer token on the admin API
MIN_PASSWORD = 10
MAX_PASSWORD = 200


class StaffNotFound(NotFound):
    pass


class EmailTaken(DirectoryError):
    def __init__(self, email: str):
        super().__init__(f"'email': {email} is already on this tenant's staff.")


class LastOwner(DirectoryError):
    def __init__(self) -> None:
        super().__init__("A tenant keeps at least one active owner: make someone else owner first.")


class LinkInvalid(DirectoryError):
    def __init__(self) -> None:
        super().__init__("This link is unknown, already used or expired: ask for a new one.")


class StaffSuspended(DirectoryError):
    def __init__(self) -> None:
        super().__init__("This staff member is suspended: lift the suspension first.")


class WeakPassword(DirectoryError):
    def __init__(self) -> None:
        super().__init__(f"'password': use {MIN_PASSWORD} to {MAX_PASSWORD} characters.")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    """Links and sessions are stored by this digest: a copy of the table holds nothing usable."""
    return hashlib.sha256(value.encode()).hexdigest()


def normal_email(email: str) -> str:
    return email.strip().lower()


def valid_password(password: str) -> bool:
    return MIN_PASSWORD <= len(password) <= MAX_PASSWORD


class Passwords:
    """argon2id through argon2-cffi (its defaults: RFC 9106 low-memory profile)."""

    def __init__(self) -> None:
        from argon2 import PasswordHasher

        self._hasher = PasswordHasher()
        # Verifying against this when the account does not exist costs the same time as a real check.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, hashed: str | None, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        try:
            return self._hasher.verify(hashed or self._dummy, password) and hashed is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class Actor:
    """Who makes an admin API call: the operator (the admin token) or a staff member of one tenant."""

    kind: str  # operator | staff
    tenant_id: int | None = None
    tenant_slug: str | None = None
    staff_id: int | None = None
    role: str | None = None
    email: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


OPERATOR = Actor("operator")

#: forwarded prefixes whose writes are course content: the catalog decides team membership for authors
COURSE_PREFIXES = frozenset({"courses", "modules", "lessons", "activities"})


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


def authorize(actor: Actor, method: str, slug: str | None, rest: str) -> Refusal | None:
    """May ``actor`` call ``method`` on ``/admin/api/v1/tenants/{slug}/{rest}`` (``slug`` None: a platform
    route, ``rest`` "" : the tenant itself)? None when allowed; the rule of ADR 0021:

    - the operator: everything;
    - staff: only their own tenant (another tenant's paths are refused as if the tenant did not exist);
      reads: every role; writes: ``owner`` everything in the tenant, ``admin`` everything but the staff,
      ``author`` only course content (the catalog checks the course's team), ``viewer`` nothing.
      The tenant record itself (plan, status) and the platform routes are the operator's.
    """
    if actor.is_operator:
        return None
    if slug is None:
        return Refusal(403, "insufficient_role", "The platform routes are the operator's (the admin token).")
    if slug != actor.tenant_slug:
        return Refusal(404, "tenant_not_found", "Tenant not found.")
    if method in ("GET", "HEAD", "OPTIONS"):
        prefix = rest.split("/", 1)[0]
        if prefix == "audit-log" and actor.role not in ("owner", "admin"):
            return Refusal(403, "insufficient_role", "The audit log is for owners and admins.")
        return None
    segments = rest.split("/") if rest else []
    prefix = segments[0] if segments else ""
    role = actor.role
    if prefix == "sessions":
        return None  # signing out
    if prefix == "" or role == "viewer":
        return Refusal(403, "insufficient_role", f"A {role} cannot change this." if prefix else
                       "Only the platform operator changes a tenant's plan and status.")
    if prefix in ("staff", "sso"):
        if role == "owner":
            return None
        return Refusal(403, "insufficient_role", "Only an owner manages the staff and single sign-on.")
    if role in ("owner", "admin"):
        return None
    # an author
    if prefix in COURSE_PREFIXES:
        if segments == ["courses"]:
            return Refusal(403, "insufficient_role", "An author edits the courses whose team they are on; an owner "
                                                     "or admin creates courses.")
        if len(segments) >= 3 and segments[0] == "courses" and segments[2] == "team":
            return Refusal(403, "insufficient_role", "Only an owner or admin changes a course's team.")
        return None  # the catalog checks the course's team (not_on_course_team)
    return Refusal(403, "insufficient_role", "An author may change only the courses whose team they are on.")
