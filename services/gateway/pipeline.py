"""The request pipeline of the public API, the pass-through routes and the admin proxy.

Public API order (issue 3): request id → API key → tenant → Host check → plan gate → route → scope → rate limit
→ proxy. Each step is a few dictionary lookups on a warm cache: no per-request parsing of the table, no query.

The steps are in this module, top to bottom; below it, ``keys.py`` (who is calling and how fast: the key cache,
usage stamps, the rate limit) and ``proxy.py`` (forwarding: the lean client, the client's address), and under
those ``domain.py`` (pure rules: key format, route matching, the read-your-writes bookkeeping) and ``store.py``
(SQL, on a cold key cache). A public request crosses these five files and no other (docs/architecture.md,
"Measured"; ``tests/enrollment/test_enrollment_path.py``).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from services.gateway import domain
from services.gateway.domain import CausalExchange, CausalTracker, FailureLimiter, RouteTable
from services.gateway.keys import KeyDirectory, Principal, RateLimiter, UsageRecorder
from services.gateway.proxy import TrustedProxies, Upstreams
from services.gateway.routes import API_TABLE, VERIFY_TABLE, Route
from shared.consistency import H_TOKEN, format_events, start_recording
from shared.http import H_INTERNAL, H_REQUEST_ID, REQUEST_ID_KEY, ApiError, error_response, is_unavailable
from shared.metrics import HTTP_DURATION, HTTP_REQUESTS

log = structlog.get_logger("gateway")

_BEARER = {"WWW-Authenticate": "Bearer"}
NOT_FOUND = ApiError(404, "not_found", "No such route.")
COURSE_LIMITED = ApiError(403, "course_limited_key",
                          "This API key is limited to some courses; this route is not about one of them.")


class RequestIds:
    """``req_`` + 24 hex characters from the OS random source, drawn 512 ids at a time (one syscall, not 512)."""

    def __init__(self, batch: int = 512):
        self.batch = batch
        self._pool: list[str] = []
        os.register_at_fork(after_in_child=self._pool.clear)  # a forked worker must never reuse the parent's

    def __call__(self) -> str:
        if not self._pool:
            raw = os.urandom(12 * self.batch).hex()
            self._pool = ["req_" + raw[i:i + 24] for i in range(0, len(raw), 24)]
        return self._pool.pop()


new_request_id = RequestIds()


def invalid_key(message: str) -> ApiError:
    return ApiError(401, "invalid_api_key", message, _BEARER)


def failure(exc: Exception, rid: str, **where: Any) -> web.Response:
    """The error envelope of a request the gateway refused or could not serve: the one place it is built here
    (``shared.http.error_middleware`` answers the routes outside the pipeline, with the same mapping).

    ``where`` (the route or path) goes into the log line of an unexpected error."""
    if isinstance(exc, ApiError):
        return error_response(rid, exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, web.HTTPException):  # a refusal of aiohttp's own (the admin guard re-raises redirects)
        return error_response(rid, exc.status, "invalid_argument", exc.reason)
    if is_unavailable(exc):
        log.warning("backing_store_unavailable", request_id=rid, error=repr(exc))
        return error_response(rid, 503, "service_unavailable",
                              "A backing service is temporarily unavailable; retry shortly.", {"Retry-After": "1"})
    log.exception("gateway_error", request_id=rid, **where)
    return error_response(rid, 500, "internal", "Internal error.")


def route_of(table: RouteTable[Route], request: web.Request) -> Route:
    """The route of ``table`` for the request's path and method: 404, or 405 with ``Allow``, if there is none."""
    match = table.match(request.rel_url.raw_path)
    if match is None:
        raise NOT_FOUND
    route = match.methods.get(request.method)
    if route is None:
        raise ApiError(405, "method_not_allowed", "Method not allowed on this route.", {"Allow": match.allow})
    return route


