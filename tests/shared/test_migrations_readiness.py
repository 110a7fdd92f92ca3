"""Readiness during rolling upgrades: a database migrated by a newer release keeps old pods ready."""

from __future__ import annotations

import sqlalchemy as sa

from services.catalog.app import MIGRATIONS
from shared.db import Database, migrate, migrations_applied


async def test_readiness_follows_the_migration_state(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0001')"))
        assert not _head_is("0001")
        assert not await migrations_applied(db, MIGRATIONS), "a known older revision is pending"
        async with db.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
        assert await migrations_applied(db, MIGRATIONS), "a newer, unknown revision must count as ready"
    finally:
        await db.dispose()


async def test_fresh_migration_is_ready(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    await migrate(url, MIGRATIONS)
    db = Database(url)
    try:
        assert await migrations_applied(db, MIGRATIONS)
    finally:
        await db.dispose()


def _head_is(revision: str) -> bool:
    from shared.db import head_revision

    return head_revision(MIGRATIONS) == revision
