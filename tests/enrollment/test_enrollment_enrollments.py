"""Enrollments over HTTP: create, get, list, cancel, and every bad input of the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.enrollment.conftest import activity

ENROLLMENTS = "/api/v1/learn/enrollments"


async def test_seed_enroll_on_purchase_example_enrolls_the_buyer(service, events):
    await service.given_course_and_user(42, 123, [activity(1)])
    _, body = await service.call("POST", ENROLLMENTS, expect=201,
                                 json={"user_id": 123, "course_id": 42, "source": "stripe_purchase"})
    data = body["data"]
    assert body["next_cursor"] is None and body["request_id"].startswith("req_")
    assert data["user_id"] == 123 and data["course_id"] == 42 and data["course_version"] == 1
    assert data["status"] == "active" and data["source"] == "stripe_purchase"
    assert data["enrolled_at"].endswith("Z") and data["expires_at"] is None
    assert data["completed_at"] is None and data["cancelled_at"] is None
    assert data["progress"] == {"required_total": 1, "required_done": 0}
    created = await events.wait_for("enrollment.created")
    assert created[0].data["enrollment_id"] == data["id"] and created[0].routing_key == "acme.enrollment.created"
    assert created[0].data["source"] == "stripe_purchase"


async def test_source_defaults_to_api(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    assert (await service.enroll(user, course))["source"] == "api"


async def test_enrolling_again_returns_the_active_enrollment_without_a_duplicate(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    first = await service.enroll(user, course)
    status, body = await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course})
    assert status == 200 and body["data"] == first
    _, listed = await service.call("GET", f"{ENROLLMENTS}?user_id={user}", expect=200)
    assert [e["id"] for e in listed["data"]] == [first["id"]]


async def test_concurrent_enrollments_of_one_learner_create_one_row(service, ids):
    import asyncio

    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    results = await asyncio.gather(*[
        service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course}) for _ in range(10)])
    assert sorted(status for status, _ in results) == [200] * 9 + [201]
    assert len({body["data"]["id"] for _, body in results}) == 1


async def test_expires_at_is_kept_in_utc(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    data = await service.enroll(user, course, expires_at="2099-01-01T12:00:00+02:00")
    assert data["expires_at"] == "2099-01-01T10:00:00Z"


async def test_get_returns_one_enrollment(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    created = await service.enroll(user, course)
    _, body = await service.call("GET", f"{ENROLLMENTS}/{created['id']}", expect=200)
    assert body["data"] == created and body["next_cursor"] is None


async def test_list_filters_by_course_and_user_and_pages_by_id_descending(service, ids):
    course_a, course_b, user_a, user_b = next(ids), next(ids), next(ids), next(ids)
    await service.given_course_and_user(course_a, user_a, [activity(1)])
    await service.given_course_and_user(course_b, user_b, [activity(2)])
    made = [await service.enroll(u, c) for u in (user_a, user_b) for c in (course_a, course_b)]
    _, by_course = await service.call("GET", f"{ENROLLMENTS}?course_id={course_a}", expect=200)
    assert [e["id"] for e in by_course["data"]] == [made[2]["id"], made[0]["id"]]
    _, both = await service.call("GET", f"{ENROLLMENTS}?course_id={course_a}&user_id={user_b}", expect=200)
    assert [e["id"] for e in both["data"]] == [made[2]["id"]]

    _, page1 = await service.call("GET", f"{ENROLLMENTS}?limit=3", expect=200)
    assert [e["id"] for e in page1["data"]] == [m["id"] for m in reversed(made)][:3]
    _, page2 = await service.call("GET", f"{ENROLLMENTS}?limit=3&cursor={page1['next_cursor']}", expect=200)
    assert [e["id"] for e in page2["data"]] == [made[0]["id"]] and page2["next_cursor"] is None


async def test_a_cursor_from_other_filters_is_rejected(service, ids):
    course_a, course_b, user = next(ids), next(ids), next(ids)
    await service.given_course_and_user(course_a, user, [activity(1)])
    await service.given_course_and_user(course_b, user, [activity(2)])
    await service.enroll(user, course_a)
    await service.enroll(user, course_b)
    _, page = await service.call("GET", f"{ENROLLMENTS}?limit=1&user_id={user}", expect=200)
    assert page["next_cursor"] is not None
    _, body = await service.call("GET", f"{ENROLLMENTS}?limit=1&cursor={page['next_cursor']}", expect=400)
    assert body["error"]["code"] == "invalid_argument" and "cursor" in body["error"]["message"]


async def test_other_tenants_do_not_see_an_enrollment(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    created = await service.enroll(user, course)
    _, body = await service.call("GET", f"{ENROLLMENTS}/{created['id']}", tenant_id=2, tenant="globex",
                                 expect=404)
    assert body["error"]["code"] == "enrollment_not_found"
    _, listed = await service.call("GET", ENROLLMENTS, tenant_id=2, tenant="globex", expect=200)
    assert listed["data"] == []


async def test_cancel_moves_active_to_cancelled_and_emits_the_event(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    created = await service.enroll(user, course)
    _, body = await service.call("POST", f"{ENROLLMENTS}/{created['id']}/cancel", expect=200)
    assert body["data"]["status"] == "cancelled" and body["data"]["cancelled_at"].endswith("Z")
    cancelled = await events.wait_for("enrollment.cancelled")
    assert cancelled[0].data["enrollment_id"] == created["id"] and cancelled[0].data["revision"] == 2


async def test_cancelling_a_cancelled_enrollment_returns_it_unchanged(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    created = await service.enroll(user, course)
    _, first = await service.call("POST", f"{ENROLLMENTS}/{created['id']}/cancel", expect=200)
    _, again = await service.call("POST", f"{ENROLLMENTS}/{created['id']}/cancel", expect=200)
    assert again["data"] == first["data"]


async def test_enrolling_after_a_cancellation_creates_a_new_enrollment(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    created = await service.enroll(user, course)
    await service.call("POST", f"{ENROLLMENTS}/{created['id']}/cancel", expect=200)
    status, body = await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course})
    assert status == 201 and body["data"]["id"] != created["id"] and body["data"]["status"] == "active"


# --- bad input (issue 5's table) ------------------------------------------------------------------------------


async def test_unknown_course_is_course_not_found(service, ids):
    user = next(ids)
    await service.publish(service.user_upserted(user))
    await service.until_user(user)
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": 999_999}, expect=404)
    assert body["error"] == {"code": "course_not_found", "message": "Course not found.",
                             "request_id": body["error"]["request_id"]}


async def test_other_tenants_course_answers_like_a_missing_one(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    await service.publish(service.user_upserted(user, tenant_id=2, tenant="globex"))
    await service.until_user(user, tenant_id=2)
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course},
                                 tenant_id=2, tenant="globex", expect=404)
    assert body["error"]["code"] == "course_not_found" and body["error"]["message"] == "Course not found."


@pytest.mark.parametrize("event_type,status", [("course.created", "draft"), ("course.unpublished", "draft"),
                                               ("course.archived", "archived")])
async def test_a_course_that_is_not_published_is_invalid_argument(service, ids, event_type, status):
    course, user = next(ids), next(ids)
    if event_type == "course.created":
        await service.publish(service.course_changed(event_type, course, status=status), service.user_upserted(user))
    else:
        await service.given_course_and_user(course, user, [activity(1)])
        await service.publish(service.course_changed(event_type, course, status=status))
    await service.until_course(course, status=status)
    await service.until_user(user)
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": user, "course_id": course}, expect=400)
    assert body["error"]["code"] == "invalid_argument" and "published" in body["error"]["message"]


async def test_unknown_user_is_invalid_argument(service, ids):
    course = next(ids)
    await service.publish(service.course_published(course, [activity(1)]))
    await service.until_course(course, version=1)
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": 424242, "course_id": course}, expect=400)
    assert body["error"]["code"] == "invalid_argument" and "424242" in body["error"]["message"]


@pytest.mark.parametrize("expires_at", [
    pytest.param((datetime.now(UTC) - timedelta(minutes=1)).isoformat(), id="a-minute-ago"), "2099-01-01",
    "2099-01-01T10:00:00",
    "tomorrow", "1767225600", 1767225600,
])
async def test_expires_at_in_the_past_or_not_rfc3339_is_invalid_argument(service, ids, expires_at):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    _, body = await service.call("POST", ENROLLMENTS, expect=400,
                                 json={"user_id": user, "course_id": course, "expires_at": expires_at})
    assert body["error"]["code"] == "invalid_argument" and "expires_at" in body["error"]["message"]


@pytest.mark.parametrize("user_id", [0, -3, "12", 1.5, True, [1], 2**63])
async def test_user_id_that_is_not_a_positive_integer_is_invalid_argument(service, user_id):
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": user_id, "course_id": 1}, expect=400)
    assert body["error"]["code"] == "invalid_argument" and "user_id" in body["error"]["message"]


@pytest.mark.parametrize("payload,field", [({"course_id": 1}, "user_id"), ({"user_id": 1}, "course_id"),
                                           ({"user_id": None, "course_id": 1}, "user_id"), ({}, "user_id")])
async def test_missing_user_id_or_course_id_is_missing_field(service, payload, field):
    _, body = await service.call("POST", ENROLLMENTS, json=payload, expect=400)
    assert body["error"]["code"] == "missing_field" and field in body["error"]["message"]


@pytest.mark.parametrize("source", ["", "   ", "x" * 65, 7])
async def test_a_blank_overlong_or_non_string_source_is_invalid_argument(service, source):
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": 1, "course_id": 1, "source": source},
                                 expect=400)
    assert body["error"]["code"] == "invalid_argument" and "source" in body["error"]["message"]


async def test_unknown_body_fields_are_invalid_argument(service):
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": 1, "course_id": 1, "status": "completed"},
                                 expect=400)
    assert body["error"]["code"] == "invalid_argument" and "status" in body["error"]["message"]


async def test_unknown_enrollment_is_enrollment_not_found(service):
    for method, path in [("GET", f"{ENROLLMENTS}/987654"), ("POST", f"{ENROLLMENTS}/987654/cancel"),
                         ("GET", f"{ENROLLMENTS}/not-a-number")]:
        _, body = await service.call(method, path, expect=404)
        assert body["error"]["code"] == "enrollment_not_found", path


async def test_non_integer_list_filter_is_invalid_argument(service):
    _, body = await service.call("GET", f"{ENROLLMENTS}?course_id=abc", expect=400)
    assert body["error"]["code"] == "invalid_argument"


async def test_missing_scope_is_insufficient_scope(service):
    _, body = await service.call("POST", ENROLLMENTS, json={"user_id": 1, "course_id": 1}, scopes="learn:read",
                                 expect=403)
    assert body["error"]["code"] == "insufficient_scope" and "learn:write" in body["error"]["message"]
    _, body = await service.call("GET", ENROLLMENTS, scopes="learn:write", expect=403)
    assert "learn:read" in body["error"]["message"]
