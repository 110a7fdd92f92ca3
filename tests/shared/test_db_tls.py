"""No TLS attempt per connection to a PostgreSQL on loopback, unless the URL asks for a TLS mode (pure logic, and
one real connection)."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import Database, listen_dsn
from tests.support import infra


@pytest.mark.parametrize(("url", "dsn"), [
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/x", "postgresql://postgres@127.0.0.1:5432/x?sslmode=disable"),
    ("postgresql+asyncpg://postgres@localhost/x", "postgresql://postgres@localhost/x?sslmode=disable"),
    ("postgresql+asyncpg://postgres@db.internal:5432/x", "postgresql://postgres@db.internal:5432/x"),
    ("postgresql+asyncpg://postgres@127.0.0.1/x?sslmode=require", "postgresql://postgres@127.0.0.1/x?sslmode=require"),
])
def test_loopback_urls_skip_the_tls_attempt_and_others_keep_their_choice(url: str, dsn: str) -> None:
    assert listen_dsn(url) == dsn


async def test_a_loopback_connection_is_made_without_tls() -> None:
    url = infra.postgres_url()
    if "127.0.0.1" not in url and "localhost" not in url:
        pytest.fail(f"this test needs a loopback PostgreSQL, got {url}")  # a container is not on loopback here
    db = Database(url.replace("postgresql://", "postgresql+asyncpg://", 1).rstrip("/") + "/postgres")
    try:
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, asyncpg.Connection)
            assert driver.get_settings() is not None
            assert driver._transport.get_extra_info("sslcontext") is None
    finally:
        await db.dispose()
