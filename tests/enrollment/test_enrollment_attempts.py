"""Attempts: one row per launch, written from runtime commits, read through the public API."""

from __future__ import annotations

from tests.enrollment.conftest import activity

ATTEMPTS = "/api/v1/learn/attempts"


async def _enrolled(service, ids, activities=None):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, activities or [activity(1), activity(2)])
    return await service.enroll(user, course)


async def test_an_attempt_has_the_contract_fields_and_the_launch_id(service, ids, events):
    enrollment = await _enrolled(service, ids)
    commit = service.runtime_committed(enrollment, 1, sequence=1, status="passed", score_scaled="0.75", delta="42")
    await service.publish(commit)
    await events.wait_for("attempt.updated")
    _, body = await service.call("GET", f"{ATTEMPTS}/{commit.data['attempt_id']}", expect=200)
    attempt = body["data"]
    assert set(attempt) == {"id", "enrollment_id", "activity_id", "user_id", "course_id", "status", "score_raw",
                            "score_scaled", "passed", "time_started_at", "time_ended_at", "total_time_seconds",
                            "created_at", "updated_at"}
    assert attempt["id"] == commit.data["attempt_id"]
    assert (attempt["enrollment_id"], attempt["activity_id"], attempt["user_id"], attempt["course_id"]) == (
        enrollment["id"], 1, enrollment["user_id"], enrollment["course_id"])
    assert attempt["status"] == "passed" and attempt["score_scaled"] == 0.75 and attempt["passed"] is True
    assert attempt["score_raw"] is None and attempt["time_ended_at"] is None
    assert attempt["total_time_seconds"] == 42 and attempt["time_started_at"].endswith("Z")


async def test_total_time_accumulates_over_the_commits_of_one_launch(service, ids, events):
    enrollment = await _enrolled(service, ids)
    attempt_id = next(ids)
    for sequence, delta in [(0, "0"), (1, "10"), (2, "20.5")]:
        await service.publish(service.runtime_committed(enrollment, 1, attempt_id=attempt_id, sequence=sequence,
                                                        status="incomplete", delta=delta))
    await events.wait_for("attempt.updated", count=3)
    _, body = await service.call("GET", f"{ATTEMPTS}?enrollment_id={enrollment['id']}", expect=200)
    assert [(a["id"], a["total_time_seconds"]) for a in body["data"]] == [(attempt_id, 30.5)]


async def test_an_older_commit_arriving_late_does_not_overwrite_the_status(service, ids, events):
    enrollment = await _enrolled(service, ids)
    attempt_id = next(ids)
    await service.publish(service.runtime_committed(enrollment, 1, attempt_id=attempt_id, sequence=2,
                                                    status="completed", delta="5"))
    await events.wait_for("attempt.updated")
    await service.publish(service.runtime_committed(enrollment, 1, attempt_id=attempt_id, sequence=1,
                                                    status="incomplete", delta="7"))
    updated = await events.wait_for("attempt.updated", count=2)
    assert [e.data["revision"] for e in updated] == [1, 2]
    _, body = await service.call("GET", f"{ATTEMPTS}/{attempt_id}", expect=200)
    assert body["data"]["status"] == "completed" and body["data"]["total_time_seconds"] == 12


async def test_attempt_updated_carries_the_attempt(service, ids, events):
    enrollment = await _enrolled(service, ids)
    commit = service.runtime_committed(enrollment, 2, status="failed", score_scaled="0.3", delta="3")
    await service.publish(commit)
    event = (await events.wait_for("attempt.updated"))[0]
    assert event.routing_key == "acme.attempt.updated" and event.subject == f"attempt/{commit.data['attempt_id']}"
    assert event.data["attempt_id"] == commit.data["attempt_id"] and event.data["status"] == "failed"
    assert event.data["score_scaled"] == 0.3 and event.data["total_time_seconds"] == 3
    assert event.requestid == commit.requestid


async def test_list_filters_by_enrollment_and_activity(service, ids, events):
    first = await _enrolled(service, ids)
    second = await _enrolled(service, ids)
    commits = [service.runtime_committed(first, 1), service.runtime_committed(first, 2),
               service.runtime_committed(second, 1)]
    await service.publish(*commits)
    await events.wait_for("attempt.updated", count=3)
    a1, a2, b1 = (c.data["attempt_id"] for c in commits)
    _, by_enrollment = await service.call("GET", f"{ATTEMPTS}?enrollment_id={first['id']}", expect=200)
    assert [a["id"] for a in by_enrollment["data"]] == [a2, a1]
    _, by_activity = await service.call("GET", f"{ATTEMPTS}?activity_id=1", expect=200)
    assert {a1, b1} <= {a["id"] for a in by_activity["data"]} and a2 not in {a["id"] for a in by_activity["data"]}
    _, both = await service.call("GET", f"{ATTEMPTS}?enrollment_id={first['id']}&activity_id=2", expect=200)
    assert [a["id"] for a in both["data"]] == [a2]


async def test_list_pages_by_id_descending(service, ids, events):
    enrollment = await _enrolled(service, ids)
    commits = [service.runtime_committed(enrollment, 1, status="incomplete") for _ in range(3)]
    await service.publish(*commits)
    await events.wait_for("attempt.updated", count=3)
    expected = sorted((c.data["attempt_id"] for c in commits), reverse=True)
    query = f"{ATTEMPTS}?enrollment_id={enrollment['id']}&limit=2"
    _, page1 = await service.call("GET", query, expect=200)
    _, page2 = await service.call("GET", f"{query}&cursor={page1['next_cursor']}", expect=200)
    assert [a["id"] for a in page1["data"] + page2["data"]] == expected and page2["next_cursor"] is None


async def test_unknown_or_other_tenant_attempt_is_attempt_not_found(service, ids, events):
    enrollment = await _enrolled(service, ids)
    commit = service.runtime_committed(enrollment, 1)
    await service.publish(commit)
    await events.wait_for("attempt.updated")
    _, body = await service.call("GET", f"{ATTEMPTS}/{commit.data['attempt_id']}", tenant_id=2, tenant="globex",
                                 expect=404)
    assert body["error"]["code"] == "attempt_not_found" and body["error"]["message"] == "Attempt not found."
    _, body = await service.call("GET", f"{ATTEMPTS}/123456789", expect=404)
    assert body["error"]["code"] == "attempt_not_found"


async def test_non_integer_attempt_filters_are_invalid_argument(service):
    for query in ("enrollment_id=x", "activity_id=-1", "limit=0", "limit=101"):
        _, body = await service.call("GET", f"{ATTEMPTS}?{query}", expect=400)
        assert body["error"]["code"] == "invalid_argument", query
