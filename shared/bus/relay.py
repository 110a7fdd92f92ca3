"""The outbox relay: moves committed events from a service's outbox table to the broker.

- Rows are claimed with ``FOR UPDATE SKIP LOCKED`` so several relays (replicas) can run at once.
- A batch is published with pipelined publisher confirms; the rows are deleted in the same transaction only
  after every confirm arrived. A crash in between re-publishes the batch: duplicates are possible, losses are
  not, and consumers are idempotent.
- PostgreSQL ``LISTEN/NOTIFY`` wakes the relay as soon as a transaction with events commits; a poll interval
  is the fallback (and the only mechanism on SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
import structlog

from shared.bus.amqp import OutgoingMessage
from shared.bus.outbox import NOTIFY_CHANNEL, register_local_relay, unregister_local_relay
from shared.bus.tables import outbox
from shared.db import Database, listen_dsn, listen_forever
from shared.http import is_unavailable
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED

log = structlog.get_logger("shared.bus.relay")


# The ids of a batch travel as one array parameter on PostgreSQL (one prepared statement whatever the batch size).
_PG_DELETE = sa.text("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))")
_DELETE = sa.delete(outbox).where(outbox.c.id.in_(sa.bindparam("ids", expanding=True)))


class Publisher(Protocol):
    async def publish_many(self, messages: list[OutgoingMessage]) -> None: ...


@runtime_checkable
class ReconnectingPublisher(Publisher, Protocol):
    """A publisher that can say when its broker connection is back (:class:`shared.bus.amqp.AmqpBus`)."""

    @property
    def ready(self) -> bool: ...

    async def wait_connected(self) -> None: ...


class OutboxRelay:
    def __init__(self, db: Database, publisher: Publisher, *, service: str, batch_size: int = 200,
                 poll_interval: float = 1.0, min_backoff: float = 0.5, max_backoff: float = 10.0):
        self.db = db
        self.publisher = publisher
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        #: the pause after a failed publish doubles from min_backoff up to max_backoff
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._listener: Any = None
        self._last_metrics = 0.0
        # Built once (a select/delete constructed per batch was SQLAlchemy coercion work in the relay's profile).
        self._claim = (
            sa.select(outbox.c.id, outbox.c.event_id, outbox.c.routing_key, outbox.c.body)
            .order_by(outbox.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        self._delete = _PG_DELETE if db.is_postgres else _DELETE

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many events went out (0 when the outbox is empty)."""
        async with self.db.transaction() as session:
            rows = (await session.execute(self._claim)).all()
            if not rows:
                return 0
            await self.publisher.publish_many(
                [OutgoingMessage(r.routing_key, bytes(r.body), r.event_id) for r in rows]
            )
            # Only now, after the broker confirmed every message; one statement for the whole batch.
            await session.execute(self._delete, {"ids": [r.id for r in rows]})
        OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def drain(self) -> int:
        total = 0
        while (n := await self.publish_batch()) > 0:
            total += n
        return total

    async def update_metrics(self) -> None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)))).one()
        OUTBOX_BACKLOG.labels(self.service).set(row[0])
        oldest = row[1]
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        OUTBOX_OLDEST_AGE.labels(self.service).set(
            (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        )

    async def _listen(self) -> None:
        """Turn outbox notifications into wake-ups; after each (re)connect, drain what was committed meanwhile."""
        await listen_forever(listen_dsn(self.db.url), NOTIFY_CHANNEL, lambda *_: self._wake.set(),
                             on_connect=self._wake.set, what="relay_listen")

    async def _back_off(self, seconds: float) -> None:
        """Wait before the next try; while the broker connection is down, only until it is back.

        A broker hiccup used to leave the outbox waiting out the rest of its backoff (up to ``max_backoff``) after
        the connection had already been restored; now the first publish after a reconnect goes out at once.
        """
        publisher = self.publisher
        if not isinstance(publisher, ReconnectingPublisher) or publisher.ready:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await publisher.wait_connected()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen()) if self.db.is_postgres else None
        url = self.db.engine.url.render_as_string(hide_password=False)
        register_local_relay(url, self._wake.set)
        backoff = self.min_backoff
        try:
            while True:
                self._wake.clear()
                try:
                    await self.drain()
                    backoff = self.min_backoff
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    level = "warning" if is_unavailable(exc) else "error"
                    getattr(log, level)("relay_publish_failed", error=repr(exc), retry_in=backoff)
                    await self._back_off(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                now = time.monotonic()
                if now - self._last_metrics > 5:
                    self._last_metrics = now
                    with contextlib.suppress(Exception):
                        await self.update_metrics()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that races
                # with the wake-up, and the relay would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()
        finally:
            unregister_local_relay(url, self._wake.set)
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener
