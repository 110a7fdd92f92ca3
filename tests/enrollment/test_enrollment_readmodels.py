"""Course and user read models: filled from events, applied by revision, never backwards."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from services.enrollment.store import course_versions, courses, directory_users, tenants
from tests.enrollment.conftest import activity

ENROLLMENTS = "/api/v1/learn/enrollments"


async def test_a_late_publish_does_not_undo_a_newer_unpublish(service, ids):
    course, user = next(ids), next(ids)
    await service.publish(service.course_changed("course.unpublished", course, status="draft", revision=3),
                          service.user_upserted(user))
    await service.until_course(course, status="draft")
    await service.publish(service.course_published(course, [activity(1)], revision=2))
    await service.until_course(course, status="draft", version=1)  # the tree is kept, the status is not
    await service.until_user(user)
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course}, expect=400)
    assert body["error"]["code"] == "invalid_argument"


async def test_a_late_course_created_does_not_unpublish(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)], revision=5)
    await service.publish(service.course_changed("course.created", course, status="draft", revision=1))
    await asyncio.sleep(0.5)
    assert await service.scalar(sa.select(courses.c.revision).where(courses.c.course_id == course)) == 5
    assert (await service.enroll(user, course))["status"] == "active"


async def test_a_repeated_course_event_changes_nothing(service, ids):
    course = next(ids)
    published = service.course_published(course, [activity(1)])
    await service.publish(published, published)
    await service.until_course(course, version=1)
    await asyncio.sleep(0.3)
    count = sa.select(sa.func.count()).select_from(course_versions).where(course_versions.c.course_id == course)
    assert await service.scalar(count) == 1


async def test_an_archived_course_keeps_its_enrollments_but_takes_no_new_ones(service, ids):
    course, user, other = next(ids), next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    await service.publish(service.course_changed("course.archived", course, status="archived"),
                          service.user_upserted(other))
    await service.until_course(course, status="archived")
    await service.until_user(other)
    assert (await service.enroll(user, course))["id"] == enrollment["id"]  # still there, returned as it is
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": other, "course_id": course}, expect=400)
    assert "archived" in body["error"]["message"]


async def test_an_older_user_revision_does_not_overwrite_a_newer_one(service, ids):
    user = next(ids)
    await service.publish(service.user_upserted(user, name="New Name", revision=4))
    await service.until_user(user, revision=4)
    await service.publish(service.user_upserted(user, name="Old Name", revision=2))
    await asyncio.sleep(0.5)
    name = await service.scalar(sa.select(directory_users.c.name).where(directory_users.c.user_id == user))
    assert name == "New Name"


async def test_a_newer_user_revision_replaces_the_name(service, ids):
    user = next(ids)
    await service.publish(service.user_upserted(user, name="Grace", revision=1))
    await service.until_user(user, revision=1)
    await service.publish(service.user_upserted(user, name="Grace Hopper", revision=2))
    await service.until_user(user, revision=2)
    name = await service.scalar(sa.select(directory_users.c.name).where(directory_users.c.user_id == user))
    assert name == "Grace Hopper"


async def test_users_are_kept_per_tenant(service, ids):
    user = next(ids)
    await service.publish(service.user_upserted(user, tenant_id=2, tenant="globex"))
    await service.until_user(user, tenant_id=2)
    course = next(ids)
    await service.publish(service.course_published(course, [activity(1)]))
    await service.until_course(course, version=1)
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course}, expect=400)
    assert body["error"]["code"] == "invalid_argument"


async def test_the_forwarded_tenant_name_is_remembered(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course},
                       extra_headers={"X-Learn-Tenant-Name": "Acme%20Corp"})
    assert await service.scalar(sa.select(tenants.c.name).where(tenants.c.tenant_id == 1)) == "Acme Corp"
