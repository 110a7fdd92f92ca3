"""The course lifecycle: every action from every state, what publishing needs, and versions."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALLOWED = {
    ("draft", "publish"): "published",
    ("published", "unpublish"): "draft",
    ("draft", "archive"): "archived",
    ("published", "archive"): "archived",
}
TABLE = [(state, action) for state in ("draft", "published", "archived")
         for action in ("publish", "unpublish", "archive")]


async def course_in(catalog, state: str) -> dict:
    course = await catalog.publishable_course()
    if state in ("published", "archived"):
        assert (await catalog.transition(course["id"], "publish")).status == 200
    if state == "archived":
        assert (await catalog.transition(course["id"], "archive")).status == 200
    return course


@pytest.mark.parametrize(("state", "action"), TABLE)
async def test_transition_table(catalog, state, action):
    course = await course_in(catalog, state)
    resp = await catalog.transition(course["id"], action)
    after = (await catalog.public("GET", f"/courses/{course['id']}")).data
    if (state, action) in ALLOWED:
        assert resp.status == 200, resp.body
        assert resp.data["status"] == after["status"] == ALLOWED[(state, action)]
    else:
        assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
        assert action in resp.error["message"] and state in resp.error["message"]
        assert after["status"] == state


async def test_publishing_needs_at_least_one_activity(catalog):
    course = await catalog.create_course("empty")
    module = await catalog.add_module(course["id"])
    await catalog.add_lesson(module["id"])
    resp = await catalog.transition(course["id"], "publish")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "at least one activity" in resp.error["message"]


async def test_all_required_needs_a_required_activity(catalog):
    course = await catalog.create_course("optional-only", completion_rule="all_required")
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    await catalog.add_activity(lesson["id"], required=False)
    resp = await catalog.transition(course["id"], "publish")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "required" in resp.error["message"]


async def test_any_activity_rule_publishes_with_optional_activities_only(catalog):
    course = await catalog.create_course("optional-ok", completion_rule="any_activity")
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    await catalog.add_activity(lesson["id"], required=False)
    assert (await catalog.transition(course["id"], "publish")).status == 200


async def test_publish_sets_the_version_published(catalog):
    course = await catalog.publishable_course()
    published = (await catalog.transition(course["id"], "publish")).data
    assert published["version"]["number"] == 1
    assert published["version"]["status"] == "published"
    assert published["version"]["published_at"] is not None


async def test_unpublish_opens_the_next_draft_version(catalog):
    course = await catalog.publishable_course()
    await catalog.transition(course["id"], "publish")
    draft = (await catalog.transition(course["id"], "unpublish")).data
    assert draft["status"] == "draft"
    assert draft["version"] == {"number": 2, "status": "draft", "published_at": None}


async def test_republishing_bumps_the_version_number(catalog):
    course = await catalog.publishable_course()
    first = (await catalog.transition(course["id"], "publish")).data
    await catalog.transition(course["id"], "unpublish")
    second = (await catalog.transition(course["id"], "publish")).data
    assert (first["version"]["number"], second["version"]["number"]) == (1, 2)
    assert second["version"]["published_at"] > first["version"]["published_at"]


async def test_archiving_a_published_course_keeps_its_published_version(catalog):
    course = await catalog.publishable_course()
    published = (await catalog.transition(course["id"], "publish")).data
    archived = (await catalog.transition(course["id"], "archive")).data
    assert archived["status"] == "archived"
    assert archived["version"] == published["version"]


async def test_lifecycle_actions_take_no_fields(catalog):
    course = await catalog.publishable_course()
    resp = await catalog.public("POST", f"/courses/{course['id']}/publish", {"status": "published"})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert (await catalog.public("POST", f"/courses/{course['id']}/publish", {})).status == 200
