"""Migration 0004: the enrollment service's own Idempotency-Key table becomes the shared ``idempotency_records``
and the keys it remembered keep replaying (a checkout retry that straddles the upgrade gets its first answer)."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import create_async_engine

from services.enrollment.app import MIGRATIONS
from shared.db import Database, _alembic_config, drop_database, ensure_database, migrate
from shared.http import H_TENANT_ID, error_middleware, ok
from shared.idempotency import Idempotency, idempotency_middleware

ENROLLMENTS = "/api/v1/learn/enrollments"


async def migrate_to(url: str, revision: str) -> None:
    await ensure_database(url)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:

            def upgrade(sync_conn: sa.Connection) -> None:
                from alembic import command

                cfg = _alembic_config(MIGRATIONS, url)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
async def test_keys_stored_before_the_upgrade_still_replay(tmp_path, test_env, dialect):
    if dialect == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'enrollment.sqlite3'}"
    else:
        url = test_env.common().database_url(f"enrollment_mig_{secrets.token_hex(3)}")
    await migrate_to(url, "0003")
    body = {"user_id": 7, "course_id": 42, "source": "stripe_purchase"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    stored = {"id": 99, "user_id": 7, "course_id": 42, "status": "active"}
    db = Database(url)
    try:
        async with db.transaction() as session:
            await session.execute(sa.text(
                "INSERT INTO idempotency_keys (tenant_id, key, body_sha256, status_code, response, created_at) "
                "VALUES (1, 'checkout-1', :sha, 201, :response, :created)"),
                {"sha": hashlib.sha256(canonical.encode()).hexdigest(), "response": json.dumps(stored),
                 "created": datetime.now(UTC)})
        await migrate(url, MIGRATIONS)
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "idempotency_keys" not in tables and "idempotency_records" in tables

        runs: list[int] = []

        async def create(request: web.Request) -> web.Response:
            runs.append(1)
            return ok(request, {"id": 100}, status=201)

        app = web.Application(middlewares=[error_middleware, idempotency_middleware(Idempotency(lambda: db))])
        app.router.add_post(ENROLLMENTS, create)
        async with TestClient(TestServer(app)) as client:
            headers = {H_TENANT_ID: "1", "Idempotency-Key": "checkout-1"}
            async with client.post(ENROLLMENTS, json=body, headers=headers) as resp:
                answer = await resp.json()
                assert resp.status == 201 and resp.headers["Idempotent-Replayed"] == "true"
                assert answer["data"] == stored and answer["request_id"].startswith("req_")
            async with client.post(ENROLLMENTS, json={**body, "user_id": 8}, headers=headers) as resp:
                assert resp.status == 422 and (await resp.json())["error"]["code"] == "idempotency_key_reused"
        assert runs == []
    finally:
        await db.dispose()
        await drop_database(url)
