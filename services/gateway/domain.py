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
