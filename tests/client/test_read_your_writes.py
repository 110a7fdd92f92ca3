"""Read-your-writes through the gateway (issue 14, ADR 0010): a 2xx write holds on the very next request.

Each sequence from the issue runs 200 times, each time with no pause between the write and the request that
depends on it, on the real topology and on the embedded default. Eight lanes run at once: a busy tenant is the
harder case (the pipeline is loaded while the client reads its own writes).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from tests.client.conftest import Client

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

TRIALS = 200
LANES = 8
_ids = itertools.count(10_000)


async def lanes(trial: Callable[[int], Awaitable[None]], trials: int = TRIALS) -> None:
    numbers = iter(range(trials))

    async def lane() -> None:
        for n in numbers:
            await trial(n)

    await asyncio.gather(*(lane() for _ in range(LANES)))


async def test_a_user_upserted_in_the_directory_can_be_enrolled_at_once(system: Client) -> None:
    slug, key = await system.tenant()
    course, _ = await system.published_course(slug, key)

    async def trial(_n: int) -> None:
        user_id = next(_ids)
        await system.user(slug, user_id)
        status, body, _ = await system.api(key, "POST", "/enrollments",
                                           json={"user_id": user_id, "course_id": course["id"]})
        assert status == 201, body

    await lanes(trial)


async def test_a_published_course_takes_enrollments_at_once_and_an_unpublished_one_refuses_them(
        system: Client) -> None:
    slug, key = await system.tenant()
    courses = [await system.draft_course(slug, key) for _ in range(LANES)]
    users = [next(_ids) for _ in range(TRIALS)]
    for user_id in users:
        await system.user(slug, user_id)
    free_courses = asyncio.Queue[int]()
    for course, _ in courses:
        free_courses.put_nowait(course["id"])

    async def trial(n: int) -> None:
        course_id = await free_courses.get()
        try:
            status, body, _ = await system.api(key, "POST", f"/courses/{course_id}/publish")
            assert status == 200, body
            status, body, _ = await system.api(key, "POST", "/enrollments",
                                               json={"user_id": users[n], "course_id": course_id})
            assert status == 201, body
            status, body, _ = await system.api(key, "POST", f"/courses/{course_id}/unpublish")
            assert status == 200, body
            status, body, _ = await system.api(key, "POST", "/enrollments",
                                               json={"user_id": next(_ids), "course_id": course_id})
            assert status == 400 and body["error"]["code"] == "invalid_argument", body
        finally:
            free_courses.put_nowait(course_id)

    await lanes(trial)


async def test_a_new_enrollment_can_launch_at_once(system: Client) -> None:
    slug, key = await system.tenant()
    course, activity = await system.published_course(slug, key)
    users = [next(_ids) for _ in range(TRIALS)]
    for user_id in users:
        await system.user(slug, user_id)

    async def trial(n: int) -> None:
        status, body, _ = await system.api(key, "POST", "/enrollments",
                                           json={"user_id": users[n], "course_id": course["id"]})
        assert status == 201, body
        status, body, _ = await system.api(key, "POST", f"/enrollments/{body['data']['id']}/launches",
                                           json={"activity_id": activity["id"]})
        assert status == 201, body
        assert body["data"]["runtime_token"]

    await lanes(trial)


async def test_a_cancelled_enrollment_cannot_launch_on_the_next_request(system: Client) -> None:
    slug, key = await system.tenant()
    course, activity = await system.published_course(slug, key)

    async def trial(_n: int) -> None:
        user_id = next(_ids)
        await system.user(slug, user_id)
        status, body, _ = await system.api(key, "POST", "/enrollments",
                                           json={"user_id": user_id, "course_id": course["id"]})
        assert status == 201, body
        enrollment_id = body["data"]["id"]
        status, body, _ = await system.api(key, "POST", f"/enrollments/{enrollment_id}/cancel")
        assert status == 200, body
        status, body, _ = await system.api(key, "POST", f"/enrollments/{enrollment_id}/launches",
                                           json={"activity_id": activity["id"]})
        assert 400 <= status < 500 and status != 404, body

    await lanes(trial, trials=40)


async def test_a_runtime_commit_shows_in_the_attempt_and_the_enrollment_on_the_next_request(
        system: Client) -> None:
    slug, key = await system.tenant()
    course, activity = await system.published_course(slug, key)

    async def trial(_n: int) -> None:
        user_id = next(_ids)
        await system.user(slug, user_id)
        status, body, _ = await system.api(key, "POST", "/enrollments",
                                           json={"user_id": user_id, "course_id": course["id"]})
        assert status == 201, body
        enrollment_id = body["data"]["id"]
        status, body, _ = await system.api(key, "POST", f"/enrollments/{enrollment_id}/launches",
                                           json={"activity_id": activity["id"]})
        assert status == 201, body
        token = body["data"]["runtime_token"]
        status, body, _ = await system.request("POST", f"/learn/runtime/{token}/commit", json={
            "cmi": {"cmi.completion_status": "completed", "cmi.success_status": "passed",
                    "cmi.score.scaled": "0.9", "cmi.session_time": "PT1M"}})
        assert status == 200, body
        status, body, _ = await system.api(key, "GET", f"/enrollments/{enrollment_id}")
        assert status == 200, body
        assert body["data"]["status"] == "completed", body
        assert body["data"]["progress"]["required_done"] == 1, body

    await lanes(trial, trials=40)


async def test_a_forged_consistency_token_is_ignored(system: Client) -> None:
    """A forged token never makes a request wait or fail (the bounded wait is tested in tests/shared)."""
    _slug, key = await system.tenant()
    status, body, _ = await system.api(key, "GET", "/courses", headers={"Consistency-Token": "forged.token"})
    assert status == 200, body
