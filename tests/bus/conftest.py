"""A minimal service for testing the bus: a database with the outbox/inbox and an ``effects`` table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from shared.bus import outbox as outbox_writer
from shared.bus.amqp import AmqpBus
from shared.bus.consumer import ConsumerRunner, PermanentError, Subscription
from shared.bus.envelope import CloudEvent, new_event
from shared.bus.relay import OutboxRelay
from shared.bus.tables import bus_metadata
from shared.bus.topology import QueueSpec
from shared.db import Database, ensure_database
from tests.support.env import TestEnv

effects_metadata = sa.MetaData()
effects = sa.Table(
    "effects",
    effects_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("n", sa.Integer, nullable=False),
)

TEST_QUEUE = QueueSpec("bus", "test", ("test.happened",))


class Happened(BaseModel):
    n: int
    fail: bool = False
    poison: bool = False


async def record_effect(session, event: CloudEvent, payload: Happened) -> None:
    if payload.poison:
        raise PermanentError("poison requested")
    if payload.fail:
        raise RuntimeError("this handler always fails for this message")
    await session.execute(sa.insert(effects).values(n=payload.n))


@dataclass
class BusHarness:
    env: TestEnv
    db: Database
    buses: list[AmqpBus] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)

    def event(self, n: int, **flags: bool) -> CloudEvent:
        return new_event("test.happened", Happened(n=n, **flags), service="bus", tenant="acme", tenant_id=1)

    async def write(self, *events: CloudEvent, commit: bool = True) -> None:
        async with self.db.sessions() as session:
            async with session.begin():
                await outbox_writer.add(session, *events)
                if not commit:
                    await session.rollback()

    async def new_bus(self, **kw) -> AmqpBus:
        bus = AmqpBus(self.env.amqp_url, service="bus", namespace=self.env.namespace,
                      delivery_limit=kw.pop("delivery_limit", 3), **kw)
        await bus.connect()
        self.buses.append(bus)
        return bus

    async def start_relay(self, bus: AmqpBus | None = None, **kw) -> OutboxRelay:
        bus = bus or await self.new_bus()
        relay = OutboxRelay(self.db, bus, service="bus", poll_interval=0.2, **kw)
        self.tasks.append(asyncio.create_task(relay.run()))
        return relay

    async def start_consumer(self, handler=record_effect, bus: AmqpBus | None = None) -> ConsumerRunner:
        bus = bus or await self.new_bus()
        runner = ConsumerRunner(self.db, Subscription(TEST_QUEUE, handler, {"test.happened": Happened}), "bus")
        await bus.consume(TEST_QUEUE, runner)
        return runner

    async def effect_counts(self) -> dict[int, int]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(sa.select(effects.c.n, sa.func.count()).group_by(effects.c.n))).all()
        return {n: c for n, c in rows}

    async def outbox_size(self) -> int:
        async with self.db.engine.connect() as conn:
            return (await conn.execute(sa.text("SELECT count(*) FROM outbox"))).scalar_one()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for bus in self.buses:
            await bus.close()
        await self.db.dispose()


@pytest.fixture
async def harness(test_env: TestEnv) -> AsyncIterator[BusHarness]:
    url = test_env.common().database_url("bus")
    await ensure_database(url)
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(bus_metadata.create_all)
        await conn.run_sync(effects_metadata.create_all)
    test_env.extra_queues += [test_env.namespace + TEST_QUEUE.name, test_env.namespace + TEST_QUEUE.dead_letter_name]
    h = BusHarness(test_env, db)
    yield h
    await h.close()
