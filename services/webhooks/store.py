"""Webhooks tables and queries: endpoints, the delivery table (one row per event and endpoint: the outbox the
delivery loop drains) and the attempt log. SQL only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.db import BigId, Timestamp

metadata = sa.MetaData()

endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("event_types", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("secret", sa.String(100), nullable=False),
    sa.Column("previous_secret", sa.String(100)),
    sa.Column("previous_secret_until", Timestamp),
    sa.Column("failing_since", Timestamp),
    sa.Column("disabled_reason", sa.String(200)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_endpoints_tenant", "tenant_id", "id"),
)

#: pending -> delivered | failed (retries exhausted); a replay makes a row pending again
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("endpoint_id", sa.BigInteger, sa.ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False),
    sa.Column("webhook_id", sa.String(100), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Timestamp),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_attempt_at", Timestamp),
    sa.Column("delivered_at", Timestamp),
    sa.UniqueConstraint("endpoint_id", "webhook_id", name="uq_messages_endpoint_webhook_id"),
    sa.Index("ix_messages_due", "status", "next_attempt_at"),
    sa.Index("ix_messages_endpoint", "endpoint_id", "id"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("endpoint_id", sa.BigInteger, nullable=False),
    sa.Column("attempted_at", Timestamp, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.String(300)),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("response", sa.Text),
    sa.Index("ix_attempts_message", "message_id", "id"),
    sa.Index("ix_attempts_time", "attempted_at"),
)


# --- endpoints ----------------------------------------------------------------------------------------------


async def insert_endpoint(session: AsyncSession, values: dict[str, Any]) -> Any:
    result = await session.execute(endpoints.insert().values(**values).returning(*endpoints.c))
    return result.one()


async def endpoint(session: AsyncSession, tenant_id: int, endpoint_id: int, *, lock: bool = False) -> Any:
    stmt = sa.select(endpoints).where(endpoints.c.tenant_id == tenant_id, endpoints.c.id == endpoint_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).one_or_none()


async def list_endpoints(session: AsyncSession, tenant_id: int, limit: int, before: int | None) -> list[Any]:
    stmt = sa.select(endpoints).where(endpoints.c.tenant_id == tenant_id)
    if before is not None:
        stmt = stmt.where(endpoints.c.id < before)
    return list((await session.execute(stmt.order_by(endpoints.c.id.desc()).limit(limit + 1))).all())


_ENABLED_OF = (sa.select(endpoints.c.id, endpoints.c.tenant_id, endpoints.c.event_types)
               .where(endpoints.c.tenant_id.in_(sa.bindparam("tenants", expanding=True)),
                      endpoints.c.status == "enabled"))


def enabled_endpoints_of(session: Session, tenant_ids: Sequence[int]) -> list[Any]:
    """The enabled endpoints of these tenants (sync: run inside a commit, see handlers.event_received)."""
    return list(session.execute(_ENABLED_OF, {"tenants": list(tenant_ids)}).all())


async def update_endpoint(session: AsyncSession, endpoint_id: int, values: dict[str, Any]) -> Any:
    stmt = endpoints.update().where(endpoints.c.id == endpoint_id).values(**values).returning(*endpoints.c)
    return (await session.execute(stmt)).one()


async def delete_endpoint(session: AsyncSession, tenant_id: int, endpoint_id: int) -> bool:
    await session.execute(messages.delete().where(messages.c.endpoint_id == endpoint_id,
                                                  messages.c.tenant_id == tenant_id))
    result = await session.execute(endpoints.delete().where(endpoints.c.tenant_id == tenant_id,
                                                            endpoints.c.id == endpoint_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_failing(session: AsyncSession, endpoint_id: int, now: datetime) -> Any:
    """The endpoint's first failure in a row sets ``failing_since``; returns the endpoint."""
    await session.execute(endpoints.update().where(endpoints.c.id == endpoint_id,
                                                   endpoints.c.failing_since.is_(None))
                          .values(failing_since=now))
    stmt = sa.select(endpoints).where(endpoints.c.id == endpoint_id).with_for_update()
    return (await session.execute(stmt)).one_or_none()


async def mark_healthy(session: AsyncSession, endpoint_id: int) -> None:
    await session.execute(endpoints.update().where(endpoints.c.id == endpoint_id,
                                                   endpoints.c.failing_since.is_not(None))
                          .values(failing_since=None))


# --- messages -----------------------------------------------------------------------------------------------


#: ``INSERT … ON CONFLICT DO NOTHING`` per dialect, executed with a list of rows: compiled once (a multi-row VALUES
#: compiled anew for every event and coerced every value in Python)
_ENQUEUE = {"postgresql": postgresql.insert(messages).on_conflict_do_nothing(),
            "sqlite": sqlite.insert(messages).on_conflict_do_nothing()}


