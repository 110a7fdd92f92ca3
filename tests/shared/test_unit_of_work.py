"""UnitOfWork and the wiring table's dispatch, on a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared.bus import wiring
from shared.bus.consumer import ConsumerRunner, Outcome
from shared.bus.envelope import CloudEvent, Origin, build_event
from shared.bus.tables import bus_metadata, outbox
from shared.db import Database, ensure_database
from shared.events import TenantUpdated, UserUpserted
from shared.uow import UnitOfWork

notes = sa.Table("uow_notes", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("text", sa.String(100), nullable=False))


@pytest.fixture
async def db(test_env) -> AsyncIterator[Database]:
    url = test_env.common().database_url("bus")  # dropped by the env's cleanup
    await ensure_database(url)
    database = Database(url, pool_size=2)
    async with database.engine.begin() as conn:
        await conn.run_sync(bus_metadata.create_all)
        await conn.run_sync(notes.metadata.create_all)
    yield database
    await database.dispose()


def _user(user_id: int) -> UserUpserted:
    return UserUpserted(user_id=user_id, name="Ada", email="ada@example.com", revision=1,
                        updated_at=datetime.now(UTC))


async def test_a_unit_of_work_commits_writes_and_events_together(db: Database) -> None:
    uow = UnitOfWork(db)
    origin = Origin(1, "acme", "req_1")
    async with uow:
        await uow.session.execute(sa.insert(notes).values(id=1, text="kept"))
        await uow.emit(build_event(origin, _user(7), service="gateway", subject="user/7"))
    async with db.transaction() as session:
        assert (await session.execute(sa.select(notes.c.text))).scalars().all() == ["kept"]
        bodies = (await session.execute(sa.select(outbox.c.routing_key))).scalars().all()
    assert bodies == ["acme.user.upserted"]


async def test_a_failing_unit_of_work_leaves_nothing_and_can_be_entered_again(db: Database) -> None:
    uow = UnitOfWork(db)
    with pytest.raises(RuntimeError):
        async with uow:
            await uow.session.execute(sa.insert(notes).values(id=2, text="lost"))
            await uow.emit(build_event(Origin(1, "acme"), _user(8), service="gateway"))
            raise RuntimeError("boom")
    async with uow:  # a retry opens a fresh transaction
        await uow.session.execute(sa.insert(notes).values(id=3, text="second try"))
    async with db.transaction() as session:
        assert (await session.execute(sa.select(notes.c.text))).scalars().all() == ["second try"]
        assert (await session.execute(sa.select(sa.func.count()).select_from(outbox))).scalar() == 0
    with pytest.raises(RuntimeError, match="not open"):
        _ = uow.session


def test_build_event_takes_the_type_from_the_payload_model() -> None:
    event = build_event(Origin(4, "globex", "req_9"), _user(1), service="gateway", subject="user/1")
    assert (event.type, event.tenant, event.tenantid, event.requestid) == (
        "io.mobieus.learn.user.upserted.v1", "globex", 4, "req_9")
    assert Origin.of_event(event) == Origin(4, "globex", "req_9")
    with pytest.raises(TypeError, match="not an event payload"):
        build_event(Origin(1, "acme"), TenantUpdated.__mro__[1](), service="gateway")  # the EventModel base


async def test_the_wiring_table_dispatches_by_payload_model_inside_the_consumers_transaction(db: Database) -> None:
    seen: list[tuple[str, int | str]] = []

    async def on_user(uow: UnitOfWork, event: CloudEvent, payload: UserUpserted) -> None:
        await uow.session.execute(sa.insert(notes).values(id=payload.user_id, text=payload.name))
        seen.append(("user", payload.user_id))

    async def on_tenant(uow: UnitOfWork, event: CloudEvent, payload: TenantUpdated) -> None:
        assert uow.deps == "deps"
        seen.append(("tenant", payload.status))

    async def failing(uow: UnitOfWork, event: CloudEvent, payload: UserUpserted) -> None:
        raise RuntimeError("second handler fails")

    table: wiring.EventTable = {"users": {UserUpserted: [on_user]}, "tenants": {TenantUpdated: [on_tenant]}}
    specs = wiring.queue_specs("svc", table)
    assert [(s.name, s.event_types) for s in specs] == [("svc.users", ("user.upserted",)),
                                                         ("svc.tenants", ("tenant.updated",))]
    users, tenants = wiring.subscriptions("svc", table, deps="deps")
    origin = Origin(1, "acme")
    user_event = build_event(origin, _user(11), service="gateway")
    assert await ConsumerRunner(db, users, "svc").process(user_event.to_bytes()) is Outcome.HANDLED
    tenant_event = build_event(origin, TenantUpdated(status="suspended", updated_at=datetime.now(UTC)),
                               service="gateway")
    assert await ConsumerRunner(db, tenants, "svc").process(tenant_event.to_bytes()) is Outcome.HANDLED
    # A queue refuses an event type its table does not list (dead-lettered, never retried).
    assert await ConsumerRunner(db, users, "svc").process(tenant_event.to_bytes()) is Outcome.DEAD_LETTER
    assert seen == [("user", 11), ("tenant", "suspended")]

    # Two handlers for one payload run in the one transaction: if the second fails, the first's write is undone.
    (both,) = wiring.subscriptions("svc2", {"users": {UserUpserted: [on_user, failing]}})
    assert await ConsumerRunner(db, both, "svc2").process(build_event(origin, _user(12), service="gateway")
                                                          .to_bytes()) is Outcome.RETRY
    async with db.transaction() as session:
        assert sorted((await session.execute(sa.select(notes.c.id))).scalars().all()) == [11]
