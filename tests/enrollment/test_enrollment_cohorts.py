"""Cohorts: admin create/list/get/update, and the public grant (membership + one enrollment per published course)."""

from __future__ import annotations

import asyncio

from tests.enrollment.conftest import activity

ADMIN = "/admin/v1/cohorts"
GRANT = "/api/v1/learn/cohorts/grant"
GRANT_SCOPES = "learn:cohorts:grant"


async def _cohort(service, course_ids, name="Spring cohort"):
    _, body = await service.call("POST", ADMIN, json={"name": name, "course_ids": course_ids}, scopes="admin",
                                 expect=201)
    return body["data"]


async def _grant(service, body, expect=None):
    return await service.call("POST", GRANT, json=body, scopes=GRANT_SCOPES, expect=expect)


# --- admin ---------------------------------------------------------------------------------------------------


async def test_admin_creates_a_cohort(service):
    cohort = await _cohort(service, [5, 6, 5])
    assert cohort["name"] == "Spring cohort" and cohort["course_ids"] == [5, 6]
    assert isinstance(cohort["id"], int) and cohort["created_at"].endswith("Z") and cohort["updated_at"]


async def test_admin_lists_and_gets_cohorts_of_its_tenant(service):
    first = await _cohort(service, [1], name="A")
    second = await _cohort(service, [2], name="B")
    await service.call("POST", ADMIN, json={"name": "Other", "course_ids": [3]}, scopes="admin", tenant_id=2,
                       tenant="globex", expect=201)
    _, listed = await service.call("GET", ADMIN, scopes="admin", expect=200)
    assert [c["id"] for c in listed["data"]] == [second["id"], first["id"]]
    _, page = await service.call("GET", f"{ADMIN}?limit=1", scopes="admin", expect=200)
    assert [c["id"] for c in page["data"]] == [second["id"]] and page["next_cursor"]
    _, got = await service.call("GET", f"{ADMIN}/{first['id']}", scopes="admin", expect=200)
    assert got["data"] == first


async def test_admin_updates_name_and_courses(service):
    cohort = await _cohort(service, [1])
    _, renamed = await service.call("POST", f"{ADMIN}/{cohort['id']}", json={"name": "Renamed"}, scopes="admin",
                                    expect=200)
    assert renamed["data"]["name"] == "Renamed" and renamed["data"]["course_ids"] == [1]
    _, moved = await service.call("POST", f"{ADMIN}/{cohort['id']}", json={"course_ids": [2, 3]}, scopes="admin",
                                  expect=200)
    assert moved["data"]["name"] == "Renamed" and moved["data"]["course_ids"] == [2, 3]


async def test_cohort_admin_needs_the_admin_scope(service):
    for method, path in [("POST", ADMIN), ("GET", ADMIN), ("GET", f"{ADMIN}/1")]:
        _, body = await service.call(method, path, json={"name": "x", "course_ids": [1]}, expect=403)
        assert body["error"]["code"] == "insufficient_scope", path


async def test_unknown_or_other_tenant_cohort_is_cohort_not_found(service):
    cohort = await _cohort(service, [1])
    _, body = await service.call("GET", f"{ADMIN}/{cohort['id']}", scopes="admin", tenant_id=2, tenant="globex",
                                 expect=404)
    assert body["error"] == {"code": "cohort_not_found", "message": "Cohort not found.",
                             "request_id": body["error"]["request_id"]}
    _, body = await service.call("POST", f"{ADMIN}/999999", json={"name": "x"}, scopes="admin", expect=404)
    assert body["error"]["code"] == "cohort_not_found"


async def test_bad_cohort_bodies_are_rejected(service):
    cases = [({"course_ids": [1]}, "missing_field"), ({"name": "  ", "course_ids": [1]}, "missing_field"),
             ({"name": "x"}, "missing_field"), ({"name": "x", "course_ids": []}, "invalid_argument"),
             ({"name": "x", "course_ids": [0]}, "invalid_argument"),
             ({"name": "x", "course_ids": ["1"]}, "invalid_argument"),
             ({"name": "x", "course_ids": [1], "id": 4}, "invalid_argument")]
    for payload, code in cases:
        _, body = await service.call("POST", ADMIN, json=payload, scopes="admin", expect=400)
        assert body["error"]["code"] == code, payload
    cohort = await _cohort(service, [1])
    _, body = await service.call("POST", f"{ADMIN}/{cohort['id']}", json={"name": None}, scopes="admin", expect=400)
    assert body["error"]["code"] == "invalid_argument"


