"""The documented journeys, written as the tightest client would write them (issue 14, item 6).

Every call follows the previous answer at once; nothing retries. The one exception is stated where it happens:
issuing a certificate is asynchronous by design (completion → event → certificates), so a client learns of it
from an event or by looking; the test looks, then exercises the promises (revoke → verify) at client speed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from tests.client.conftest import Client

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

_ids = itertools.count(500_000)
DONE = {"cmi.completion_status": "completed", "cmi.success_status": "passed", "cmi.score.scaled": "0.85",
        "cmi.score.raw": "85", "cmi.session_time": "PT2M"}


async def complete(system: Client, slug: str, key: str, course_id: int, activity_id: int) -> dict[str, Any]:
    """Upsert a learner, enroll, launch, commit, finish: each call right after the previous one."""
    user_id = next(_ids)
    await system.user(slug, user_id, f"Learner {user_id}")
    status, body, _ = await system.api(key, "POST", "/enrollments", json={
        "user_id": user_id, "course_id": course_id, "source": "stripe_purchase"})
    assert status == 201, body
    enrollment = body["data"]
    status, body, _ = await system.api(key, "POST", f"/enrollments/{enrollment['id']}/launches",
                                       json={"activity_id": activity_id})
    assert status == 201, body
    token = body["data"]["runtime_token"]
    status, body, _ = await system.request("POST", f"/learn/runtime/{token}/commit", json={"cmi": DONE})
    assert status == 200, body
    status, body, _ = await system.request("POST", f"/learn/runtime/{token}/finish", json={"cmi": DONE})
    assert status == 200, body
    return enrollment


async def test_the_seed_flow_enroll_on_purchase_to_a_completed_attempt(system: Client) -> None:
    slug, key = await system.tenant()
    await system.user(slug, 123, "Ada Buyer")
    course, activity = await system.published_course(slug, key)
    status, body, _ = await system.api(key, "POST", "/enrollments", json={
        "user_id": 123, "course_id": course["id"], "source": "stripe_purchase"})
    assert status == 201, body
    enrollment = body["data"]
    status, body, _ = await system.api(key, "POST", "/enrollments", json={
        "user_id": 123, "course_id": course["id"], "source": "stripe_purchase"})
    assert status == 200 and body["data"]["id"] == enrollment["id"], body
    status, body, _ = await system.api(key, "GET", f"/enrollments?user_id=123&course_id={course['id']}")
    assert status == 200 and [e["id"] for e in body["data"]] == [enrollment["id"]], body

    status, body, _ = await system.api(key, "POST", f"/enrollments/{enrollment['id']}/launches",
                                       json={"activity_id": activity["id"]})
    assert status == 201, body
    launch = body["data"]
    token = launch["runtime_token"]
    status, body, _ = await system.request("POST", f"/learn/runtime/{token}/commit", json={"cmi": DONE})
    assert status == 200, body
    status, body, _ = await system.request("POST", f"/learn/runtime/{token}/finish", json={"cmi": DONE})
    assert status == 200, body

    status, body, _ = await system.api(key, "GET", f"/enrollments/{enrollment['id']}")
    assert status == 200, body
    assert body["data"]["status"] == "completed" and body["data"]["completed_at"], body
    assert body["data"]["progress"] == {"required_total": 1, "required_done": 1}
    status, body, _ = await system.api(key, "GET", f"/attempts?enrollment_id={enrollment['id']}")
    assert status == 200, body
    (attempt,) = body["data"]
    assert attempt["id"] == launch["attempt_id"]
    assert attempt["status"] == "passed" and attempt["passed"] is True
    assert attempt["score_scaled"] == 0.85 and attempt["time_ended_at"], attempt
    status, body, _ = await system.api(key, "POST", f"/enrollments/{enrollment['id']}/cancel")
    assert status == 400 and body["error"]["code"] == "invalid_argument", body


async def test_a_cohort_grant_enrolls_and_the_enrollments_launch_at_once(system: Client) -> None:
    slug, key = await system.tenant()
    published = [await system.published_course(slug, key) for _ in range(2)]
    status, body, _ = await system.admin("POST", f"/tenants/{slug}/cohorts", json={
        "name": "Spring", "course_ids": [course["id"] for course, _ in published]})
    assert status == 201, body
    cohort = body["data"]
    for _ in range(20):
        user_id = next(_ids)
        await system.user(slug, user_id)
        status, body, _ = await system.api(key, "POST", "/cohorts/grant",
                                           json={"user_id": user_id, "cohort_id": cohort["id"]})
        assert status == 201, body
        enrollments = {e["course_id"]: e for e in body["data"]["enrollments"]}
        assert set(enrollments) == {course["id"] for course, _ in published}, body
        for course, activity in published:
            status, body, _ = await system.api(key, "POST", f"/enrollments/{enrollments[course['id']]['id']}/launches",
                                               json={"activity_id": activity["id"]})
            assert status == 201, body


async def test_a_course_update_shows_in_the_next_read(system: Client) -> None:
    slug, key = await system.tenant()
    course, _ = await system.published_course(slug, key)
    for n in range(20):
        status, body, _ = await system.api(key, "POST", f"/courses/{course['id']}", json={"title": f"Title {n}"})
        assert status == 200, body
        status, body, _ = await system.api(key, "GET", f"/courses/{course['id']}")
        assert status == 200 and body["data"]["title"] == f"Title {n}", body


async def test_revoke_then_verify_fifty_times(system: Client) -> None:
    slug, key = await system.tenant()
    course, activity = await system.published_course(slug, key)
    gate = asyncio.Semaphore(8)

    async def learner() -> dict[str, Any]:
        async with gate:
            return await complete(system, slug, key, course["id"], activity["id"])

    enrollments = await asyncio.gather(*(learner() for _ in range(50)))
    # Issuing is asynchronous by design (enrollment.completed → certificates): look until all 50 exist.
    deadline = time.monotonic() + 120
    certificates: list[dict[str, Any]] = []
    while len(certificates) < 50:
        assert time.monotonic() < deadline, f"{len(certificates)} of 50 certificates issued in 120 s"
        status, body, _ = await system.api(key, "GET", f"/certificates?course_id={course['id']}&limit=100")
        assert status == 200, body
        certificates = body["data"]
        if len(certificates) < 50:
            await asyncio.sleep(0.2)
    assert sorted(c["enrollment_id"] for c in certificates) == sorted(e["id"] for e in enrollments)

    async def revoke_and_verify(cert: dict[str, Any]) -> None:
        async with gate:
            status, body, _ = await system.api(key, "POST", f"/certificates/{cert['id']}/revoke",
                                               json={"reason": "Issued in error"})
            assert status == 200, body
            status, body, _ = await system.api(key, "GET", f"/certificates/verify/{cert['verification_id']}")
            assert status == 200 and body["data"]["is_revoked"] is True, body
            status, html, _ = await system.request("GET", f"/verify/{cert['verification_id']}")
            assert status == 200 and b"revoked" in html.lower(), html[:200]
            status, body, _ = await system.api(key, "POST", f"/certificates/{cert['id']}/regenerate-pdf")
            assert status == 200 and body["data"]["pdf"]["version"] > cert["pdf"]["version"], body
            status, body, _ = await system.api(key, "GET", f"/certificates/{cert['id']}")
            assert status == 200 and body["data"]["is_revoked"] is True, body

    await asyncio.gather(*(revoke_and_verify(cert) for cert in certificates))
