"""The expiry sweeper: overdue active enrollments become ``expired`` exactly once, even with sweepers racing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from services.enrollment.app import MIGRATIONS
from services.enrollment.store import enrollments, tenants
from services.enrollment.sweeper import expire_overdue
from shared.bus.tables import outbox
from shared.db import Database, migrate
from tests.enrollment.conftest import EnrollmentService, activity, start_service

OVERDUE = 60


async def _seed(db: Database, now: datetime) -> None:
    """60 overdue active enrollments, plus ones the sweeper must leave alone."""
    def row(user_id: int, status: str, expires_at: datetime | None) -> dict:
        return {"tenant_id": 1, "user_id": user_id, "course_id": 1, "course_version": 1, "status": status,
                "source": "api", "enrolled_at": now - timedelta(days=30), "expires_at": expires_at,
                "required_total": 1, "required_done": 0, "revision": 1, "updated_at": now}

    async with db.transaction() as session:
        await session.execute(sa.insert(tenants).values(tenant_id=1, slug="acme", name="Acme", updated_at=now))
        await session.execute(sa.insert(enrollments), [
            *[row(n, "active", now - timedelta(minutes=n)) for n in range(1, OVERDUE + 1)],
            row(1001, "active", now + timedelta(days=1)),
            row(1002, "active", None),
            row(1003, "completed", now - timedelta(days=1)),
            row(1004, "cancelled", now - timedelta(days=1)),
        ])


async def test_two_sweepers_racing_expire_each_enrollment_once(test_env):
    url = test_env.common().database_url("enrollment")
    await migrate(url, MIGRATIONS)
    replicas = [Database(url), Database(url)]  # two engines, as two replicas would have
    try:
        now = datetime.now(UTC)
        await _seed(replicas[0], now)
        await asyncio.gather(*(db.ping() for db in replicas))  # both connected: the race starts level
        counts = await asyncio.gather(*[expire_overdue(db, now, batch_size=7) for db in replicas])
        assert sum(counts) == OVERDUE and 0 not in counts, counts  # both took part
        async with replicas[0].engine.connect() as conn:
            statuses = dict((await conn.execute(
                sa.select(enrollments.c.status, sa.func.count()).group_by(enrollments.c.status))).all())
            expired_revisions = set((await conn.execute(
                sa.select(enrollments.c.revision).where(enrollments.c.status == "expired"))).scalars())
            staged = (await conn.execute(sa.select(outbox.c.routing_key, outbox.c.body))).all()
        assert statuses == {"expired": OVERDUE, "active": 2, "completed": 1, "cancelled": 1}
        assert expired_revisions == {2}
        assert {key for key, _ in staged} == {"acme.enrollment.expired"}
        expired_ids = [json.loads(body)["data"]["enrollment_id"] for _, body in staged]
        assert len(expired_ids) == len(set(expired_ids)) == OVERDUE
        assert await expire_overdue(replicas[1], now) == 0  # nothing left: a later sweep is a no-op
    finally:
        for db in replicas:
            await db.dispose()


async def test_the_background_sweeper_expires_an_overdue_enrollment(test_env, events, ids):
    client, publisher = await start_service(test_env, sweep_interval=0.2)
    service = EnrollmentService(test_env, client, publisher)
    try:
        course, user = next(ids), next(ids)
        await service.given_course_and_user(course, user, [activity(1)])
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        enrollment = await service.enroll(user, course, expires_at=soon)
        expired = await service.until_status(enrollment["id"], "expired")
        assert expired["expires_at"] is not None
        event = (await events.wait_for("enrollment.expired"))[0]
        assert event.data["enrollment_id"] == enrollment["id"] and event.routing_key == "acme.enrollment.expired"
        assert event.data["status"] == "expired" and event.data["revision"] == 2
    finally:
        await publisher.close()
        await client.close()


async def test_enrolling_after_the_end_replaces_an_enrollment_not_yet_swept(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    old = await service.enroll(user, course, expires_at=soon)
    await asyncio.sleep(0.7)
    status, body = await service.call("POST", "/api/v1/learn/enrollments", json={"user_id": user, "course_id": course})
    assert status == 201 and body["data"]["id"] != old["id"]
    assert (await service.enrollment(old["id"]))["status"] == "expired"
    await events.wait_for("enrollment.expired")
