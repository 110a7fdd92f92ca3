"""Pure rules of the directory and the request pipeline, with no I/O of their own: slugs, plans, scopes, key
format, token buckets, route matching, the read-your-writes bookkeeping and failure limits; and the directory's
domain exceptions (the admin API maps them to the error envelope, ``admin.ERRORS``).

The request pipeline's files (docs/architecture.md): ``pipeline.py`` (the steps, in order) uses ``keys.py`` (who
is calling, how fast) and ``proxy.py`` (forwarding), which use this module and ``store.py``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote

from shared.consistency import H_AFTER, H_TOKEN, MAX_AFTER_IDS, consuming_queues, parse_pairs
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


# --- route matching (the route table's entries are data in routes.py) ------------------------------------


class Routed(Protocol):
    """What the matcher needs of a route (``routes.Route``)."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...  # pattern: ``{name}`` is one segment, ``{name+}`` the rest (one or more segments)


R = TypeVar("R", bound=Routed)


@dataclass
class _Node(Generic[R]):
    static: dict[str, _Node[R]] = field(default_factory=dict)
    param: _Node[R] | None = None
    tail: _Node[R] | None = None  # ``{name+}``: the rest of the path
    methods: dict[str, R] = field(default_factory=dict)


@dataclass(frozen=True)
class Match(Generic[R]):
    """A path found in the table: the routes by method (a missing method is a 405)."""

    methods: dict[str, R]

    @property
    def allow(self) -> str:
        return ", ".join(sorted(self.methods))


class RouteTable(Generic[R]):
    """A segment trie: matching costs one dict lookup per path segment, whatever the size of the table."""

    def __init__(self, routes: tuple[R, ...]):
        self.routes = routes
        self._root: _Node[R] = _Node()
        for route in routes:
            node = self._root
            for seg in _segments(route.path):
                if seg.endswith("+}"):
                    node.tail = node.tail or _Node()
                    node = node.tail
                    break
                if seg.startswith("{"):
                    node.param = node.param or _Node()
                    node = node.param
                else:
                    node = node.static.setdefault(seg, _Node())
            if route.method in node.methods:
                raise ValueError(f"duplicate route {route.method} {route.path}")
            node.methods[route.method] = route

    def match(self, raw_path: str) -> Match[R] | None:
        """Match the raw (still percent-encoded) path; dot segments and encoded slashes never match."""
        segs = _segments(raw_path)
        for seg in segs:
            if not _safe(seg):
                return None
        node = _walk(self._root, segs, 0)
        return Match(node.methods) if node is not None else None

    @staticmethod
    def unsafe_path(raw_path: str) -> bool:
        """True when a raw path has an empty, dot or encoded-slash segment (never forwarded)."""
        return not all(_safe(seg) for seg in _segments(raw_path))


def _walk(node: _Node[R], segs: list[str], i: int) -> _Node[R] | None:
    """Static segments first, then a parameter, then a tail: the most specific route wins, with backtracking."""
    if i == len(segs):
        return node if node.methods else None
    nxt = node.static.get(segs[i])
    if nxt is not None and (found := _walk(nxt, segs, i + 1)) is not None:
        return found
    if node.param is not None and (found := _walk(node.param, segs, i + 1)) is not None:
        return found
    if node.tail is not None and node.tail.methods:
        return node.tail
    return None


def _segments(path: str) -> list[str]:
    # A trailing or doubled slash yields an empty segment, which never matches.
    return path[1:].split("/") if path.startswith("/") else [""]


def _safe(seg: str) -> bool:
    if not seg or seg in (".", ".."):
        return False
    if "%" in seg:
        decoded = unquote(seg)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            return False
    return True


# --- read-your-writes bookkeeping (ADR 0010, shared/consistency.py) --------------------------------------
#
# Per tenant, the gateway remembers the events of recent writes that some service's queue still has to apply,
# and which queues those are (shared.bus.topology). A request to service S carries, in ``X-Learn-After``, the
# ids that S's queues still owe; once S answered anything but ``503 not_yet_consistent``, S has applied them and
# the gateway stops sending them to S. An event is forgotten when every queue has confirmed it, or after the
# window.
#
# Several gateway replicas (or workers) do not share this memory. Every response that leaves anything pending
# carries a signed ``Consistency-Token`` (tenant-bound, HMAC with the internal secret, items with their expiry);
# a client that echoes the latest token it received gets the same guarantee on any replica. The replicas also
# tell each other what they recorded (best effort): ``store.ReplicaFanout``.

#: the most events one token carries (the newest)
MAX_TOKEN_ITEMS = 32


@dataclass
class _Pending:
    event_type: str
    expires_at: float  # wall clock (tokens cross replicas)
    queues: dict[str, str] = field(default_factory=dict)  # queue name -> service, still owed