async def enqueue(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """One delivery row per endpoint; the same event again (a redelivery) adds nothing."""
    if rows:
        await session.execute(_ENQUEUE[session.get_bind().dialect.name], list(rows))


def enqueue_now(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """:func:`enqueue` on the sync session (inside a commit)."""
    if rows:
        session.execute(_ENQUEUE[session.get_bind().dialect.name], list(rows))


async def message(session: AsyncSession, tenant_id: int, endpoint_id: int, message_id: int) -> Any:
    stmt = sa.select(messages).where(messages.c.tenant_id == tenant_id, messages.c.endpoint_id == endpoint_id,
                                     messages.c.id == message_id)
    return (await session.execute(stmt)).one_or_none()


async def list_messages(session: AsyncSession, tenant_id: int, endpoint_id: int, limit: int, before: int | None,
                        status: str | None) -> list[Any]:
    stmt = sa.select(messages).where(messages.c.tenant_id == tenant_id, messages.c.endpoint_id == endpoint_id)
    if before is not None:
        stmt = stmt.where(messages.c.id < before)
    if status is not None:
        stmt = stmt.where(messages.c.status == status)
    return list((await session.execute(stmt.order_by(messages.c.id.desc()).limit(limit + 1))).all())


async def attempts_of(session: AsyncSession, message_ids: Sequence[int]) -> list[Any]:
    if not message_ids:
        return []
    stmt = sa.select(attempts).where(attempts.c.message_id.in_(message_ids)).order_by(attempts.c.id)
    return list((await session.execute(stmt)).all())


async def make_pending(session: AsyncSession, tenant_id: int, endpoint_id: int, now: datetime, *,
                       message_id: int | None = None, since: datetime | None = None) -> int:
    """Replay: the rows go back to pending, due now, with a fresh retry schedule (the same webhook-id)."""
    stmt = messages.update().where(messages.c.tenant_id == tenant_id, messages.c.endpoint_id == endpoint_id)
    if message_id is not None:
        stmt = stmt.where(messages.c.id == message_id)
    if since is not None:
        stmt = stmt.where(messages.c.created_at >= since)
    result = await session.execute(stmt.values(status="pending", failures=0, next_attempt_at=now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def due_candidates(session: AsyncSession, now: datetime, per_endpoint: int, limit: int) -> list[Any]:
    """Due rows of enabled endpoints, at most ``per_endpoint`` of each, oldest first; each with its endpoint's
    ``updated_at`` (whether a cached endpoint row is still current) and its rank ``rn`` within the endpoint."""
    ranked = (
        sa.select(messages.c.id, messages.c.endpoint_id, messages.c.next_attempt_at,
                  endpoints.c.updated_at.label("endpoint_updated_at"),
                  sa.func.row_number().over(partition_by=messages.c.endpoint_id,
                                            order_by=(messages.c.next_attempt_at, messages.c.id)).label("rn"))
        .select_from(messages.join(endpoints, endpoints.c.id == messages.c.endpoint_id))
        .where(messages.c.status == "pending", messages.c.next_attempt_at <= now, endpoints.c.status == "enabled")
        .subquery()
    )
    stmt = (sa.select(ranked.c.id, ranked.c.endpoint_id, ranked.c.endpoint_updated_at, ranked.c.rn)
            .where(ranked.c.rn <= per_endpoint)
            .order_by(ranked.c.next_attempt_at).limit(limit))
    return list((await session.execute(stmt)).all())


async def claim(session: AsyncSession, ids: Sequence[int], now: datetime, lease_until: datetime) -> list[Any]:
    """Lease due rows: whoever moves ``next_attempt_at`` first sends them (a crashed sender's lease runs out and
    the row is due again: at least once)."""
    if not ids:
        return []
    stmt = (
        messages.update()
        .where(messages.c.id.in_(ids), messages.c.status == "pending", messages.c.next_attempt_at <= now)
        .values(next_attempt_at=lease_until)
        .returning(messages.c.id, messages.c.endpoint_id, messages.c.webhook_id, messages.c.body,
                   messages.c.failures)
    )
    return list((await session.execute(stmt)).all())


async def endpoints_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Any]:
    if not ids:
        return {}
    rows = (await session.execute(sa.select(endpoints).where(endpoints.c.id.in_(ids)))).all()
    return {row.id: row for row in rows}


#: one statement for any number of attempts (executemany): compiled once, one round trip for a batch
_INSERT_ATTEMPTS = attempts.insert()
#: a delivered row, by id (executemany): the statement is compiled once whatever the batch
_DELIVERED = (
    messages.update()
    .where(messages.c.id == sa.bindparam("m_id"))
    .values(status="delivered", attempts=messages.c.attempts + 1, next_attempt_at=None,
            delivered_at=sa.bindparam("m_at", type_=Timestamp), last_attempt_at=sa.bindparam("m_at", type_=Timestamp))
)


async def record_attempt(session: AsyncSession, values: dict[str, Any]) -> None:
    await record_attempts(session, [values])


async def record_attempts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Log attempts (each a dict of the ``attempts`` columns) in one statement."""
    if rows:
        await session.execute(_INSERT_ATTEMPTS, list(rows))


async def finish_delivered(session: AsyncSession, delivered: Sequence[tuple[int, datetime]]) -> None:
    """``(message id, attempt time)`` pairs: each row is delivered, one more attempt counted. In id order, so two
    writers that ever hold the same rows lock them in the same order."""
    if delivered:
        await session.execute(_DELIVERED, [{"m_id": mid, "m_at": at} for mid, at in sorted(delivered)])


async def finish_attempt(session: AsyncSession, message_id: int, values: dict[str, Any]) -> None:
    await session.execute(messages.update().where(messages.c.id == message_id)
                          .values(attempts=messages.c.attempts + 1, **values))


async def backlog(session: AsyncSession) -> list[Any]:
    """Per endpoint: pending rows and the oldest one's creation time."""
    stmt = (sa.select(messages.c.endpoint_id, sa.func.count().label("pending"),
                      sa.func.min(messages.c.created_at).label("oldest"))
            .where(messages.c.status == "pending").group_by(messages.c.endpoint_id))
    return list((await session.execute(stmt)).all())


async def purge(session: AsyncSession, before: datetime) -> int:
    await session.execute(attempts.delete().where(attempts.c.attempted_at < before))
    result = await session.execute(messages.delete().where(messages.c.created_at < before,
                                                           messages.c.status != "pending"))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
