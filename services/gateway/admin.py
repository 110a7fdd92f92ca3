"""The admin API's own resources (CONTRACT §8): tenants, API keys, directory users; and the admin proxy.

Writes that another service owns (modules, lessons, cohorts, templates, SCORM uploads ...) are forwarded to
``<service>/admin/v1/<rest>`` with the tenant's headers and the scope ``admin``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError

from services.gateway import domain, store
from services.gateway.routes import ADMIN_PREFIXES, UPLOAD_PREFIXES, RouteTable
from services.gateway.store import api_keys, tenants, users
from shared.bus import outbox
from shared.bus.envelope import new_event
from shared.consistency import H_TOKEN
from shared.db import Database, as_utc, insert_ignoring_conflicts, is_unique_violation
from shared.events.directory import ApiKeyRevoked, TenantUpdated, UserUpserted
from shared.http import (
    H_INTERNAL,
    H_REQUEST_ID,
    H_SCOPES,
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

ADMIN = "/admin/api/v1"
TENANT_OWN = frozenset({"api-keys", "users"})


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
        if v not in domain.PLANS:
            raise ValueError(f"must be one of {', '.join(domain.PLANS)}")
        return v


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    plan: str | None = None
    status: str | None = None

    @field_validator("plan")
    @classmethod
    def _plan(cls, v: str | None) -> str | None:
        if v is not None and v not in domain.PLANS:
            raise ValueError(f"must be one of {', '.join(domain.PLANS)}")
        return v

    @field_validator("status")
    @classmethod
    def _status(cls, v: str | None) -> str | None:
        if v is not None and v not in domain.TENANT_STATUSES:
            raise ValueError(f"must be one of {', '.join(domain.TENANT_STATUSES)}")
        return v


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    scopes: list[str] = Field(min_length=1)
    expires_at: datetime | None = None
    created_by: int | None = Field(default=None, ge=1, description="directory user id of the admin behind it")
    mode: str = "live"

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
            "last_used_at": as_utc(row.last_used_at), "expires_at": expires, "revoked_at": as_utc(row.revoked_at)}


def user_view(row: Any) -> dict[str, Any]:
    return {"id": row.user_id, "name": row.name, "email": row.email, "revision": row.revision,
            "created_at": as_utc(row.created_at), "updated_at": as_utc(row.updated_at)}


def _positive(raw: str, resource: str) -> int:
    value = positive_int(raw)
    if value is None:
        raise ApiError.not_found(resource)
    return value


class AdminApi:
    def __init__(self, db_of: Any, codec: CursorCodec, keys_of: Any, pepper: bytes):
        self._db_of = db_of  # callables: the database and key cache exist only once the app started
        self._keys_of = keys_of
        self.codec = codec
        self.pepper = pepper

    @property
    def db(self) -> Database:
        db: Database = self._db_of()
        return db

    async def _tenant(self, session: Any, slug: str) -> Any:
        row = await store.tenant_by_slug(session, slug) if domain.valid_slug(slug) else None
        if row is None:
            raise ApiError.not_found("tenant")
        return row

    # --- tenants ----------------------------------------------------------------------------------------

    async def create_tenant(self, request: web.Request) -> web.Response:
        body = await read_json(request, TenantCreate)
        now = datetime.now(UTC)
        try:
            async with self.db.transaction() as session:
                result = await session.execute(
                    sa.insert(tenants).values(slug=body.slug, name=body.name.strip(), plan=body.plan,
                                              status="active", created_at=now, updated_at=now)
                    .returning(*tenants.c)
                )
                row = result.one()
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise ApiError.invalid(f"The slug '{body.slug}' is taken.") from None
            raise
        return ok(request, tenant_view(row), status=201)

    async def list_tenants(self, request: web.Request) -> web.Response:
        page = page_request(request, self.codec, "tenants", 0, {})
        stmt = sa.select(tenants).order_by(tenants.c.id.desc()).limit(page.limit + 1)
        if page.after_id:
            stmt = stmt.where(tenants.c.id < page.after_id)
        async with self.db.transaction() as session:
            rows = list((await session.execute(stmt)).all())
        cursor = next_cursor(self.codec, rows, page, "tenants", 0, {}, id_of=lambda r: r.id)
        return ok(request, [tenant_view(r) for r in rows], cursor)

    async def get_tenant(self, request: web.Request) -> web.Response:
        async with self.db.transaction() as session:
            row = await self._tenant(session, request.match_info["slug"])
        return ok(request, tenant_view(row))

    async def update_tenant(self, request: web.Request) -> web.Response:
        body = await read_json(request, TenantUpdate)
        changes = body.model_dump(exclude_unset=True)
        if changes.get("name") is not None:
            changes["name"] = changes["name"].strip()
        changes = {k: v for k, v in changes.items() if v is not None}
        async with self.db.transaction() as session:
            row = await self._tenant(session, request.match_info["slug"])
            if changes:
                before = row.status
                changes["updated_at"] = datetime.now(UTC)
                row = (await session.execute(
                    sa.update(tenants).where(tenants.c.id == row.id).values(**changes).returning(*tenants.c)
                )).one()
                if row.status != before:  # the scorm service ends a suspended tenant's launches
                    await outbox.add(session, new_event(
                        "tenant.updated", TenantUpdated(status=row.status, updated_at=changes["updated_at"]),
                        service="gateway", tenant=row.slug, tenant_id=row.id, subject=f"tenant/{row.id}",
                        request_id=request_id_of(request)))
        self._keys_of().forget_tenant(row.id)
        return ok(request, tenant_view(row))

    # --- API keys ---------------------------------------------------------------------------------------

    async def create_key(self, request: web.Request) -> web.Response:
        body = await read_json(request, KeyCreate)
        plain = domain.generate_key(body.mode)
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            tenant = await self._tenant(session, request.match_info["slug"])
            if body.created_by is not None and await store.user_of(session, tenant.id, body.created_by) is None:
                raise ApiError.invalid(f"'created_by': no directory user {body.created_by} in this tenant.")
            row = (await session.execute(
                sa.insert(api_keys).values(
                    tenant_id=tenant.id, name=body.name.strip(), prefix=domain.display_prefix(plain),
                    key_hash=domain.hash_key(self.pepper, plain), scopes=body.scopes, created_by=body.created_by,
                    created_at=now, expires_at=body.expires_at,
                ).returning(*api_keys.c)
            )).one()
        view = key_view(row, tenant.slug)
        # An Idempotency-Key replay answers the same key without its secret: the secret is shown once and never
        # stored in plain text (a client that lost the first answer revokes this key, by its id, and makes another).
        store_instead(request, dumps({"data": view, "next_cursor": None, "request_id": request_id_of(request)})
                      .encode())
        view["key"] = plain  # shown once, here only
        return ok(request, view, status=201)

    async def list_keys(self, request: web.Request) -> web.Response:
        async with self.db.transaction() as session:
            tenant = await self._tenant(session, request.match_info["slug"])
            page = page_request(request, self.codec, "api_keys", tenant.id, {})
            stmt = (sa.select(api_keys).where(api_keys.c.tenant_id == tenant.id)
                    .order_by(api_keys.c.id.desc()).limit(page.limit + 1))
            if page.after_id:
                stmt = stmt.where(api_keys.c.id < page.after_id)
            rows = list((await session.execute(stmt)).all())
        cursor = next_cursor(self.codec, rows, page, "api_keys", tenant.id, {}, id_of=lambda r: r.id)
        return ok(request, [key_view(r, tenant.slug) for r in rows], cursor)

    async def get_key(self, request: web.Request) -> web.Response:
        key_id = _positive(request.match_info["id"], "api_key")
        async with self.db.transaction() as session:
            tenant = await self._tenant(session, request.match_info["slug"])
            row = (await session.execute(
                sa.select(api_keys).where(api_keys.c.tenant_id == tenant.id, api_keys.c.id == key_id)
            )).first()
        if row is None:
            raise ApiError.not_found("api_key")
        return ok(request, key_view(row, tenant.slug))

    async def revoke_key(self, request: web.Request) -> web.Response:
        """Revoke (idempotent): the first call stamps ``revoked_at`` and publishes ``api_key.revoked``."""
        key_id = _positive(request.match_info["id"], "api_key")
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            tenant = await self._tenant(session, request.match_info["slug"])
            row = (await session.execute(
                sa.update(api_keys)
                .where(api_keys.c.tenant_id == tenant.id, api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now).returning(*api_keys.c)
            )).first()
            if row is not None:
                await outbox.add(session, new_event(
                    "api_key.revoked", ApiKeyRevoked(key_id=row.id, prefix=row.prefix, revoked_at=now),
                    service="gateway", tenant=tenant.slug, tenant_id=tenant.id, subject=f"api_key/{row.id}",
                    request_id=request_id_of(request),
                ))
            else:
                row = (await session.execute(
                    sa.select(api_keys).where(api_keys.c.tenant_id == tenant.id, api_keys.c.id == key_id)
                )).first()
                if row is None:
                    raise ApiError.not_found("api_key")
        self._keys_of().forget_key(key_id)
        return ok(request, key_view(row, tenant.slug))

    # --- directory users --------------------------------------------------------------------------------

    async def upsert_user(self, request: web.Request) -> web.Response:
        user_id = _positive(request.match_info["user_id"], "user")
        body = await read_json(request, UserUpsert)
        name, email = body.name.strip(), body.email.strip()
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            tenant = await self._tenant(session, request.match_info["slug"])
            insert = insert_ignoring_conflicts(session, users, dict(
                tenant_id=tenant.id, user_id=user_id, name=name, email=email, revision=1, created_at=now,
                updated_at=now,
            )).returning(users.c.user_id)
            created = (await session.execute(insert)).first() is not None
            status = 201 if created else 200
            if not created:
                current = (await session.execute(
                    sa.select(users).where(users.c.tenant_id == tenant.id, users.c.user_id == user_id)
                    .with_for_update()
                )).one()
                if current.name == name and current.email == email:
                    return ok(request, user_view(current))  # nothing changed: no event
                await session.execute(
                    sa.update(users).where(users.c.tenant_id == tenant.id, users.c.user_id == user_id)
                    .values(name=name, email=email, revision=users.c.revision + 1, updated_at=now))
            row = await store.user_of(session, tenant.id, user_id)
            assert row is not None
            await outbox.add(session, new_event(
                "user.upserted",
                UserUpserted(user_id=user_id, name=name, email=email, revision=row.revision, updated_at=now),
                service="gateway", tenant=tenant.slug, tenant_id=tenant.id, subject=f"user/{user_id}",
                request_id=request_id_of(request),
            ))
        return ok(request, user_view(row), status=status)

    async def get_user(self, request: web.Request) -> web.Response:
        user_id = _positive(request.match_info["user_id"], "user")
        async with self.db.transaction() as session:
            tenant = await self._tenant(session, request.match_info["slug"])
            row = await store.user_of(session, tenant.id, user_id)
        if row is None:
            raise ApiError.not_found("user")
        return ok(request, user_view(row))

    async def list_users(self, request: web.Request) -> web.Response:
        async with self.db.transaction() as session:
            tenant = await self._tenant(session, request.match_info["slug"])
            page = page_request(request, self.codec, "users", tenant.id, {})
            stmt = (sa.select(users).where(users.c.tenant_id == tenant.id)
                    .order_by(users.c.user_id.desc()).limit(page.limit + 1))
            if page.after_id:
                stmt = stmt.where(users.c.user_id < page.after_id)
            rows = list((await session.execute(stmt)).all())
        cursor = next_cursor(self.codec, rows, page, "users", tenant.id, {}, id_of=lambda r: r.user_id)
        return ok(request, [user_view(r) for r in rows], cursor)


class AdminProxy:
    """``/admin/api/v1/tenants/{slug}/<prefix>/...`` → ``<service>/admin/v1/<prefix>/...`` as the tenant's admin."""

    def __init__(self, gateway: Any, db_of: Any, internal_secret: str, upload_limit: int, json_limit: int):
        self.gateway = gateway
        self._db_of = db_of
        self.internal_secret = internal_secret
        self.upload_limit = upload_limit
        self.json_limit = json_limit

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
        async with db.transaction() as session:
            tenant = await store.tenant_by_slug(session, slug) if domain.valid_slug(slug) else None
        if tenant is None:
            raise ApiError.not_found("tenant")
        rid = request_id_of(request)
        headers = {
            H_INTERNAL: self.internal_secret, H_TENANT_ID: str(tenant.id), H_TENANT: tenant.slug,
            H_TENANT_NAME: quote(tenant.name, safe=""), H_SCOPES: domain.ADMIN_SCOPE, H_REQUEST_ID: rid,
        }
        query = request.rel_url.raw_query_string
        path_qs = "/admin/v1/" + rest + (f"?{query}" if query else "")
        limit = self.upload_limit if prefix in UPLOAD_PREFIXES else self.json_limit
        causal = self.gateway.causal.begin(tenant.slug, upstream, headers, request.headers.get(H_TOKEN))
        response = await self.gateway.upstreams.forward(request, upstream, path_qs, headers, limit,
                                                         {H_REQUEST_ID: rid}, causal)
        await causal.share()
        return response
