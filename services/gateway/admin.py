"""The admin API's own resources (CONTRACT §8): tenants, API keys, directory users, dead-letter queues; and the
admin proxy. HTTP only: each route parses its request, calls one use case of ``handlers.py`` and maps the
directory's domain exceptions through :data:`ERRORS`.

Writes that another service owns (modules, lessons, cohorts, templates, SCORM uploads ...) are forwarded to
``<service>/admin/v1/<rest>`` with the tenant's headers and the scope ``admin``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from services.gateway import domain, handlers
from services.gateway.dlq import DeadLetters, spec_of
from services.gateway.domain import RouteTable
from services.gateway.pipeline import ACTOR_KEY
from services.gateway.routes import ADMIN_PREFIXES, UPLOAD_PREFIXES
from shared.bus.topology import QueueSpec
from shared.consistency import H_TOKEN
from shared.db import Database, as_utc
from shared.domain_errors import Answer, ErrorTable, answering
from shared.http import (
    H_INTERNAL,
    H_REQUEST_ID,
    H_SCOPES,
    H_STAFF_ID,
    H_STAFF_ROLE,
    H_TENANT,
    H_TENANT_ID,
    H_TENANT_NAME,
    ApiError,
    CursorCodec,
    dumps,
    next_cursor,
    ok,
    page_request,
    positive_int,
    read_json,
    request_id_of,
)
from shared.idempotency import store_instead
from shared.uow import UnitOfWork

ADMIN = "/admin/api/v1"
TENANT_OWN = frozenset({"api-keys", "users", "staff", "sessions", "audit-log", "sso", "event-subscribers"})
log = structlog.get_logger("gateway")

#: the directory's domain exceptions as the error envelope (shared/domain_errors.py; message None: the exception's)
ERRORS: ErrorTable = {
    domain.TenantNotFound: Answer(404, "tenant_not_found", "Tenant not found."),
    domain.ApiKeyNotFound: Answer(404, "api_key_not_found", "Api key not found."),
    domain.UserNotFound: Answer(404, "user_not_found", "User not found."),
    domain.SlugTaken: Answer(400, "invalid_argument"),
    domain.UnknownCreator: Answer(400, "invalid_argument"),
    domain.StaffNotFound: Answer(404, "staff_not_found", "Staff member not found."),
    domain.EmailTaken: Answer(400, "invalid_argument"),
    domain.LastOwner: Answer(400, "invalid_argument"),
    domain.LinkInvalid: Answer(400, "invalid_argument"),
    domain.WeakPassword: Answer(400, "invalid_argument"),
    domain.StaffSuspended: Answer(400, "invalid_argument"),
}

#: answer the directory's domain exceptions in the error envelope (:data:`ERRORS`); the admin views are methods
refusals = answering(ERRORS)


def _one_of(value: str | None, allowed: tuple[str, ...]) -> str | None:
    """A field's value if it is one of ``allowed`` (None passes: not given); else pydantic's validation error."""
    if value is not None and value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return value


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str
    name: str = Field(max_length=200)
    plan: str

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not domain.valid_slug(v):
            raise ValueError("must match [a-z0-9][a-z0-9-]{1,62}")
        return v

    @field_validator("plan")
    @classmethod
    def _plan(cls, v: str) -> str:
        _one_of(v, domain.PLANS)
        return v


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    plan: str | None = None
    status: str | None = None

    @field_validator("plan")
    @classmethod
    def _plan(cls, v: str | None) -> str | None:
        return _one_of(v, domain.PLANS)

    @field_validator("status")
    @classmethod
    def _status(cls, v: str | None) -> str | None:
        return _one_of(v, domain.TENANT_STATUSES)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    scopes: list[str] = Field(min_length=1)
    expires_at: datetime | None = None
    created_by: int | None = Field(default=None, ge=1, description="directory user id of the admin behind it")
    mode: str = "live"
    #: a per-course key (ADR 0019): it reads and writes only these courses and what hangs under them
    course_ids: list[StrictInt] | None = Field(default=None, min_length=1, max_length=domain.MAX_KEY_COURSES)

    @field_validator("course_ids")
    @classmethod
    def _courses(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return None
        if any(c < 1 or c > domain.MAX_ID for c in v):
            raise ValueError("course ids are positive integers")
        return sorted(set(v))

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in domain.SCOPES]
        if unknown:
            raise ValueError(f"unknown scope {unknown[0]!r}; use {', '.join(domain.SCOPES)}")
        return sorted(set(v))

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("live", "test"):
            raise ValueError("must be 'live' or 'test'")
        return v

    @field_validator("expires_at")
    @classmethod
    def _future(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        if v <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return v


class UserUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not domain.EMAIL_RE.match(v):
            raise ValueError("is not an email address")
        return v


def tenant_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "slug": row.slug, "name": row.name, "plan": row.plan, "status": row.status,
            "api_enabled": domain.plan_allows_api(row.plan), "created_at": as_utc(row.created_at),
            "updated_at": as_utc(row.updated_at)}


def key_view(row: Any, slug: str) -> dict[str, Any]:
    expires = as_utc(row.expires_at)
    if row.revoked_at is not None:
        status = "revoked"
    elif expires is not None and expires <= datetime.now(UTC):
        status = "expired"
    else:
        status = "active"
    return {"id": row.id, "tenant": slug, "name": row.name, "prefix": row.prefix, "scopes": list(row.scopes),
            "status": status, "created_by": row.created_by, "created_at": as_utc(row.created_at),
            "last_used_at": as_utc(row.last_used_at), "expires_at": expires, "revoked_at": as_utc(row.revoked_at),
            "course_ids": list(row.course_ids) if row.course_ids is not None else None}


def user_view(row: Any) -> dict[str, Any]:
    return {"id": row.user_id, "name": row.name, "email": row.email, "revision": row.revision,
            "created_at": as_utc(row.created_at), "updated_at": as_utc(row.updated_at)}


def _positive(raw: str, resource: str) -> int:
    value = positive_int(raw)
    if value is None:
        raise ApiError.not_found(resource)
    return value


class _Page:
    """The page a list asks for (``limit``, ``cursor``); the cursor is scoped to the tenant the handler finds."""

    def __init__(self, request: web.Request, codec: CursorCodec, name: str):
        self.request, self.codec, self.name = request, codec, name
        self.tenant_id = 0

    def __call__(self, tenant_id: int) -> tuple[int | None, int]:
        """(after id, rows to read: one more than the page, to know whether there is a next one)."""
        self.tenant_id = tenant_id
        self.page = page_request(self.request, self.codec, self.name, tenant_id, {})
        return self.page.after_id, self.page.limit + 1

    def cursor(self, rows: list[Any], id_of: Callable[[Any], int]) -> str | None:
        """The next page's cursor; drops the extra row from ``rows``."""
        return next_cursor(self.codec, rows, self.page, self.name, self.tenant_id, {}, id_of=id_of)