# --- grant ---------------------------------------------------------------------------------------------------


async def test_grant_enrolls_the_user_in_each_published_course_of_the_cohort(service, ids, events):
    published_a, published_b, draft, unknown, user = (next(ids) for _ in range(5))
    await service.given_course_and_user(published_a, user, [activity(1)])
    await service.given_course_and_user(published_b, user, [activity(2)])
    await service.publish(service.course_changed("course.created", draft, status="draft"))
    await service.until_course(draft, status="draft")
    cohort = await _cohort(service, [published_a, draft, unknown, published_b])

    _, body = await _grant(service, {"user_id": user, "cohort_id": cohort["id"]}, expect=201)
    grant = body["data"]
    assert grant["cohort_id"] == cohort["id"] and grant["user_id"] == user and grant["granted_at"].endswith("Z")
    assert [(e["course_id"], e["source"], e["status"]) for e in grant["enrollments"]] == [
        (published_a, "cohort", "active"), (published_b, "cohort", "active")]
    granted = (await events.wait_for("cohort.access_granted"))[0]
    assert granted.data["enrollment_ids"] == [e["id"] for e in grant["enrollments"]]
    assert granted.routing_key == "acme.cohort.access_granted"
    await events.wait_for("enrollment.created", count=2)


async def test_repeating_a_grant_changes_nothing(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    cohort = await _cohort(service, [course])
    _, first = await _grant(service, {"user_id": user, "cohort_id": cohort["id"]}, expect=201)
    await events.wait_for("cohort.access_granted")
    _, again = await _grant(service, {"user_id": user, "cohort_id": cohort["id"]}, expect=200)
    assert again["data"] == first["data"]
    await asyncio.sleep(0.5)
    assert len(events.of_type("cohort.access_granted")) == 1 and len(events.of_type("enrollment.created")) == 1


async def test_concurrent_grants_make_one_membership_and_one_enrollment_per_course(service, ids, events):
    course_a, course_b, user = next(ids), next(ids), next(ids)
    await service.given_course_and_user(course_a, user, [activity(1)])
    await service.given_course_and_user(course_b, user, [activity(2)])
    cohort = await _cohort(service, [course_a, course_b])
    results = await asyncio.gather(*[_grant(service, {"user_id": user, "cohort_id": cohort["id"]})
                                     for _ in range(8)])
    assert sorted(status for status, _ in results) == [200] * 7 + [201]
    assert len({tuple(e["id"] for e in body["data"]["enrollments"]) for _, body in results}) == 1
    await events.wait_for("cohort.access_granted")
    await asyncio.sleep(0.5)
    assert len(events.of_type("cohort.access_granted")) == 1 and len(events.of_type("enrollment.created")) == 2


async def test_an_existing_enrollment_is_part_of_the_grant_as_it_is(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    existing = await service.enroll(user, course, source="stripe_purchase")
    cohort = await _cohort(service, [course])
    _, body = await _grant(service, {"user_id": user, "cohort_id": cohort["id"]}, expect=201)
    assert body["data"]["enrollments"] == [existing]


async def test_grant_passes_expires_at_to_new_enrollments(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    cohort = await _cohort(service, [course])
    _, body = await _grant(service, {"user_id": user, "cohort_id": cohort["id"], "expires_at": "2099-01-01T00:00:00Z"},
                           expect=201)
    assert body["data"]["enrollments"][0]["expires_at"] == "2099-01-01T00:00:00Z"


async def test_grant_bad_input(service, ids):
    user = next(ids)
    await service.publish(service.user_upserted(user))
    await service.until_user(user)
    cohort = await _cohort(service, [1])
    _, body = await _grant(service, {"user_id": user, "cohort_id": 999999}, expect=404)
    assert body["error"]["code"] == "cohort_not_found"
    _, body = await _grant(service, {"user_id": 424242, "cohort_id": cohort["id"]}, expect=400)
    assert body["error"]["code"] == "invalid_argument"
    _, body = await _grant(service, {"cohort_id": cohort["id"]}, expect=400)
    assert body["error"]["code"] == "missing_field"
    _, body = await _grant(service, {"user_id": user, "cohort_id": cohort["id"], "expires_at": "2000-01-01T00:00:00Z"},
                           expect=400)
    assert body["error"]["code"] == "invalid_argument"
    _, body = await service.call("POST", GRANT, json={"user_id": user, "cohort_id": cohort["id"]}, expect=403)
    assert body["error"]["code"] == "insufficient_scope" and GRANT_SCOPES in body["error"]["message"]
