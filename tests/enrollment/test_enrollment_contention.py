"""What keeps the enrollment service quick under load without changing what it answers: consumer batches that do
not wait on a learner locked elsewhere, and in-process caches that never serve a stale answer for long."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from services.enrollment.api import CACHES_KEY
from services.enrollment.app import EVENT_HANDLERS
from services.enrollment.handlers import Caches
from services.enrollment.store import attempts, enrollments, reading, tenants
from shared.bus.consumer import ConsumerRunner, Outcome
from shared.bus.wiring import subscriptions
from shared.service import DB_KEY
from tests.enrollment.conftest import activity
from tests.support.infra import wait_until

ENROLLMENTS = "/api/v1/learn/enrollments"


async def test_a_learner_locked_elsewhere_does_not_hold_back_the_rest_of_a_batch(service, ids):
    course, first_user, second_user = next(ids), next(ids), next(ids)
    await service.given_course_and_user(course, first_user, [activity(1), activity(2)])
    await service.publish(service.user_upserted(second_user))
    await service.until_user(second_user)
    first, second = await service.enroll(first_user, course), await service.enroll(second_user, course)
    commits = [service.runtime_committed(first, 1), service.runtime_committed(second, 1)]
    runtime = next(s for s in subscriptions("enrollment", EVENT_HANDLERS, deps=service.app[CACHES_KEY])
                   if s.queue.purpose == "runtime")
    runner = ConsumerRunner(service.app[DB_KEY], runtime, "enrollment")

    async def applied(commit) -> bool:
        return bool(await service.scalar(sa.select(sa.func.count()).select_from(attempts).where(
            attempts.c.id == commit.data["attempt_id"])))

    async with service.app[DB_KEY].transaction() as elsewhere:  # e.g. a cancel of the second learner's enrollment
        await elsewhere.execute(sa.select(enrollments.c.id).where(enrollments.c.id == second["id"]).with_for_update())
        batch = asyncio.create_task(runner.process_batch([(c.to_bytes(), 0) for c in commits]))
        # One transaction for both would hold the first learner until the second is free (and two such batches
        # holding each other's learners deadlock): the first learner's commit is in without waiting.
        await wait_until(lambda: applied(commits[0]), timeout=5, message="the first learner's commit applied")
        assert not batch.done() and not await applied(commits[1])
    assert await asyncio.wait_for(batch, timeout=10) == [Outcome.HANDLED, Outcome.HANDLED]
    assert await applied(commits[1])


async def test_a_new_tenant_name_replaces_one_the_service_has_already_seen(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    for name in ("Acme%20Corp", "Acme%20Corp", "Acme%20Group"):  # the second finds the row as it is, and says so
        await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course},
                           extra_headers={"X-Learn-Tenant-Name": name})
    assert await service.scalar(sa.select(tenants.c.name).where(tenants.c.tenant_id == 1)) == "Acme Group"


async def test_a_version_that_has_not_arrived_is_looked_up_again(service, ids):
    course = next(ids)
    caches = Caches()
    async with reading(service.app[DB_KEY]) as conn:
        assert await caches.version(conn, 1, course, 1) is None
    await service.publish(service.course_published(course, [activity(1), activity(2, required=False)],
                                                   title="Arrived"))
    await service.until_course(course, version=1)
    async with reading(service.app[DB_KEY]) as conn:
        version = await caches.version(conn, 1, course, 1)
    assert version is not None and (version.version_number, version.title) == (1, "Arrived")
    assert [(a.activity_id, a.required) for a in version.activities] == [(1, True), (2, False)]
