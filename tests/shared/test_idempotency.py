"""The shared Idempotency-Key rule (shared/idempotency.py) on both databases a service runs on, through the
services' middleware: replay, reuse, in flight, errors released, leases, expiry and sweeping, tenant scoping."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.db import Database, drop_database, ensure_database
from shared.http import H_TENANT_ID, ApiError, error_middleware, ok, read_json
from shared.idempotency import Idempotency, idempotency_metadata, idempotency_middleware, records


@dataclass
class Harness:
    client: TestClient
    db: Database
    idempotency: Idempotency
    runs: list[Any] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    fail_with: list[int] = field(default_factory=list)

    async def post(self, path: str, body: Any, key: str | None, tenant: str = "1",
                   **kw: Any) -> tuple[int, dict[str, Any], Any]:
        headers = {H_TENANT_ID: tenant}
        if key is not None:
            headers["Idempotency-Key"] = key
        async with self.client.post(path, json=body, headers=headers, **kw) as resp:
            return resp.status, await resp.json(), resp.headers

    async def rows(self) -> list[Any]:
        async with self.db.engine.connect() as conn:
            return list((await conn.execute(sa.select(records))).all())

    async def set_times(self, **values: datetime) -> None:
        async with self.db.transaction() as session:
            await session.execute(sa.update(records).values(**values))


@pytest.fixture(params=["sqlite", "postgresql"])
async def harness(request, tmp_path, test_env) -> AsyncIterator[Harness]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'idem.sqlite3'}"
    else:
        url = test_env.common().database_url(f"idempotency_{secrets.token_hex(3)}")
        await ensure_database(url)
    db = Database(url, pool_size=4)
    async with db.engine.begin() as conn:
        await conn.run_sync(idempotency_metadata.create_all)
    idempotency = Idempotency(lambda: db, ttl=3600, lease=60)
    harness = Harness(client=None, db=db, idempotency=idempotency)  # type: ignore[arg-type]

    async def create(req: web.Request) -> web.Response:
        from pydantic import BaseModel, ConfigDict

        class Body(BaseModel):
            model_config = ConfigDict(extra="forbid")
            name: str

        body = await read_json(req, Body)
        harness.entered.set()
        if req.query.get("wait"):
            await harness.gate.wait()
        if harness.fail_with:
            status = harness.fail_with.pop(0)
            if status == 500:
                raise RuntimeError("a bug")
            raise ApiError(status, "invalid_argument", "not now")
        harness.runs.append(body.name)
        response = ok(req, {"id": len(harness.runs), "name": body.name}, status=201)
        response.headers["Location"] = f"/things/{len(harness.runs)}"
        return response

    app = web.Application(middlewares=[error_middleware, idempotency_middleware(idempotency)])
    app.router.add_post("/things", create)
    app.router.add_post("/other", create)
    harness.client = TestClient(TestServer(app))
    await harness.client.start_server()
    try:
        yield harness
    finally:
        await harness.client.close()
        await db.dispose()
        if request.param == "postgresql":
            await drop_database(url)


async def test_the_same_key_and_body_replay_the_first_answer(harness):
    first = await harness.post("/things", {"name": "a"}, "k1")
    again = await harness.post("/things", {"name": "a"}, "k1")
    assert first[0] == again[0] == 201 and harness.runs == ["a"]
    assert again[1]["data"] == first[1]["data"] and again[1]["request_id"] != first[1]["request_id"]
    assert again[2]["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first[2]
    assert again[2]["Location"] == first[2]["Location"] == "/things/1"
    assert again[2]["Content-Type"].startswith("application/json")
    # JSON is compared by value; the draft's quoted form is the same key.
    async with harness.client.post("/things", data=b'{ "name" :  "a" }', headers={
            H_TENANT_ID: "1", "Idempotency-Key": '"k1"', "Content-Type": "application/json"}) as resp:
        assert resp.status == 201 and resp.headers["Idempotent-Replayed"] == "true"
        assert (await resp.json())["data"]["id"] == 1


async def test_the_same_key_for_another_body_or_route_is_422(harness):
    await harness.post("/things", {"name": "a"}, "k2")
    for path, body in (("/things", {"name": "b"}), ("/other", {"name": "a"})):
        status, answer, _ = await harness.post(path, body, "k2")
        assert status == 422 and answer["error"]["code"] == "idempotency_key_reused", answer
    assert harness.runs == ["a"]


async def test_a_key_in_flight_is_409_then_replays(harness):
    first = asyncio.ensure_future(harness.post("/things?wait=1", {"name": "slow"}, "k3"))
    await harness.entered.wait()
    status, body, headers = await harness.post("/things?wait=1", {"name": "slow"}, "k3")
    assert status == 409 and body["error"]["code"] == "idempotency_key_in_flight" and headers["Retry-After"] == "1"
    # Even with another body, a reuse is a reuse.
    status, body, _ = await harness.post("/things", {"name": "other"}, "k3")
    assert status == 422
    harness.gate.set()
    assert (await first)[0] == 201
    status, body, headers = await harness.post("/things?wait=1", {"name": "slow"}, "k3")
    assert status == 201 and headers["Idempotent-Replayed"] == "true" and harness.runs == ["slow"]


@pytest.mark.parametrize("failure", [400, 404, 503, 500])
async def test_an_answer_that_is_not_2xx_releases_the_key(harness, failure):
    harness.fail_with.append(failure)
    status, _, _ = await harness.post("/things", {"name": "a"}, "k4")
    assert status == failure and await harness.rows() == []
    status, _, headers = await harness.post("/things", {"name": "a"}, "k4")
    assert status == 201 and "Idempotent-Replayed" not in headers and harness.runs == ["a"]


async def test_keys_are_per_tenant(harness):
    one = await harness.post("/things", {"name": "a"}, "shared", tenant="1")
    two = await harness.post("/things", {"name": "b"}, "shared", tenant="2")
    assert (one[0], two[0]) == (201, 201) and harness.runs == ["a", "b"]
    assert "Idempotent-Replayed" not in two[2]


async def test_an_abandoned_lease_can_be_taken_over(harness):
    # A request whose process died: its row stays in flight until its lease ends.
    first = asyncio.ensure_future(harness.post("/things?wait=1", {"name": "a"}, "k5"))
    await harness.entered.wait()
    await harness.set_times(lease_until=datetime.now(UTC) - timedelta(seconds=1))
    status, _, headers = await harness.post("/things", {"name": "a"}, "k5")
    assert status == 201 and "Idempotent-Replayed" not in headers
    harness.gate.set()
    await first  # the old holder's answer is not stored over the new one (its lease token is gone)
    (row,) = await harness.rows()
    assert row.status_code == 201 and b'"id":1' in row.body


async def test_expired_keys_are_forgotten_and_swept(harness):
    await harness.post("/things", {"name": "a"}, "k6")
    await harness.post("/things", {"name": "a"}, "k7")
    assert await harness.idempotency.sweep() == 0
    await harness.set_times(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    # Expired but not yet swept: the key is free again, even for another body.
    status, body, headers = await harness.post("/things", {"name": "b"}, "k6")
    assert status == 201 and "Idempotent-Replayed" not in headers and body["data"]["name"] == "b"
    assert await harness.idempotency.sweep() == 1  # k7; k6 was claimed again with a fresh expiry
    assert [r.key for r in await harness.rows()] == ["k6"]


@pytest.mark.parametrize("key", ["", "k" * 256, "ключ", "tab\there"])
async def test_a_malformed_key_is_invalid_argument(harness, key):
    status, body, _ = await harness.post("/things", {"name": "a"}, key)
    assert status == 400 and body["error"]["code"] == "invalid_argument"
    assert "Idempotency-Key" in body["error"]["message"]
    assert harness.runs == []


async def test_requests_without_a_key_or_tenant_are_outside_the_rule(harness):
    await harness.post("/things", {"name": "a"}, None)
    await harness.post("/things", {"name": "a"}, None)
    async with harness.client.post("/things", json={"name": "a"}, headers={"Idempotency-Key": "k8"}) as resp:
        assert resp.status == 201
    assert harness.runs == ["a", "a", "a"] and await harness.rows() == []
