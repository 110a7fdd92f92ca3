"""Benchmark: latency of ``GET /api/v1/learn/courses`` (50 items) with 1k and with 100k courses in the tenant.

Keyset pagination on the ``(tenant_id, id)`` index should make a page cost the same whatever the tenant's size,
so the ratio of the two latencies should stay ≤ 1.5.

How it measures: one catalog service on PostgreSQL (the in-process bus: no broker needed), called directly with
the gateway's internal headers. Tenant 1 holds 1,000 courses and tenant 2 holds 100,000, in the same table.
Requests to the two tenants alternate, so noise from other processes on the machine hits both sides alike.
Half of the requests read the first page, half a page behind a cursor at a random point in the list (a deep page
is where OFFSET pagination would show). Rows are bulk-inserted straight into the table, not through the API.

Run alone: ``.venv/bin/python -m bench.bench_catalog`` (PostgreSQL from ``LEARN_BENCH_POSTGRES_URL``,
``LEARN_POSTGRES_URL`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from services.catalog.app import create_app
from services.catalog.config import CatalogSettings
from services.catalog.store import courses
from shared.config import CommonSettings
from shared.db import drop_database
from shared.service import CURSOR_KEY, DB_KEY

SMALL, LARGE = 1_000, 100_000
SMALL_TENANT, LARGE_TENANT = 1, 2
ROUNDS = 300  # requests per tenant
WARMUP = 30
THRESHOLD = 1.5


def _postgres_url() -> str:
    return (os.environ.get("LEARN_BENCH_POSTGRES_URL") or os.environ.get("LEARN_POSTGRES_URL")
            or "postgresql://postgres@127.0.0.1:5432")


async def _seed(app: Any, tenant_id: int, count: int) -> list[int]:
    """Insert ``count`` courses for ``tenant_id`` in batches; returns their ids."""
    now = datetime.now(UTC)
    ids: list[int] = []
    async with app[DB_KEY].transaction() as session:
        for start in range(0, count, 5_000):
            rows = [
                dict(tenant_id=tenant_id, slug=f"course-{n}", title=f"Course {n}", subtitle="A subtitle",
                     summary="A short summary of what the course covers.", language="en",
                     completion_rule="all_required", estimated_minutes=60, status="published",
                     credit_hours=1.5, credit_kind="CEU", credit_expires_after_months=24, owner_id=1,
                     owner_name="Bench", version_number=1, version_status="published", published_at=now,
                     revision=2, created_at=now, updated_at=now)
                for n in range(start, min(start + 5_000, count))
            ]
            result = await session.execute(sa.insert(courses).returning(courses.c.id), rows)
            ids += list(result.scalars())
    return ids


async def _index_used(app: Any, tenant_id: int, after_id: int) -> bool:
    async with app[DB_KEY].engine.connect() as conn:
        plan = (await conn.execute(sa.text(
            "EXPLAIN SELECT * FROM courses WHERE tenant_id = :t AND id < :a ORDER BY id DESC LIMIT 51"
        ), {"t": tenant_id, "a": after_id})).scalars().all()
    return any("Index" in line for line in plan)


async def _measure(client: TestClient, app: Any, secret: str, ids: dict[int, list[int]]) -> dict[int, list[float]]:
    codec = app[CURSOR_KEY]
    rng = random.Random(4)  # a reproducible sample
    timings: dict[int, list[float]] = {SMALL_TENANT: [], LARGE_TENANT: []}

    async def one(tenant_id: int, deep: bool) -> float:
        headers = {"X-Learn-Internal": secret, "X-Learn-Tenant-Id": str(tenant_id),
                   "X-Learn-Tenant": f"bench{tenant_id}", "X-Learn-Scopes": "learn:read"}
        query = "?limit=50"
        if deep:
            tenant_ids = ids[tenant_id]
            after = tenant_ids[rng.randrange(60, len(tenant_ids) - 50)]  # a full page behind it
            query += "&cursor=" + codec.encode("courses", tenant_id, {}, after)
        start = time.perf_counter()
        resp = await client.get("/api/v1/learn/courses" + query, headers=headers)
        body = await resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200 or body.count(b'"slug"') != 50:
            raise RuntimeError(f"unexpected answer {resp.status}: {body[:200]!r}")
        return elapsed

    for i in range(WARMUP):
        await one(SMALL_TENANT, i % 2 == 1)
        await one(LARGE_TENANT, i % 2 == 1)
    for i in range(ROUNDS):
        order = (SMALL_TENANT, LARGE_TENANT) if i % 2 else (LARGE_TENANT, SMALL_TENANT)
        for tenant_id in order:
            timings[tenant_id].append(await one(tenant_id, deep=(i // 2) % 2 == 1))
    return timings


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3)}


async def _run() -> dict[str, Any]:
    secret = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as data_dir:
        common = CommonSettings(postgres_url=_postgres_url(), amqp_url=None,
                                database_prefix=f"bench{secrets.token_hex(4)}_", data_dir=Path(data_dir),
                                internal_secret=secret, log_level="warning")
        settings = CatalogSettings(common=common, consumers_enabled=False)
        app = create_app(settings)
        try:
            async with TestClient(TestServer(app)) as client:
                ids = {SMALL_TENANT: await _seed(app, SMALL_TENANT, SMALL),
                       LARGE_TENANT: await _seed(app, LARGE_TENANT, LARGE)}
                for tenant_ids in ids.values():
                    tenant_ids.sort(reverse=True)
                async with app[DB_KEY].engine.connect() as conn:
                    await conn.execute(sa.text("ANALYZE courses"))
                    await conn.commit()
                index_used = await _index_used(app, LARGE_TENANT, ids[LARGE_TENANT][LARGE // 2])
                timings = await _measure(client, app, secret, ids)
        finally:
            await drop_database(settings.database_url)
    small, large = _stats(timings[SMALL_TENANT]), _stats(timings[LARGE_TENANT])
    ratio = round(large["p50_ms"] / small["p50_ms"], 3)
    return {
        "benchmark": "catalog: GET /api/v1/learn/courses?limit=50",
        "courses_small": SMALL,
        "courses_large": LARGE,
        "requests_per_size": ROUNDS,
        "small": small,
        "large": large,
        "ratio_p50": ratio,
        "ratio_p95": round(large["p95_ms"] / small["p95_ms"], 3),
        "keyset_index_used": index_used,
        "threshold": THRESHOLD,
        "passed": ratio <= THRESHOLD and index_used,
    }


def run() -> dict[str, Any]:
    return asyncio.run(_run())


def markdown(result: dict[str, Any]) -> str:
    small, large = result["small"], result["large"]
    holds = "holds" if result["passed"] else "misses"
    return "\n".join([
        "| courses in the tenant | p50 | p95 |",
        "|---|---|---|",
        f"| {result['courses_small']:,} | {small['p50_ms']:.2f} ms | {small['p95_ms']:.2f} ms |",
        f"| {result['courses_large']:,} | {large['p50_ms']:.2f} ms | {large['p95_ms']:.2f} ms |",
        "",
        f"Ratio 100k / 1k at p50: **{result['ratio_p50']:.2f}** (target ≤ {result['threshold']}: {holds}); "
        f"at p95: {result['ratio_p95']:.2f}. The keyset query uses the (tenant_id, id) index: "
        f"{'yes' if result['keyset_index_used'] else 'NO'}. {result['requests_per_size']} requests per size, "
        "called directly on the catalog service with the gateway's internal headers, alternating between a tenant "
        "with 1k and one with 100k courses in the same table; half read the first page, half a page behind a "
        "cursor at a random depth.",
    ])


if __name__ == "__main__":
    print(markdown(run()))
