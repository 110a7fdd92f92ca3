"""``Idempotency-Key`` on ``POST /enrollments`` at the service (the shared rule, shared/idempotency.py): same key
and body, same response; another body, 422; in flight, 409. Through the gateway: tests/e2e/test_e2e_idempotency.py."""

from __future__ import annotations

import asyncio

from tests.enrollment.conftest import activity

ENROLLMENTS = "/api/v1/learn/enrollments"


async def _post(service, body, key, **header_args):
    headers = {**service.headers(**header_args), "Idempotency-Key": key}
    async with service.client.post(ENROLLMENTS, json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_the_same_key_and_body_replay_the_first_response(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    body = {"user_id": user, "course_id": course, "source": "stripe_purchase"}
    first_status, first, _ = await _post(service, body, "checkout-1")
    again_status, again, headers = await _post(service, body, "checkout-1")
    assert (first_status, again_status) == (201, 201)
    assert again["data"] == first["data"] and headers["Idempotent-Replayed"] == "true"
    assert again["request_id"] != first["request_id"]
    await events.wait_for("enrollment.created")
    await asyncio.sleep(0.3)
    assert len(events.of_type("enrollment.created")) == 1


async def test_key_order_and_whitespace_do_not_make_another_body(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    headers = {**service.headers(), "Idempotency-Key": "k-order", "Content-Type": "application/json"}
    async with service.client.post(ENROLLMENTS, data=f'{{"user_id":{user},"course_id":{course}}}',
                                   headers=headers) as resp:
        first = await resp.json()
    async with service.client.post(ENROLLMENTS, data=f'{{ "course_id": {course},  "user_id": {user} }}',
                                   headers=headers) as resp:
        assert resp.status == 201 and (await resp.json())["data"] == first["data"]


async def test_the_same_key_with_another_body_is_idempotency_key_reused(service, ids):
    course, user, other = next(ids), next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    await service.publish(service.user_upserted(other))
    await service.until_user(other)
    await _post(service, {"user_id": user, "course_id": course}, "checkout-2")
    status, body, _ = await _post(service, {"user_id": other, "course_id": course}, "checkout-2")
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in body["error"]["message"]
    _, listed = await service.call("GET", f"{ENROLLMENTS}?user_id={other}", expect=200)
    assert listed["data"] == []


async def test_a_failed_request_is_not_remembered_so_it_can_be_retried(service, ids):
    course, user = next(ids), next(ids)
    body = {"user_id": user, "course_id": course}
    status, _, _ = await _post(service, body, "checkout-3")
    assert status == 404  # the course has not reached this service yet
    await service.given_course_and_user(course, user, [activity(1)])
    status, created, _ = await _post(service, body, "checkout-3")
    assert status == 201 and created["data"]["user_id"] == user


async def test_concurrent_requests_with_one_key_get_one_enrollment(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    body = {"user_id": user, "course_id": course}
    results = await asyncio.gather(*[_post(service, body, "checkout-4") for _ in range(10)])
    # The first claims the key; the others replay its answer, or hear it is still in flight (409).
    assert {r[0] for r in results} <= {201, 409}
    created = [r for r in results if r[0] == 201]
    assert len([r for r in created if r[2].get("Idempotent-Replayed") != "true"]) == 1
    assert len({r[1]["data"]["id"] for r in created}) == 1
    assert all(r[1]["error"]["code"] == "idempotency_key_in_flight" for r in results if r[0] == 409)
    await events.wait_for("enrollment.created")
    await asyncio.sleep(0.3)
    assert len(events.of_type("enrollment.created")) == 1


async def test_keys_belong_to_one_tenant(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    await _post(service, {"user_id": user, "course_id": course}, "shared-key")
    status, body, _ = await _post(service, {"user_id": user, "course_id": course}, "shared-key", tenant_id=2,
                                  tenant="globex")
    assert status == 404 and body["error"]["code"] == "course_not_found"


async def test_an_overlong_key_is_invalid_argument(service):
    status, body, _ = await _post(service, {"user_id": 1, "course_id": 1}, "k" * 256)
    assert status == 400 and body["error"]["code"] == "invalid_argument"
