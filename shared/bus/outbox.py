"""The transactional outbox writer: events are rows written in the caller's own transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.envelope import CloudEvent
from shared.bus.tables import outbox

NOTIFY_CHANNEL = "learn_outbox"


async def add(session: AsyncSession, *events: CloudEvent) -> None:
    """Stage ``events`` for publication; they go out only if the surrounding transaction commits."""
    if not events:
        return
    await session.execute(
        sa.insert(outbox),
        [{"event_id": ev.id, "routing_key": ev.routing_key, "body": ev.to_bytes()} for ev in events],
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql" and (
        session.info.get("notified_tx") is not session.get_transaction()
    ):
        # Delivered by PostgreSQL at commit, and only if the transaction commits: wakes the relay at once.
        await session.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))
        session.info["notified_tx"] = session.get_transaction()