class Observer:
    """Metrics and the access log line of a request; Prometheus children are cached per label set."""

    def __init__(self, access_log: bool):
        self.access_log = access_log
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    def done(self, request: web.Request, route: str, status: int, started: float, rid: str,
             **fields: Any) -> None:
        elapsed = time.perf_counter() - started
        key = (route, request.method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = HTTP_REQUESTS.labels("gateway", route, request.method, str(status))
        counter.inc()
        tkey = (route, request.method)
        timer = self._timers.get(tkey)
        if timer is None:
            timer = self._timers[tkey] = HTTP_DURATION.labels("gateway", route, request.method)
        timer.observe(elapsed)
        if self.access_log or status >= 400:
            client_rid = request.headers.get(H_REQUEST_ID)
            if client_rid:
                fields["client_request_id"] = client_rid[:128]
            # Refusals are warnings (they matter when a client is misbehaving or an attack is under way).
            emit = log.info if status < 400 else log.warning if status < 500 else log.error
            emit("request", request_id=rid, method=request.method, route=route, status=status,
                 duration_ms=round(elapsed * 1000, 3), **fields)


class Gateway:
    """Everything the hot path needs, resolved once at start-up."""

    def __init__(self, *, internal_secret: str, admin_token: str, base_domain: str, json_body_limit: int,
                 observer: Observer, consistency: bool = True, consistency_window: float = 30.0,
                 proxies: TrustedProxies | None = None, admin_failures: FailureLimiter | None = None,
                 upload_body_limit: int = 512 * 1024 * 1024):
        self.internal_secret = internal_secret
        self.proxies = proxies or TrustedProxies()
        self.admin_failures = admin_failures or FailureLimiter(10, 300.0)
        self.admin_token = admin_token.encode()
        self.base_domain = base_domain
        self.json_body_limit = json_body_limit
        self.upload_body_limit = upload_body_limit  # routes whose body is a file (a SCORM zip), streamed
        self.observer = observer
        self.causal = CausalTracker(internal_secret, window=consistency_window, enabled=consistency)
        # Set when the app starts (they need the database and the event loop).
        self.keys: KeyDirectory
        self.usage: UsageRecorder
        self.limiter: RateLimiter
        self.upstreams: Upstreams
        self.staff: Any = None  # services.gateway.staff.StaffAccess, once the database is up

    async def share(self, causal: CausalExchange) -> None:
        """Tell the other gateway replicas what a forwarded request recorded (before its answer leaves)."""
        fanout = causal.tracker.fanout
        if fanout is not None:
            for tenant, events in causal.recorded:
                await fanout.publish(tenant, events)

    # --- public API -------------------------------------------------------------------------------------

    async def public_api(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        rid = new_request_id()
        route_label = "unmatched"
        principal: Principal | None = None
        try:
            principal = await self._authenticate(request)
            route = route_of(API_TABLE, request)
            route_label = route.path
            if route.scope not in principal.scopes:
                raise ApiError(403, "insufficient_scope", f"This API key lacks the '{route.scope}' scope.",
                               {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{route.scope}"'})
            if principal.course_ids is not None and not route.course_scoped:
                raise COURSE_LIMITED
            now = time.monotonic()
            decision = await self.limiter.take(principal.key_id, now)
            limit_headers = {"RateLimit-Policy": self.limiter.policy}
            if not decision.allowed:
                retry = decision.retry_after
                limit_headers["RateLimit"] = f'"per-key";r=0;t={retry}'
                limit_headers["Retry-After"] = str(retry)
                raise ApiError(429, "rate_limited", f"Too many requests for this API key; retry in {retry} s.",
                               limit_headers)
            limit_headers["RateLimit"] = f'"per-key";r={decision.remaining};t={decision.reset}'
            self.usage.used(principal.key_id, now)
            headers = dict(principal.headers)
            headers[H_REQUEST_ID] = rid
            limit_headers[H_REQUEST_ID] = rid
            causal = self.causal.begin(principal.slug, route.upstream, headers, request.headers.get(H_TOKEN))
            small = route.response in ("object", "list") and not route.upload
            send = self.upstreams.forward_small if small else self.upstreams.forward
            limit = self.upload_body_limit if route.upload else self.json_body_limit
            response = await send(request, route.upstream, request.raw_path, headers, limit, limit_headers, causal)
            await self.share(causal)
        except Exception as exc:
            response = failure(exc, rid, path=request.path)
        self.observer.done(request, route_label, response.status, started, rid,
                           tenant=principal.slug if principal else None,
                           key_id=principal.key_id if principal else None)
        return response

    async def _authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        if not header:
            raise invalid_key("Send an API key: 'Authorization: Bearer mc_live_...'.")
        key = domain.bearer_token(header)
        if key is None:
            raise invalid_key("Use the Bearer scheme: 'Authorization: Bearer mc_live_...'.")
        if not domain.well_formed_key(key):
            raise invalid_key("The API key is malformed.")
        principal = await self.keys.resolve(key)
        if principal is None:
            raise invalid_key("The API key is not valid.")
        if principal.revoked:
            raise invalid_key("The API key has been revoked.")
        if principal.expires_at is not None and time.time() >= principal.expires_at:
            raise invalid_key("The API key has expired.")
        if not principal.tenant_active:
            raise invalid_key("The tenant of this API key is suspended.")
        slug = domain.host_slug(request.host, self.base_domain)
        if slug is not None and slug != principal.slug:
            raise invalid_key("The API key does not belong to the tenant of this host.")
        if not principal.plan_allowed:
            raise ApiError(403, "plan_not_eligible",
                           "The public API needs a Pro, Creator Plus or Sovereign plan.")
        return principal

    # --- pass-through (no API key) ---------------------------------------------------------------------

    async def pass_through(self, request: web.Request) -> web.StreamResponse:
        return await self._forward_table(request, VERIFY_TABLE)

    async def _forward_table(self, request: web.Request, table: RouteTable[Route],
                             extra: dict[str, str] | None = None) -> web.StreamResponse:
        started = time.perf_counter()
        rid = new_request_id()
        route_label = "unmatched"
        try:
            route = route_of(table, request)
            route_label = route.path
            headers = {H_INTERNAL: self.internal_secret, H_REQUEST_ID: rid, **(extra or {})}
            # No tenant known here (the service resolves it from the token or vid); writes still report theirs.
            causal = self.causal.begin(None, route.upstream, headers)
            response = await self.upstreams.forward(request, route.upstream, request.raw_path, headers,
                                                    self.json_body_limit, {H_REQUEST_ID: rid}, causal)
            await self.share(causal)
        except Exception as exc:
            response = failure(exc, rid, route=route_label)
        self.observer.done(request, route_label, response.status, started, rid)
        return response

    # --- the admin API's guard -------------------------------------------------------------------------

    def _check_admin_token(self, request: web.Request) -> None:
        """The admin token, with wrong ones limited per client IP: after ``admin_failures.max_failures`` wrong
        tokens in the window, that address gets 429 with ``Retry-After`` (even with the right token) until the
        window passes. A request without a token guesses nothing and is not counted."""
        client = self.proxies.client_ip(request)
        now = time.monotonic()
        wait = self.admin_failures.retry_after(client, now)
        if wait is not None:
            retry = str(int(wait) + 1)
            log.warning("admin_token_failures_limited", client=client)
            raise ApiError(429, "rate_limited", f"Too many wrong admin tokens from this address; retry in {retry} s.",
                           {"Retry-After": retry})
        token = domain.bearer_token(request.headers.get("Authorization"))
        if token is None or not hmac.compare_digest(token.encode(), self.admin_token):
            if token:
                self.admin_failures.failed(client, now)
                log.warning("admin_token_wrong", client=client)
            raise ApiError(401, "invalid_api_key",
                           "The admin API needs the admin token: 'Authorization: Bearer ...'.", _BEARER)

    async def _actor(self, request: web.Request) -> domain.Actor:
        """The operator (admin token) or a staff member (a staff session's bearer token, ADR 0021)."""
        token = domain.bearer_token(request.headers.get("Authorization"))
        if token is not None and token.startswith(domain.SESSION_PREFIX) and self.staff is not None:
            actor = await self.staff.actor(token)
            if actor is not None:
                host = domain.host_slug(request.host, self.base_domain)
                if host is not None and host != actor.tenant_slug:
                    raise ApiError(401, "invalid_api_key", "This session belongs to another tenant's host.",
                                   _BEARER)
                return actor
            raise ApiError(401, "invalid_api_key", "The session has ended or is not valid: sign in again.",
                           _BEARER)
        self._check_admin_token(request)
        return domain.OPERATOR

    def admin(self, route: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], *,
              public: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap an admin handler: request id, the caller (admin token or staff session) and what they may do,
        the audit log of writes, error envelope, metrics and log line. ``public``: no credential (sign-in)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            rid = new_request_id()
            request[REQUEST_ID_KEY] = rid
            try:
                audit = None
                if not public:
                    actor = await self._actor(request)
                    request[ACTOR_KEY] = actor
                    slug, rest = admin_target(request.path)
                    refusal = domain.authorize(actor, request.method, slug, rest)
                    if refusal is not None:
                        raise ApiError(refusal.status, refusal.code, refusal.message)
                    if (slug is not None and request.method not in ("GET", "HEAD", "OPTIONS") and self.staff
                            and not rest.startswith("sessions")):
                        audit = await self.staff.audit_begin(request, actor, slug, rest)
                recorded = start_recording()  # the directory's own events (user.upserted ...), once committed
                response = await handler(request)
                response.headers.setdefault(H_REQUEST_ID, rid)
                if audit is not None and response.status < 400:
                    assert self.staff is not None
                    await self.staff.audit_end(request, audit, response)
                if recorded and not response.prepared:
                    tenant = recorded[0][0]
                    self.causal.record(tenant, [(t, e) for _, t, e in recorded])
                    if self.causal.fanout is not None:
                        await self.causal.fanout.publish(tenant, format_events((t, e) for _, t, e in recorded))
                    token = self.causal.token(tenant)
                    if token:
                        response.headers[H_TOKEN] = token
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = failure(exc, rid, route=route)
            except Exception as exc:
                response = failure(exc, rid, route=route)
            self.observer.done(request, route, response.status, started, rid,
                               tenant=request.match_info.get("slug"))
            return response

        return guarded


ACTOR_KEY = web.RequestKey("learn_admin_actor", domain.Actor)
_TENANTS_PATH = "/admin/api/v1/tenants/"


def admin_target(path: str) -> tuple[str | None, str]:
    """(tenant slug, the rest after ``/tenants/{slug}/``) of an admin API path; (None, "") for platform routes."""
    if not path.startswith(_TENANTS_PATH):
        return None, ""
    slug, _, rest = path[len(_TENANTS_PATH):].partition("/")
    return (slug or None), rest.strip("/")
