"""From ``runtime.committed`` to ``enrollment.completed`` on the real broker: attempts, completion once, and
republished courses."""

from __future__ import annotations

import asyncio

from tests.enrollment.conftest import activity
from tests.support.infra import wait_until


async def _settle(events, seconds: float = 1.0) -> None:
    """Give duplicates time to be (not) processed before counting effects."""
    await asyncio.sleep(seconds)


async def test_runtime_commits_complete_the_enrollment_with_everything_a_certificate_needs(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1), activity(2), activity(3, required=False)],
                                        title="Intro to Mobieus", template_id=7)
    # A newer revision, applied before the enrollment: published before the helper's revision-1 user (as it was),
    # either could win, since consumers apply a queue's messages in concurrent batches.
    await service.publish(service.user_upserted(user, name="Ada Lovelace", email="ada@example.com", revision=2))
    await service.until_user(user, revision=2)
    enrollment = await service.enroll(user, course)
    await service.publish(service.runtime_committed(enrollment, 1, status="passed", score_scaled="0.9"))
    await events.wait_for("attempt.updated")
    assert (await service.enrollment(enrollment["id"]))["progress"] == {"required_total": 2, "required_done": 1}
    await service.publish(service.runtime_committed(enrollment, 2, status="completed"))

    completed = (await events.wait_for("enrollment.completed"))[0]
    data = completed.data
    assert completed.routing_key == "acme.enrollment.completed"
    assert data["enrollment_id"] == enrollment["id"] and data["status"] == "completed"
    assert data["user"] == {"id": user, "name": "Ada Lovelace", "email": "ada@example.com"}
    assert data["course"] == {"id": course, "title": "Intro to Mobieus", "version": 1,
                              "credit": {"hours": 2.5, "kind": "CEU", "expires_after_months": None},
                              "certificate_template_id": 7}
    assert data["progress"] == {"required_total": 2, "required_done": 2}
    assert data["completed_at"] is not None and data["tenant_name"] == "Acme"
    seen = await service.enrollment(enrollment["id"])
    assert seen["status"] == "completed" and seen["completed_at"] is not None
    assert seen["progress"] == {"required_total": 2, "required_done": 2}


