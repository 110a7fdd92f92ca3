"""Gateway tables (the directory: tenants, users, API keys) and their queries; the replicas' read-your-writes
fan-out over PostgreSQL NOTIFY/LISTEN (``ReplicaFanout``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db import BigId, Timestamp, insert_ignoring_conflicts, listen_forever, upsert

fanout_log = structlog.get_logger("gateway.consistency")

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


async def tenant_by_id(session: AsyncSession, tenant_id: int) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(tenants).where(tenants.c.id == tenant_id))).first()


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


# --- tenant staff, their links, UI sessions, sign-in failures, the audit log (ADR 0021) ------------------

staff = sa.Table(
    "staff",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # argon2id (argon2-cffi's PHC string); None until the invitation is accepted
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant_id", "email", name="uq_staff_tenant_email"),
)

# Invitation and password-reset links: only the SHA-256 of the link's token is stored; single use, expiring.
staff_links = sa.Table(
    "staff_links",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("staff_id", sa.BigInteger, sa.ForeignKey("staff.id"), nullable=False, index=True),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("used_at", Timestamp, nullable=True),
)

# Admin UI and staff API sessions, shared by every gateway replica; keyed by the SHA-256 of the secret.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # operator | staff
    sa.Column("tenant_id", sa.BigInteger, nullable=True),
    sa.Column("staff_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("current_tenant", sa.String(63), nullable=True),
    sa.Column("flashes", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
)

sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("failed_at", Timestamp, nullable=False),
    sa.Index("ix_sign_in_failures_key_at", "key", "failed_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(16), nullable=False),  # operator | staff
    sa.Column("staff_id", sa.BigInteger, nullable=True),
    sa.Column("actor_email", sa.String(320), nullable=True),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("path", sa.String(1000), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(40), nullable=False),
    sa.Column("before_digest", sa.String(64), nullable=True),
    sa.Column("after_digest", sa.String(64), nullable=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Index("ix_audit_log_tenant_id", "tenant_id", "id"),
)


async def insert_staff(session: AsyncSession, values: dict[str, Any]) -> sa.Row[Any]:
    """Raises IntegrityError (a unique violation) when the email is taken in the tenant."""
    return (await session.execute(sa.insert(staff).values(**values).returning(*staff.c))).one()


async def staff_of(session: AsyncSession, tenant_id: int, staff_id: int, *, for_update: bool = False
                   ) -> sa.Row[Any] | None:
    stmt = sa.select(staff).where(staff.c.tenant_id == tenant_id, staff.c.id == staff_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).first()


async def staff_by_email(session: AsyncSession, tenant_id: int, email: str) -> sa.Row[Any] | None:
    stmt = sa.select(staff).where(staff.c.tenant_id == tenant_id, staff.c.email == email)
    return (await session.execute(stmt)).first()


async def update_staff(session: AsyncSession, staff_id: int, changes: dict[str, Any]) -> sa.Row[Any]:
    stmt = (sa.update(staff).where(staff.c.id == staff_id)
            .values(**changes, revision=staff.c.revision + 1).returning(*staff.c))
    return (await session.execute(stmt)).one()


async def staff_page(session: AsyncSession, tenant_id: int, after_id: int | None, limit: int) -> list[sa.Row[Any]]:
    return await _page(session, sa.select(staff).where(staff.c.tenant_id == tenant_id), staff.c.id, after_id, limit)


async def count_owners(session: AsyncSession, tenant_id: int) -> int:
    stmt = sa.select(sa.func.count()).select_from(staff).where(
        staff.c.tenant_id == tenant_id, staff.c.role == "owner", staff.c.status != "suspended")
    return int((await session.execute(stmt)).scalar_one())


async def insert_link(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(staff_links).values(**values))


async def expire_links(session: AsyncSession, staff_id: int, when: datetime) -> None:
    """Every open link of this staff member is spent (a new invite or reset replaces the older ones)."""
    await session.execute(sa.update(staff_links).where(staff_links.c.staff_id == staff_id,
                                                       staff_links.c.used_at.is_(None)).values(used_at=when))


async def spend_link(session: AsyncSession, token_hash: str, when: datetime) -> sa.Row[Any] | None:
    """Mark the link used if it is unused and unexpired; its row, else None (one winner under concurrency)."""
    stmt = (sa.update(staff_links)
            .where(staff_links.c.token_hash == token_hash, staff_links.c.used_at.is_(None),
                   staff_links.c.expires_at > when)
            .values(used_at=when).returning(*staff_links.c))
    return (await session.execute(stmt)).first()


async def link_of(session: AsyncSession, token_hash: str) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(staff_links).where(staff_links.c.token_hash == token_hash))).first()


async def staff_by_id(session: AsyncSession, staff_id: int) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(staff).where(staff.c.id == staff_id))).first()


async def insert_session(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(ui_sessions).values(**values))


async def session_of(session: AsyncSession, id_hash: str, when: datetime) -> sa.Row[Any] | None:
    stmt = sa.select(ui_sessions).where(ui_sessions.c.id_hash == id_hash, ui_sessions.c.expires_at > when)
    return (await session.execute(stmt)).first()


async def save_session(session: AsyncSession, id_hash: str, changes: dict[str, Any]) -> None:
    await session.execute(sa.update(ui_sessions).where(ui_sessions.c.id_hash == id_hash).values(**changes))


async def delete_session(session: AsyncSession, id_hash: str) -> None:
    await session.execute(sa.delete(ui_sessions).where(ui_sessions.c.id_hash == id_hash))


async def delete_staff_sessions(session: AsyncSession, staff_id: int) -> None:
    await session.execute(sa.delete(ui_sessions).where(ui_sessions.c.staff_id == staff_id))


async def purge_sessions(session: AsyncSession, when: datetime) -> None:
    await session.execute(sa.delete(ui_sessions).where(ui_sessions.c.expires_at <= when))


async def failures_since(session: AsyncSession, key: str, since: datetime) -> tuple[int, datetime | None]:
    """(failures of ``key`` since ``since``, the oldest of them)."""
    stmt = sa.select(sa.func.count(), sa.func.min(sign_in_failures.c.failed_at)).where(
        sign_in_failures.c.key == key, sign_in_failures.c.failed_at > since)
    count, oldest = (await session.execute(stmt)).one()
    return int(count), oldest


async def record_failure(session: AsyncSession, key: str, when: datetime, older_than: datetime) -> None:
    await session.execute(sa.delete(sign_in_failures).where(sign_in_failures.c.key == key,
                                                            sign_in_failures.c.failed_at <= older_than))
    await session.execute(sa.insert(sign_in_failures).values(key=key, failed_at=when))


async def clear_failures(session: AsyncSession, key: str) -> None:
    await session.execute(sa.delete(sign_in_failures).where(sign_in_failures.c.key == key))


async def insert_audit(session: AsyncSession, values: dict[str, Any]) -> sa.Row[Any]:
    return (await session.execute(sa.insert(audit_log).values(**values).returning(*audit_log.c))).one()


async def audit_page(session: AsyncSession, tenant_id: int, after_id: int | None, limit: int) -> list[sa.Row[Any]]:
    stmt = sa.select(audit_log).where(audit_log.c.tenant_id == tenant_id)
    return await _page(session, stmt, audit_log.c.id, after_id, limit)


# Per-tenant single sign-on (OIDC authorization code + PKCE): the provider and this gateway's client there.
tenant_sso = sa.Table(
    "tenant_sso",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("issuer", sa.String(500), nullable=False),
    sa.Column("client_id", sa.String(300), nullable=False),
    sa.Column("client_secret", sa.String(500), nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
)


async def sso_of(session: AsyncSession, tenant_id: int) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(tenant_sso).where(tenant_sso.c.tenant_id == tenant_id))).first()


async def put_sso(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(upsert(session, tenant_sso, values, ["tenant_id"],
                                 {k: v for k, v in values.items() if k != "tenant_id"}))


async def delete_sso(session: AsyncSession, tenant_id: int) -> None:
    await session.execute(sa.delete(tenant_sso).where(tenant_sso.c.tenant_id == tenant_id))


class ReplicaFanout:
    """Read-your-writes (ADR 0010) between gateway replicas on PostgreSQL, best effort: each replica NOTIFYs the
    events it recorded (``domain.CausalTracker``), and every other replica LISTENs and records them too, so a
    client that does not echo ``Consistency-Token`` still reads its writes on another replica in practice. (The
    echoed token is the guarantee: a notification may arrive a moment after the client's next request.)"""

    CHANNEL = "learn_consistency"

    def __init__(self, record: Callable[[str, str], None], db: Any, dsn: str):
        self.record = record  # the tracker's ``record_header``
        self.db = db
        self.dsn = dsn
        self.origin = secrets.token_hex(6)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, rest = payload.partition("|")
        tenant, _, events = rest.partition("|")
        if origin != self.origin and tenant and events:
            self.record(tenant, events)

    async def publish(self, tenant: str, events: str) -> None:
        payload = f"{self.origin}|{tenant}|{events}"
        if len(payload) > 7900:  # NOTIFY's payload limit is 8000 bytes
            return
        try:
            await self.db.notify(self.CHANNEL, payload)
        except Exception as exc:  # the write itself succeeded; the replicas only miss a hint
            fanout_log.warning("consistency_fanout_failed", error=repr(exc))

    async def run(self) -> None:
        await listen_forever(self.dsn, self.CHANNEL, self._received, what="consistency_listen")
