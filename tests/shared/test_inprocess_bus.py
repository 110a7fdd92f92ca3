"""The in-process bus (embedded default): AMQP topic semantics, retries and dead letters."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from shared.bus import outbox
from shared.bus.consumer import ConsumerRunner, Subscription
from shared.bus.envelope import new_event
from shared.bus.inprocess import InProcessBus, topic_matches
from shared.bus.relay import OutboxRelay
from shared.bus.tables import bus_metadata
from shared.bus.topology import QueueSpec
from shared.db import Database
from tests.support.infra import wait_until


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*.enrollment.completed", "acme.enrollment.completed", True),
        ("*.enrollment.completed", "acme.enrollment.created", False),
        ("acme.#", "acme.course.published", True),
        ("acme.#", "globex.course.published", False),
        ("#", "a.b.c", True),
        ("*.course.*", "acme.course.published", True),
        ("*", "acme.course", False),
        ("acme.#.published", "acme.course.published", True),
    ],
)
def test_topic_matching_follows_amqp(pattern, key, expected):
    assert topic_matches(pattern, key) is expected


class Ping(BaseModel):
    n: int


async def test_in_process_bus_delivers_retries_and_dead_letters(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bus.sqlite3'}")
    seen: list[int] = []
    attempts: dict[int, int] = {}
    async with db.engine.begin() as conn:
        await conn.run_sync(bus_metadata.create_all)

    async def handler(session, event, payload: Ping) -> None:
        attempts[payload.n] = attempts.get(payload.n, 0) + 1
        if payload.n == 13:
            raise RuntimeError("unlucky")
        seen.append(payload.n)

    bus = InProcessBus(delivery_limit=3)
    spec = QueueSpec("t", "q", ("ping.sent",))
    await bus.consume(spec, ConsumerRunner(db, Subscription(spec, handler, {"ping.sent": Ping}), "t"))
    relay = OutboxRelay(db, bus, service="t", poll_interval=0.05)
    task = asyncio.create_task(relay.run())
    try:
        async with db.transaction() as session:
            await outbox.add(session, *[new_event("ping.sent", Ping(n=n), service="t", tenant="acme", tenant_id=1)
                                        for n in (1, 13, 2)])
        await wait_until(lambda: len(bus.queues["t.q"].dead_letters) == 1 and len(seen) == 2, timeout=10,
                         message="two handled, one dead-lettered")
        assert sorted(seen) == [1, 2]
        assert attempts[13] == 3
    finally:
        task.cancel()
        await bus.close()
        await db.dispose()