class AdminApi:
    def __init__(self, db_of: Any, codec: CursorCodec, keys_of: Any, pepper: bytes):
        self._db_of = db_of  # callables: the database and key cache exist only once the app started
        self._keys_of = keys_of
        self.codec = codec
        self.pepper = pepper

    @property
    def uow(self) -> UnitOfWork:
        db: Database = self._db_of()
        return UnitOfWork(db)

    # --- tenants ----------------------------------------------------------------------------------------

    @refusals
    async def create_tenant(self, request: web.Request) -> web.Response:
        body = await read_json(request, TenantCreate)
        row = await handlers.create_tenant(self.uow, body.slug, body.name, body.plan)
        return ok(request, tenant_view(row), status=201)

    @refusals
    async def list_tenants(self, request: web.Request) -> web.Response:
        page = _Page(request, self.codec, "tenants")
        rows = await handlers.list_tenants(self.uow, *page(0))
        cursor = page.cursor(rows, id_of=lambda r: r.id)
        return ok(request, [tenant_view(r) for r in rows], cursor)

    @refusals
    async def get_tenant(self, request: web.Request) -> web.Response:
        row = await handlers.tenant(self.uow, request.match_info["slug"])
        return ok(request, tenant_view(row))

    @refusals
    async def update_tenant(self, request: web.Request) -> web.Response:
        body = await read_json(request, TenantUpdate)
        changes = body.model_dump(exclude_unset=True)
        if changes.get("name") is not None:
            changes["name"] = changes["name"].strip()
        changes = {k: v for k, v in changes.items() if v is not None}
        row = await handlers.update_tenant(self.uow, request.match_info["slug"], request_id_of(request), changes)
        self._keys_of().forget_tenant(row.id)
        return ok(request, tenant_view(row))

    # --- API keys ---------------------------------------------------------------------------------------

    @refusals
    async def create_key(self, request: web.Request) -> web.Response:
        body = await read_json(request, KeyCreate)
        owner, row, plain = await handlers.create_key(
            self.uow, request.match_info["slug"], self.pepper, name=body.name, scopes=body.scopes,
            expires_at=body.expires_at, created_by=body.created_by, mode=body.mode, course_ids=body.course_ids)
        view = key_view(row, owner.slug)
        # An Idempotency-Key replay answers the same key without its secret: the secret is shown once and never
        # stored in plain text (a client that lost the first answer revokes this key, by its id, and makes another).
        store_instead(request, dumps({"data": view, "next_cursor": None, "request_id": request_id_of(request)})
                      .encode())
        view["key"] = plain  # shown once, here only
        return ok(request, view, status=201)

    @refusals
    async def list_keys(self, request: web.Request) -> web.Response:
        page = _Page(request, self.codec, "api_keys")
        owner, rows = await handlers.list_keys(self.uow, request.match_info["slug"], page)
        cursor = page.cursor(rows, id_of=lambda r: r.id)
        return ok(request, [key_view(r, owner.slug) for r in rows], cursor)

    @refusals
    async def get_key(self, request: web.Request) -> web.Response:
        key_id = _positive(request.match_info["id"], "api_key")
        owner, row = await handlers.key(self.uow, request.match_info["slug"], key_id)
        return ok(request, key_view(row, owner.slug))

    @refusals
    async def revoke_key(self, request: web.Request) -> web.Response:
        """Revoke (idempotent): the first call stamps ``revoked_at`` and publishes ``api_key.revoked``."""
        key_id = _positive(request.match_info["id"], "api_key")
        owner, row = await handlers.revoke_key(self.uow, request.match_info["slug"], request_id_of(request), key_id)
        self._keys_of().forget_key(key_id)
        return ok(request, key_view(row, owner.slug))

    # --- directory users --------------------------------------------------------------------------------

    @refusals
    async def upsert_user(self, request: web.Request) -> web.Response:
        user_id = _positive(request.match_info["user_id"], "user")
        body = await read_json(request, UserUpsert)
        row, created = await handlers.upsert_user(self.uow, request.match_info["slug"], request_id_of(request),
                                                  user_id, body.name, body.email)
        return ok(request, user_view(row), status=201 if created else 200)

    @refusals
    async def get_user(self, request: web.Request) -> web.Response:
        user_id = _positive(request.match_info["user_id"], "user")
        row = await handlers.user(self.uow, request.match_info["slug"], user_id)
        return ok(request, user_view(row))

    @refusals
    async def list_users(self, request: web.Request) -> web.Response:
        page = _Page(request, self.codec, "users")
        rows = await handlers.list_users(self.uow, request.match_info["slug"], page)
        cursor = page.cursor(rows, id_of=lambda r: r.user_id)
        return ok(request, [user_view(r) for r in rows], cursor)


class AdminDeadLetters:
    """``/admin/api/v1/dlq``: the dead-letter queues of every service (summary, peek, replay, purge)."""

    def __init__(self, dead_letters_of: Callable[[], DeadLetters]):
        self._of = dead_letters_of  # exists once the bus does

    async def summary(self, request: web.Request) -> web.Response:
        service = request.query.get("service") or None
        return ok(request, await self._of().summary(service))

    async def peek(self, request: web.Request) -> web.Response:
        spec = _queue(request)
        return ok(request, await self._of().peek(spec, _limit(request, 20, 500)))

    async def replay(self, request: web.Request) -> web.Response:
        spec = _queue(request)
        count = await self._of().replay(spec, _limit(request, 1000, 100_000))
        log.info("dead_letters_replayed", queue=spec.dead_letter_name, count=count, request_id=request_id_of(request))
        return ok(request, {"queue": spec.name, "replayed": count})

    async def purge(self, request: web.Request) -> web.Response:
        spec = _queue(request)
        count = await self._of().purge(spec)
        log.warning("dead_letters_purged", queue=spec.dead_letter_name, count=count,
                    request_id=request_id_of(request))
        return ok(request, {"queue": spec.name, "purged": count})


def _queue(request: web.Request) -> QueueSpec:
    name = request.match_info["queue"]
    spec = spec_of(name)
    if spec is None:
        raise ApiError(404, "not_found", f"No dead-letter queue '{name}'.")
    return spec


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    value = positive_int(raw)
    if value is None or value > most:
        raise ApiError.invalid(f"'limit' must be an integer from 1 to {most}.")
    return value