class _TenantPending:
    """One tenant's pending events, oldest first, and an index of them by the service that still owes each: a
    request to a service looks only at what that service owes (not at every pending event of the tenant, which
    at a few hundred writes a second is hundreds of events owed to services the client may never read)."""

    __slots__ = ("by_service", "items", "token", "token_until", "token_version", "version")

    def __init__(self) -> None:
        self.items: OrderedDict[str, _Pending] = OrderedDict()
        self.by_service: dict[str, OrderedDict[str, None]] = {}
        self.version = 0  # bumped on every change: the cached token below is for this version
        self.token: str | None = None
        self.token_version = -1
        self.token_until = 0.0  # the cached token holds until its first item expires

    def add(self, event_id: str, item: _Pending) -> None:
        self.items[event_id] = item
        for service in set(item.queues.values()):
            self.by_service.setdefault(service, OrderedDict())[event_id] = None
        self.version += 1

    def drop(self, event_id: str) -> None:
        item = self.items.pop(event_id, None)
        if item is None:
            return
        for service in set(item.queues.values()):
            self._unindex(service, event_id)
        self.version += 1

    def settle(self, event_id: str, queue: str) -> None:
        """``queue`` applied the event: its service no longer owes it (unless through another of its queues)."""
        item = self.items.get(event_id)
        if item is None:
            return
        service = item.queues.pop(queue, None)
        if service is not None and service not in item.queues.values():
            self._unindex(service, event_id)
        if not item.queues:
            del self.items[event_id]
        self.version += 1

    def prune(self, now: float) -> None:
        """Forget expired events from the oldest end (events are recorded in expiry order, but for absorbed
        tokens; an out-of-order expired one is skipped by :meth:`CausalTracker.owed` until it gets here)."""
        while self.items:
            event_id, item = next(iter(self.items.items()))
            if item.expires_at > now:
                return
            self.drop(event_id)

    def _unindex(self, service: str, event_id: str) -> None:
        ids = self.by_service.get(service)
        if ids is not None:
            ids.pop(event_id, None)
            if not ids:
                del self.by_service[service]