async def test_an_incomplete_commit_does_not_complete(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    await service.publish(service.runtime_committed(enrollment, 1, status="incomplete"))
    await events.wait_for("attempt.updated")
    await _settle(events, 0.3)
    assert (await service.enrollment(enrollment["id"]))["status"] == "active"
    assert events.of_type("enrollment.completed") == []


async def test_the_same_runtime_commit_delivered_twice_completes_once(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    commit = service.runtime_committed(enrollment, 1, status="completed", delta="30")
    await service.publish(commit)
    await events.wait_for("enrollment.completed")
    await service.publish(commit)
    await _settle(events)
    assert len(events.of_type("enrollment.completed")) == 1
    assert len(events.of_type("attempt.updated")) == 1
    _, attempts = await service.call("GET", f"/api/v1/learn/attempts?enrollment_id={enrollment['id']}", expect=200)
    assert [a["total_time_seconds"] for a in attempts["data"]] == [30]


async def test_fifty_concurrent_duplicates_give_one_completion_and_one_event(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    commit = service.runtime_committed(enrollment, 1, status="passed")
    await service.publish(*[commit] * 50)
    await events.wait_for("enrollment.completed")
    await _settle(events, 1.5)
    assert len(events.of_type("enrollment.completed")) == 1
    assert len(events.of_type("attempt.updated")) == 1


async def test_the_same_commit_under_new_event_ids_is_applied_once(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    commit = service.runtime_committed(enrollment, 1, status="passed", delta="12.5")
    copies = [service.event("runtime.committed", commit.data, service="scorm") for _ in range(20)]
    await service.publish(*copies)
    await events.wait_for("enrollment.completed")
    await _settle(events)
    assert len(events.of_type("enrollment.completed")) == 1
    _, body = await service.call("GET", f"/api/v1/learn/attempts/{commit.data['attempt_id']}", expect=200)
    assert body["data"]["total_time_seconds"] == 12.5


async def test_commits_of_two_activities_at_once_still_complete(service, ids, events):
    # Each commit must see the other: locking the enrollment first serialises them.
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1), activity(2)])
    enrollment = await service.enroll(user, course)
    await service.publish(service.runtime_committed(enrollment, 1), service.runtime_committed(enrollment, 2))
    await events.wait_for("enrollment.completed")
    assert (await service.enrollment(enrollment["id"]))["status"] == "completed"


async def test_commits_after_completion_update_the_attempt_but_complete_nothing_again(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    await service.publish(service.runtime_committed(enrollment, 1, status="completed"))
    first = (await events.wait_for("enrollment.completed"))[0]
    await service.publish(service.runtime_committed(enrollment, 1, status="passed"))
    await events.wait_for("attempt.updated", count=2)
    await _settle(events, 0.3)
    assert len(events.of_type("enrollment.completed")) == 1
    assert (await service.enrollment(enrollment["id"]))["completed_at"] == first.data["completed_at"]


async def test_a_cancelled_enrollment_does_not_complete(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    await service.call("POST", f"/api/v1/learn/enrollments/{enrollment['id']}/cancel", expect=200)
    await service.publish(service.runtime_committed(enrollment, 1, status="passed"))
    await events.wait_for("attempt.updated")
    await _settle(events, 0.3)
    assert (await service.enrollment(enrollment["id"]))["status"] == "cancelled"
    assert events.of_type("enrollment.completed") == []


async def test_cancelling_a_completed_enrollment_is_invalid_argument(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    await service.publish(service.runtime_committed(enrollment, 1, status="passed"))
    await service.until_status(enrollment["id"], "completed")
    _, body = await service.call("POST", f"/api/v1/learn/enrollments/{enrollment['id']}/cancel", expect=400)
    assert body["error"]["code"] == "invalid_argument" and "completed" in body["error"]["message"]


async def test_enrolling_in_a_completed_course_returns_the_completed_enrollment(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    enrollment = await service.enroll(user, course)
    await service.publish(service.runtime_committed(enrollment, 1, status="passed"))
    completed = await service.until_status(enrollment["id"], "completed")
    status, body = await service.call("POST", "/api/v1/learn/enrollments", json={"user_id": user, "course_id": course})
    assert status == 200 and body["data"] == completed


async def test_a_commit_for_an_unknown_enrollment_is_dead_lettered(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    ghost = service.runtime_committed({"id": 987_654_321, "user_id": user, "course_id": course}, 1)
    await service.publish(ghost)
    dead = await wait_until(lambda: service.dead_letters("runtime"), message="the commit in the DLQ")
    assert [d["id"] for d in dead] == [ghost.id]
    _, body = await service.call("GET", "/api/v1/learn/attempts?enrollment_id=987654321", expect=200)
    assert body["data"] == []


# --- republishing while learners are enrolled ---------------------------------------------------------------


async def test_learners_stay_on_the_version_they_enrolled_in_when_the_course_is_republished(service, ids, events):
    course, early, late = next(ids), next(ids), next(ids)
    # v1: activities 1 and 2 required. v2 drops 2 and requires a new activity 3.
    await service.given_course_and_user(course, early, [activity(1), activity(2)], title="Course v1")
    first = await service.enroll(early, course)
    await service.publish(service.course_published(course, [activity(1), activity(3)], version=2,
                                                   title="Course v2", template_id=8),
                          service.user_upserted(late))
    await service.until_course(course, version=2)
    await service.until_user(late)
    second = await service.enroll(late, course)
    assert (first["course_version"], second["course_version"]) == (1, 2)

    # Activity 3 does not exist in v1: completing 1 and 3 does not complete the early learner.
    await service.publish(service.runtime_committed(first, 1), service.runtime_committed(first, 3))
    await events.wait_for("attempt.updated", count=2)
    await _settle(events, 0.3)
    assert (await service.enrollment(first["id"]))["status"] == "active"
    # ... completing v1's activity 2 does.
    await service.publish(service.runtime_committed(first, 2))
    done_v1 = (await events.wait_for("enrollment.completed"))[0]
    assert done_v1.data["course"]["version"] == 1 and done_v1.data["course"]["title"] == "Course v1"
    assert done_v1.data["course"]["certificate_template_id"] == 7

    # The late learner follows v2: activities 1 and 3.
    await service.publish(service.runtime_committed(second, 1), service.runtime_committed(second, 3))
    completions = await events.wait_for("enrollment.completed", count=2)
    done_v2 = next(e for e in completions if e.data["enrollment_id"] == second["id"])
    assert done_v2.data["course"]["version"] == 2 and done_v2.data["course"]["title"] == "Course v2"
    assert done_v2.data["course"]["certificate_template_id"] == 8


async def test_an_already_enrolled_learner_is_not_moved_to_a_new_version_by_enrolling_again(service, ids):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1)])
    first = await service.enroll(user, course)
    await service.publish(service.course_published(course, [activity(2)], version=2))
    await service.until_course(course, version=2)
    again = await service.enroll(user, course)
    assert again["id"] == first["id"] and again["course_version"] == 1


# --- progress follows the attempts (the rule is evaluated only when a commit may move it) ----------------------


async def test_the_latest_commit_of_an_attempt_decides_whether_it_counts(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1), activity(2)])
    enrollment = await service.enroll(user, course)
    attempt_id = next(ids)
    for sequence, status, done in [(1, "completed", 1), (2, "incomplete", 0), (3, "incomplete", 0), (4, "passed", 1)]:
        await service.publish(service.runtime_committed(enrollment, 1, attempt_id=attempt_id, sequence=sequence,
                                                        status=status))
        await events.wait_for("attempt.updated", count=sequence)
        assert (await service.enrollment(enrollment["id"]))["progress"] == {"required_total": 2,
                                                                            "required_done": done}, sequence


async def test_a_passing_score_counts_from_the_best_commit_of_an_attempt(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [activity(1, passing="0.8"), activity(2)])
    enrollment = await service.enroll(user, course)
    attempt_id = next(ids)
    # completed below the passing score; then the score is reached by an incomplete commit; then completed again
    for sequence, status, score, done in [(1, "completed", "0.5", 0), (2, "incomplete", "0.9", 0),
                                          (3, "completed", None, 1), (4, "completed", "0.6", 1)]:
        await service.publish(service.runtime_committed(enrollment, 1, attempt_id=attempt_id, sequence=sequence,
                                                        status=status, score_scaled=score))
        await events.wait_for("attempt.updated", count=sequence)
        assert (await service.enrollment(enrollment["id"]))["progress"]["required_done"] == done, sequence
    await service.publish(service.runtime_committed(enrollment, 2, status="completed"))
    await events.wait_for("enrollment.completed")


async def test_a_version_without_activities_completes_on_its_first_commit(service, ids, events):
    course, user = next(ids), next(ids)
    await service.given_course_and_user(course, user, [])
    enrollment = await service.enroll(user, course)
    assert enrollment["progress"] == {"required_total": 0, "required_done": 0}
    await service.publish(service.runtime_committed(enrollment, 1, status="incomplete"))
    completed = (await events.wait_for("enrollment.completed"))[0]
    assert completed.data["enrollment_id"] == enrollment["id"]
