"""Fixtures for the SCORM import tests: the repository's fixture packages and blob stores on real backends."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from shared.blobstore import BlobStore, DatabaseBlobStore, FilesystemBlobStore
from shared.db import Database, drop_database, ensure_database
from tests.support.scorm_packages import FIXTURES


@pytest.fixture(scope="session")
def scorm_fixtures_dir() -> Path:
    """The real SCORM packages of the repository, ``tests/fixtures/scorm`` (its SOURCES.md says what each is)."""
    return FIXTURES


@pytest.fixture
async def sqlite_blob_store(tmp_path: Path) -> AsyncIterator[DatabaseBlobStore]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'blobs.sqlite3'}")
    store = DatabaseBlobStore(database.engine)
    await store.create_tables()
    yield store
    await database.dispose()


@pytest.fixture(scope="session")
def blob_database_url(postgres_url: str) -> Iterator[str]:
    """One throwaway PostgreSQL database for this run's blob store tests, dropped at the end."""
    name = f"test_blob_{secrets.token_hex(4)}"
    url = make_url(postgres_url).set(drivername="postgresql+asyncpg", database=name)
    rendered = url.render_as_string(hide_password=False)
    asyncio.run(ensure_database(rendered))
    yield rendered
    asyncio.run(drop_database(rendered))


@pytest.fixture
async def postgres_blob_store(blob_database_url: str) -> AsyncIterator[DatabaseBlobStore]:
    """A DatabaseBlobStore on PostgreSQL, emptied before each test."""
    database = Database(blob_database_url, pool_size=2)
    try:
        store = DatabaseBlobStore(database.engine)
        await store.create_tables()
        async with database.engine.begin() as conn:
            await conn.execute(sa.text("TRUNCATE blobs, blob_chunks"))
        yield store
    finally:
        await database.dispose()


@pytest.fixture(params=["filesystem", "sqlite", "postgres"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """The same behaviour asked of every BlobStore implementation."""
    if request.param == "filesystem":
        return FilesystemBlobStore(tmp_path / "blobs")
    return request.getfixturevalue(f"{request.param}_blob_store")