class CausalTracker:
    """This replica's memory of what each tenant's recent writes still owe (in memory: no I/O of its own).
    ``fanout``: the replicas' fan-out (``store.ReplicaFanout``) once the database is up, else None."""

    def __init__(self, secret: str, *, window: float = 30.0, max_per_tenant: int = 1024, enabled: bool = True):
        self.enabled = enabled
        self.fanout: Any = None
        self._key = hashlib.sha256(b"learn-consistency-token:" + secret.encode()).digest()
        self.window = window
        self.max_per_tenant = max_per_tenant
        self._tenants: dict[str, _TenantPending] = {}

    # --- what writes committed --------------------------------------------------------------------------

    def record(self, tenant: str, events: list[tuple[str, str]], expires_at: float | None = None) -> None:
        if not events or not self.enabled:
            return
        expires = expires_at if expires_at is not None else time.time() + self.window
        pending = self._tenants.get(tenant)
        for event_type, event_id in events:
            if pending is not None and event_id in pending.items:
                continue
            queues = {name: service for service, name in consuming_queues(event_type)}
            if not queues:
                continue  # nobody consumes it: nothing to wait for
            if pending is None:
                pending = self._tenants[tenant] = _TenantPending()
            pending.add(event_id, _Pending(event_type, expires, queues))
        if pending is not None:
            while len(pending.items) > self.max_per_tenant:
                pending.drop(next(iter(pending.items)))

    def record_header(self, tenant: str | None, header: str | None) -> None:
        if tenant and header:
            self.record(tenant, parse_pairs(header))

    def _pending(self, tenant: str, now: float) -> _TenantPending | None:
        pending = self._tenants.get(tenant)
        if pending is None:
            return None
        pending.prune(now)
        if not pending.items:
            del self._tenants[tenant]
            return None
        return pending

    # --- what a request must wait for -------------------------------------------------------------------

    def owed(self, tenant: str, service: str) -> dict[str, list[str]]:
        """``{queue: [event ids]}`` that ``service`` still owes this tenant (the newest, at most MAX_AFTER_IDS)."""
        now = time.time()
        pending = self._pending(tenant, now)
        if pending is None:
            return {}
        ids = pending.by_service.get(service)
        if not ids:
            return {}
        out: dict[str, list[str]] = {}
        count = 0
        expired: list[str] = []
        for event_id in reversed(ids):
            if count >= MAX_AFTER_IDS:
                break
            item = pending.items[event_id]
            if item.expires_at <= now:
                expired.append(event_id)
                continue
            for queue, owner in item.queues.items():
                if owner == service and count < MAX_AFTER_IDS:
                    out.setdefault(queue, []).append(event_id)
                    count += 1
        for event_id in expired:
            pending.drop(event_id)
        return out

    def after_header(self, tenant: str, service: str) -> tuple[str | None, dict[str, list[str]]]:
        owed = self.owed(tenant, service)
        if not owed:
            return None, owed
        return ";".join(f"{q}={','.join(ids)}" for q, ids in owed.items()), owed

    def confirm(self, tenant: str, owed: dict[str, list[str]]) -> None:
        """The service answered after applying ``owed``: stop asking for them."""
        pending = self._tenants.get(tenant)
        if pending is None:
            return
        for queue, ids in owed.items():
            for event_id in ids:
                pending.settle(event_id, queue)
        if not pending.items:
            del self._tenants[tenant]

    # --- the client's token -----------------------------------------------------------------------------

    def token(self, tenant: str) -> str | None:
        """A token for everything this tenant still has pending here, or None when nothing is."""
        now = time.time()
        pending = self._pending(tenant, now)
        if pending is None:
            return None
        if pending.token is not None and pending.token_version == pending.version and pending.token_until > now:
            return pending.token
        newest = list(itertools.islice(reversed(pending.items.items()), MAX_TOKEN_ITEMS))
        live = [(event_id, item) for event_id, item in reversed(newest) if item.expires_at > now]
        if not live:
            return None
        items = [[item.event_type, event_id, int(item.expires_at)] for event_id, item in live]
        body = base64.urlsafe_b64encode(json.dumps({"t": tenant, "e": items}, separators=(",", ":")).encode())
        mac = base64.urlsafe_b64encode(hmac.new(self._key, body, hashlib.sha256).digest()[:18])
        token = (body + b"." + mac).decode().rstrip("=")
        # The same pending set gives the same token until one of its items expires: computed once per change.
        pending.token, pending.token_version = token, pending.version
        pending.token_until = float(min(int(item.expires_at) for _, item in live))
        return token

    def absorb(self, tenant: str, token: str | None) -> None:
        """Adopt a client-echoed token (from any replica). Forged, foreign or expired items are ignored."""
        if not token or len(token) > 16384:
            return
        body, sep, mac = token.rpartition(".")
        if not sep:
            return
        try:
            raw_body = body.encode()
            padded = raw_body + b"=" * (-len(raw_body) % 4)
            expected = base64.urlsafe_b64encode(hmac.new(self._key, padded, hashlib.sha256).digest()[:18])
            if not hmac.compare_digest(expected.decode().rstrip("="), mac):
                return
            data = json.loads(base64.urlsafe_b64decode(padded))
        except (ValueError, UnicodeError):
            return
        if not isinstance(data, dict) or data.get("t") != tenant or not isinstance(data.get("e"), list):
            return
        now = time.time()
        for entry in data["e"][:MAX_TOKEN_ITEMS]:
            if not (isinstance(entry, list) and len(entry) == 3):
                continue
            event_type, event_id, expires = entry
            if not (isinstance(event_type, str) and isinstance(event_id, str) and isinstance(expires, int)):
                continue
            pending = self._tenants.get(tenant)
            if expires <= now or (pending is not None and event_id in pending.items):
                continue
            self.record(tenant, [(event_type, event_id)], expires_at=float(expires))

    def begin(self, tenant: str | None, service: str, headers: dict[str, str],
              client_token: str | None = None) -> CausalExchange:
        """Before forwarding: adopt the client's token and name in ``headers`` what ``service`` must apply first."""
        owed: dict[str, list[str]] = {}
        if tenant is not None:
            if client_token:
                self.absorb(tenant, client_token)
            after, owed = self.after_header(tenant, service)
            if after:
                headers[H_AFTER] = after
        return CausalExchange(self, tenant, owed)


@dataclass
class CausalExchange:
    """One forwarded request's part in the protocol: :meth:`finish` runs on the upstream's response headers;
    ``recorded`` is what the request's caller then tells the other replicas (``pipeline.share``)."""

    tracker: CausalTracker
    tenant: str | None
    owed: dict[str, list[str]]
    recorded: list[tuple[str, str]] = field(default_factory=list)

    def finish(self, status: int, events: str | None, events_tenant: str | None) -> dict[str, str]:
        tenant = self.tenant
        if tenant is not None and status != 503 and self.owed:
            self.tracker.confirm(tenant, self.owed)
        if events:
            if tenant is None:
                tenant = events_tenant  # pass-through routes: the service resolved the tenant from a token
            elif events_tenant is not None and events_tenant != tenant:
                return {}
            self.tracker.record_header(tenant, events)
            if tenant is not None:
                self.recorded.append((tenant, events))
        if tenant is None:
            return {}
        token = self.tracker.token(tenant)
        return {H_TOKEN: token} if token else {}


# --- failures per client (sign-in lockouts, admin-token guesses) -----------------------------------------


class FailureLimiter:
    """At most ``max_failures`` failures per key (a client IP, an account) in a sliding ``window`` of seconds."""

    MAX_CLIENTS = 50_000

    def __init__(self, max_failures: int, window: float):
        self.max_failures = max_failures
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        failures = self._recent(client, now)
        if len(failures) < self.max_failures:
            return None
        return max(1.0, failures[0] + self.window - now)

    def failed(self, client: str, now: float) -> None:
        failures = self._recent(client, now)
        failures.append(now)
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > self.MAX_CLIENTS:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            failures = deque(maxlen=self.max_failures)  # the oldest of the last N decides: memory stays bounded
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures


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
