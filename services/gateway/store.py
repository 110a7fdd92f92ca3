"""Gateway tables (the directory: tenants, users, API keys) and their queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db import BigId, Timestamp, insert_ignoring_conflicts

metadata = sa.MetaData()


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("slug", sa.String(63), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("plan", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# Directory users: the people the API consumer enrolls; user_id is chosen by the consumer, unique per tenant.
users = sa.Table(
    "users",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(24), nullable=False),
    # HMAC-SHA256(pepper, key) in hex: the key itself is never stored.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_by", sa.BigInteger, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_used_at", Timestamp, nullable=True),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    # A per-course key's course ids (ADR 0019); NULL: every course of the tenant.
    sa.Column("course_ids", sa.JSON, nullable=True),
)


# --- tenants ---------------------------------------------------------------------------------------------


async def tenant_by_slug(session: AsyncSession, slug: str) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(tenants).where(tenants.c.slug == slug))).first()


async def insert_tenant(session: AsyncSession, values: dict[str, Any]) -> sa.Row[Any]:
    """Raises IntegrityError (a unique violation) when the slug is taken."""
    return (await session.execute(sa.insert(tenants).values(**values).returning(*tenants.c))).one()


async def update_tenant(session: AsyncSession, tenant_id: int, changes: dict[str, Any]) -> sa.Row[Any]:
    stmt = sa.update(tenants).where(tenants.c.id == tenant_id).values(**changes).returning(*tenants.c)
    return (await session.execute(stmt)).one()


async def _page(session: AsyncSession, stmt: sa.Select[Any], column: sa.Column[Any], after_id: int | None,
                limit: int) -> list[sa.Row[Any]]:
    """Keyset page: newest first, ``limit`` rows with ``column`` below ``after_id``."""
    stmt = stmt.order_by(column.desc()).limit(limit)
    if after_id:
        stmt = stmt.where(column < after_id)
    return list((await session.execute(stmt)).all())


async def tenants_page(session: AsyncSession, after_id: int | None, limit: int) -> list[sa.Row[Any]]:
    return await _page(session, sa.select(tenants), tenants.c.id, after_id, limit)


# --- API keys --------------------------------------------------------------------------------------------


async def insert_key(session: AsyncSession, values: dict[str, Any]) -> sa.Row[Any]:
    return (await session.execute(sa.insert(api_keys).values(**values).returning(*api_keys.c))).one()


async def key_of(session: AsyncSession, tenant_id: int, key_id: int) -> sa.Row[Any] | None:
    stmt = sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
    return (await session.execute(stmt)).first()


async def revoke_key(session: AsyncSession, tenant_id: int, key_id: int, when: datetime) -> sa.Row[Any] | None:
    """Stamp ``revoked_at`` on a key not revoked yet; None if there is no such key or it was revoked before."""
    stmt = (sa.update(api_keys)
            .where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=when).returning(*api_keys.c))
    return (await session.execute(stmt)).first()


async def keys_page(session: AsyncSession, tenant_id: int, after_id: int | None, limit: int) -> list[sa.Row[Any]]:
    stmt = sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id)
    return await _page(session, stmt, api_keys.c.id, after_id, limit)


# --- directory users -------------------------------------------------------------------------------------


async def user_of(session: AsyncSession, tenant_id: int, user_id: int) -> sa.Row[Any] | None:
    stmt = sa.select(users).where(users.c.tenant_id == tenant_id, users.c.user_id == user_id)
    return (await session.execute(stmt)).first()


async def insert_user_if_new(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the user unless one with its (tenant_id, user_id) exists; True if inserted."""
    stmt = insert_ignoring_conflicts(session, users, values).returning(users.c.user_id)
    return (await session.execute(stmt)).first() is not None


async def user_for_update(session: AsyncSession, tenant_id: int, user_id: int) -> sa.Row[Any]:
    stmt = (sa.select(users).where(users.c.tenant_id == tenant_id, users.c.user_id == user_id)
            .with_for_update())
    return (await session.execute(stmt)).one()


async def update_user(session: AsyncSession, tenant_id: int, user_id: int, name: str, email: str,
                      when: datetime) -> None:
    """Change the name and email, one revision up."""
    await session.execute(
        sa.update(users).where(users.c.tenant_id == tenant_id, users.c.user_id == user_id)
        .values(name=name, email=email, revision=users.c.revision + 1, updated_at=when))


async def users_page(session: AsyncSession, tenant_id: int, after_id: int | None, limit: int) -> list[sa.Row[Any]]:
    stmt = sa.select(users).where(users.c.tenant_id == tenant_id)
    return await _page(session, stmt, users.c.user_id, after_id, limit)


# --- the request pipeline (outside any transaction) ------------------------------------------------------


async def key_by_hash(conn: AsyncConnection, key_hash: str) -> Any:
    """The key, its tenant and its creating user in one round trip (the gateway's only per-request query)."""
    stmt = (
        sa.select(
            api_keys.c.id, api_keys.c.key_hash, api_keys.c.scopes, api_keys.c.expires_at, api_keys.c.revoked_at,
            api_keys.c.created_by, api_keys.c.course_ids, tenants.c.id.label("tenant_id"), tenants.c.slug,
            tenants.c.name.label("tenant_name"),
            tenants.c.plan, tenants.c.status, users.c.name.label("owner_name"),
        )
        .select_from(
            api_keys.join(tenants, tenants.c.id == api_keys.c.tenant_id).outerjoin(
                users, sa.and_(users.c.tenant_id == api_keys.c.tenant_id, users.c.user_id == api_keys.c.created_by)
            )
        )
        .where(api_keys.c.key_hash == key_hash)
    )
    return (await conn.execute(stmt)).first()


async def touch_keys(conn: AsyncConnection, key_ids: list[int], when: datetime) -> None:
    await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id.in_(key_ids))
        .where(sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < when))
        .values(last_used_at=when)
    )
