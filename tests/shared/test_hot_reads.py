"""The hot reads (``shared.db.ReadQuery``, ``Database.read_one/read_all``, ``UnitOfWork.read_one/read_all``): one
statement outside any transaction, the same rows and filters as the store's statements, on PostgreSQL (asyncpg's
own pool) and SQLite (SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from shared.db import BigId, Database, ReadQuery, TenantScope, Timestamp, as_utc, ensure_database
from shared.uow import UnitOfWork

metadata = sa.MetaData()
items = sa.Table(
    "hot_items", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("amount", sa.Numeric(12, 4)),
    sa.Column("meta", sa.JSON),
    sa.Column("created_at", Timestamp, nullable=False),
)

ONE = ReadQuery(lambda scope: scope.select(items).where(items.c.id == sa.bindparam("item_id")))
NEWEST = ReadQuery(lambda scope: scope.select(items).order_by(items.c.id.desc())
                   .limit(sa.bindparam("limit", type_=sa.Integer)))
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(request, test_env, tmp_path) -> AsyncIterator[Database]:
    if request.param == "postgresql":
        url = test_env.common().database_url("bench")  # dropped by the env's cleanup
        await ensure_database(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'reads.sqlite3'}"
    database = Database(url, pool_size=2)
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(sa.insert(items), [
            {"tenant_id": 1, "course_id": 10, "name": "a", "amount": Decimal("1.5000"), "meta": {"k": [1, 2]},
             "created_at": WHEN},
            {"tenant_id": 1, "course_id": 11, "name": "b", "amount": None, "meta": None, "created_at": WHEN},
            {"tenant_id": 2, "course_id": 10, "name": "other tenant's", "amount": None, "meta": None,
             "created_at": WHEN},
        ])
    yield database
    await database.dispose()


def test_a_hot_read_must_filter_on_its_tenant() -> None:
    with pytest.raises(ValueError, match="tenant"):
        ReadQuery(lambda scope: sa.select(items).where(items.c.id == sa.bindparam("item_id")))


async def test_a_hot_read_gives_the_rows_sqlalchemy_gives(db: Database) -> None:
    row = await db.read_one(ONE, TenantScope(1), item_id=1)
    async with db.engine.connect() as conn:
        expected = (await conn.execute(sa.select(items).where(items.c.id == 1))).first()
    assert row is not None and expected is not None
    assert (row.id, row.name, row.amount, row.meta) == (1, "a", Decimal("1.5000"), {"k": [1, 2]})
    assert tuple(row) == tuple(expected)
    assert as_utc(row.created_at) == WHEN
    with pytest.raises(AttributeError):
        _ = row.no_such_column
    rows = await db.read_all(NEWEST, TenantScope(1), limit=5)
    assert [r.name for r in rows] == ["b", "a"]
    assert [r.name for r in await db.read_all(NEWEST, TenantScope(1), limit=1)] == ["b"]


async def test_a_hot_read_stays_in_its_tenant_and_its_courses(db: Database) -> None:
    assert await db.read_one(ONE, TenantScope(2), item_id=1) is None  # another tenant's row: not found
    assert await db.read_one(ONE, TenantScope(1, frozenset({11})), item_id=1) is None  # another course's
    row = await db.read_one(ONE, TenantScope(1, frozenset({10})), item_id=1)
    assert row is not None and row.name == "a"
    assert [r.name for r in await db.read_all(NEWEST, TenantScope(1, frozenset({10})), limit=5)] == ["a"]
    assert [r.name for r in await db.read_all(NEWEST, TenantScope(2), limit=5)] == ["other tenant's"]


async def test_a_unit_of_work_reads_on_its_own_or_in_its_open_transaction(db: Database) -> None:
    uow = UnitOfWork(db)
    assert (await uow.read_one(ONE, TenantScope(1), item_id=2)).name == "b"  # not open: a read of its own
    async with uow:
        await uow.session.execute(sa.update(items).where(items.c.id == 2).values(name="changed"))
        assert (await uow.read_one(ONE, TenantScope(1), item_id=2)).name == "changed"  # its own write
        assert [r.name for r in await uow.read_all(NEWEST, TenantScope(1), limit=1)] == ["changed"]
    assert (await db.read_one(ONE, TenantScope(1), item_id=2)).name == "changed"  # committed


async def test_a_committed_write_is_read_by_the_very_next_hot_read(db: Database) -> None:
    assert (await db.read_one(ONE, TenantScope(1), item_id=1)).name == "a"
    async with db.transaction() as session:
        await session.execute(sa.update(items).where(items.c.id == 1).values(name="renamed"))
    assert (await db.read_one(ONE, TenantScope(1), item_id=1)).name == "renamed"


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # SQLite has no server to drop connections
async def test_a_read_on_a_connection_the_server_dropped_is_tried_once_more_on_a_fresh_one(db: Database) -> None:
    """A database restart or failover kills pooled connections; the next read on one must not be a 500."""
    scope = TenantScope(1)
    assert (await db.read_one(ONE, scope, item_id=1)).name == "a"  # opens the reads' pool, one idle connection
    async with db.engine.connect() as conn:
        killed = (await conn.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"))).scalar_one()
    assert killed >= 1
    assert (await db.read_one(ONE, scope, item_id=1)).name == "a"
    assert [r.name for r in await db.read_all(NEWEST, scope, limit=5)] == ["b", "a"]


def test_a_connection_lost_under_a_statement_is_a_503_not_a_500() -> None:
    import asyncpg

    from shared.http import is_unavailable

    assert is_unavailable(asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation"))
    assert is_unavailable(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"))
    assert is_unavailable(asyncpg.exceptions.CannotConnectNowError("the database system is starting up"))
    assert not is_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate key"))