class AdminProxy:
    """``/admin/api/v1/tenants/{slug}/<prefix>/...`` → ``<service>/admin/v1/<prefix>/...`` as the tenant's admin."""

    def __init__(self, gateway: Any, db_of: Any, internal_secret: str, upload_limit: int, json_limit: int):
        self.gateway = gateway
        self._db_of = db_of
        self.internal_secret = internal_secret
        self.upload_limit = upload_limit
        self.json_limit = json_limit

    @refusals
    async def forward(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        raw = request.rel_url.raw_path
        base = f"{ADMIN}/tenants/{slug}/"
        if not raw.startswith(base):
            raise ApiError(404, "not_found", "No such route.")
        rest = raw[len(base):]
        prefix = rest.split("/", 1)[0]
        if prefix in TENANT_OWN:
            raise ApiError(405, "method_not_allowed", "Method not allowed on this route.")
        upstream = ADMIN_PREFIXES.get(prefix)
        if upstream is None or RouteTable.unsafe_path("/" + rest):
            raise ApiError(404, "not_found", "No such route.")
        db: Database = self._db_of()
        tenant = await handlers.tenant(UnitOfWork(db), slug)
        rid = request_id_of(request)
        headers = {
            H_INTERNAL: self.internal_secret, H_TENANT_ID: str(tenant.id), H_TENANT: tenant.slug,
            H_TENANT_NAME: quote(tenant.name, safe=""), H_SCOPES: domain.ADMIN_SCOPE, H_REQUEST_ID: rid,
        }
        actor = request.get(ACTOR_KEY)
        if actor is not None and not actor.is_operator:
            headers[H_STAFF_ID], headers[H_STAFF_ROLE] = str(actor.staff_id), str(actor.role)
        query = request.rel_url.raw_query_string
        path_qs = "/admin/v1/" + rest + (f"?{query}" if query else "")
        limit = self.upload_limit if prefix in UPLOAD_PREFIXES else self.json_limit
        causal = self.gateway.causal.begin(tenant.slug, upstream, headers, request.headers.get(H_TOKEN))
        response = await self.gateway.upstreams.forward(request, upstream, path_qs, headers, limit,
                                                         {H_REQUEST_ID: rid}, causal)
        await self.gateway.share(causal)
        return response
