"""The transactional outbox writer: events are rows written in the caller's own transaction."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.bus.envelope import CloudEvent
from shared.bus.tables import outbox
from shared.consistency import recording

NOTIFY_CHANNEL = "learn_outbox"
_INSERT = sa.insert(outbox)
# PostgreSQL: the row and the relay's wake-up in one statement (one round trip less per write). pg_notify in a
# transaction is delivered at commit, and only if it commits, exactly like NOTIFY; duplicates fold into one.
_INSERT_NOTIFY = sa.insert(outbox).from_select(
    ["event_id", "routing_key", "body"],
    sa.select(sa.bindparam("event_id", type_=sa.String(64)), sa.bindparam("routing_key", type_=sa.String(255)),
              sa.bindparam("body", type_=sa.LargeBinary()))
    .select_from(sa.select(sa.literal_column(f"pg_notify('{NOTIFY_CHANNEL}', '')")).subquery("wake")),
    include_defaults=False,
)

# Relays in this process, by database URL: woken right after a commit that wrote events (no poll delay; on SQLite,
# which has no LISTEN/NOTIFY, this is how the embedded default stays snappy).
_local_relays: dict[str, set[Callable[[], None]]] = {}


def register_local_relay(url: str, wake: Callable[[], None]) -> None:
    _local_relays.setdefault(url, set()).add(wake)


def unregister_local_relay(url: str, wake: Callable[[], None]) -> None:
    _local_relays.get(url, set()).discard(wake)


def _wake_local(url: str) -> None:
    for wake in list(_local_relays.get(url, ())):
        wake()


async def add(session: AsyncSession, *events: CloudEvent) -> None:
    """Stage ``events`` for publication; they go out only if the surrounding transaction commits."""
    if not events:
        return
    rows = [{"event_id": ev.id, "routing_key": ev.routing_key, "body": ev.to_bytes()} for ev in events]
    notify = (session.bind is not None and session.bind.dialect.name == "postgresql"
              and session.info.get("notified_tx") is not session.get_transaction())
    # One event is one execute (a list would take the executemany path, slower for a single row).
    await session.execute(_INSERT_NOTIFY if notify else _INSERT, rows[0] if len(rows) == 1 else rows)
    if notify:
        # Delivered by PostgreSQL at commit, and only if the transaction commits: wakes the relay at once.
        session.info["notified_tx"] = session.get_transaction()
    recorded = recording()
    if recorded is not None:
        # The request that writes these events tells the gateway once they are committed (shared/consistency.py).
        committed = [(ev.tenant, ev.event_type, ev.id) for ev in events]

        def note_committed(_session: object) -> None:
            recorded.extend(committed)

        event.listen(session.sync_session, "after_commit", note_committed, once=True)
    bind = session.bind
    if bind is not None and not session.info.get("local_wake"):
        engine = bind if isinstance(bind, AsyncEngine) else bind.engine
        url = engine.url.render_as_string(hide_password=False)
        if url in _local_relays:
            session.info["local_wake"] = True

            def after_commit(_session: object) -> None:
                session.info.pop("local_wake", None)
                _wake_local(url)

            def after_rollback(*_args: object) -> None:
                session.info.pop("local_wake", None)

            event.listen(session.sync_session, "after_commit", after_commit, once=True)
            event.listen(session.sync_session, "after_soft_rollback", after_rollback, once=True)
