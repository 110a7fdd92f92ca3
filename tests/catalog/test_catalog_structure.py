"""Modules, lessons and activities: admin writes, positions, reorder, cascade, the draft-only rule, reads."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def titles(catalog, path: str) -> list[str]:
    return [n["title"] for n in (await catalog.public("GET", path)).data]


async def test_children_are_appended_in_order_with_1_based_positions(catalog):
    course = await catalog.create_course()
    for title in ("A", "B", "C"):
        await catalog.add_module(course["id"], title)
    modules = (await catalog.public("GET", f"/courses/{course['id']}/modules")).data
    assert [(m["title"], m["position"]) for m in modules] == [("A", 1), ("B", 2), ("C", 3)]
    assert all(set(m) == {"id", "course_id", "title", "position"} for m in modules)


async def test_a_child_created_at_a_position_moves_later_siblings_down(catalog):
    course = await catalog.create_course()
    for title in ("A", "B"):
        await catalog.add_module(course["id"], title)
    await catalog.add_module(course["id"], "first", position=1)
    await catalog.add_module(course["id"], "far", position=99)
    modules = (await catalog.public("GET", f"/courses/{course['id']}/modules")).data
    assert [(m["title"], m["position"]) for m in modules] == [("first", 1), ("A", 2), ("B", 3), ("far", 4)]


async def test_moving_a_child_shifts_the_siblings_between(catalog):
    course = await catalog.create_course()
    module = await catalog.add_module(course["id"])
    lessons = [await catalog.add_lesson(module["id"], t) for t in ("A", "B", "C", "D")]
    await catalog.admin("POST", f"/lessons/{lessons[0]['id']}", {"position": 3})
    assert await titles(catalog, f"/modules/{module['id']}/lessons") == ["B", "C", "A", "D"]
    await catalog.admin("POST", f"/lessons/{lessons[3]['id']}", {"position": 1})
    assert await titles(catalog, f"/modules/{module['id']}/lessons") == ["D", "B", "C", "A"]
    positions = [n["position"] for n in (await catalog.public("GET", f"/modules/{module['id']}/lessons")).data]
    assert positions == [1, 2, 3, 4]


async def test_reorder_sets_the_order_of_all_children(catalog):
    course = await catalog.create_course()
    module = await catalog.add_module(course["id"])
    lesson = await catalog.add_lesson(module["id"])
    acts = [await catalog.add_activity(lesson["id"], t) for t in ("A", "B", "C")]
    resp = await catalog.admin("POST", f"/lessons/{lesson['id']}/activities/reorder",
                               {"ids": [acts[2]["id"], acts[0]["id"], acts[1]["id"]]})
    assert [(a["title"], a["position"]) for a in resp.data] == [("C", 1), ("A", 2), ("B", 3)]
    assert await titles(catalog, f"/lessons/{lesson['id']}/activities") == ["C", "A", "B"]


@pytest.mark.parametrize("shape", ["missing", "duplicate", "foreign"])
async def test_reorder_must_list_every_child_exactly_once(catalog, shape):
    course = await catalog.create_course()
    mods = [await catalog.add_module(course["id"], t) for t in ("A", "B")]
    other = await catalog.add_module((await catalog.create_course("other"))["id"])
    ids = {"missing": [mods[0]["id"]], "duplicate": [mods[0]["id"], mods[0]["id"], mods[1]["id"]],
           "foreign": [mods[0]["id"], mods[1]["id"], other["id"]]}[shape]
    resp = await catalog.admin("POST", f"/courses/{course['id']}/modules/reorder", {"ids": ids})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert await titles(catalog, f"/courses/{course['id']}/modules") == ["A", "B"]


async def test_deleting_a_child_closes_the_gap(catalog):
    course = await catalog.create_course()
    mods = [await catalog.add_module(course["id"], t) for t in ("A", "B", "C")]
    resp = await catalog.admin("DELETE", f"/modules/{mods[1]['id']}")
    assert resp.data["id"] == mods[1]["id"] and resp.data["deleted"] is True
    modules = (await catalog.public("GET", f"/courses/{course['id']}/modules")).data
    assert [(m["title"], m["position"]) for m in modules] == [("A", 1), ("C", 2)]


async def test_deleting_a_module_deletes_its_lessons_and_activities(catalog):
    course = await catalog.create_course()
    module = await catalog.add_module(course["id"])
    lesson = await catalog.add_lesson(module["id"])
    activity = await catalog.add_activity(lesson["id"])
    await catalog.admin("DELETE", f"/modules/{module['id']}")
    assert (await catalog.admin("GET", f"/lessons/{lesson['id']}")).error["code"] == "lesson_not_found"
    assert (await catalog.admin("GET", f"/activities/{activity['id']}")).error["code"] == "activity_not_found"
    assert (await catalog.admin("GET", f"/courses/{course['id']}")).data["modules"] == []


async def test_update_renames_a_node(catalog):
    course = await catalog.create_course()
    module = await catalog.add_module(course["id"], "Old")
    renamed = (await catalog.admin("POST", f"/modules/{module['id']}", {"title": "New"})).data
    assert renamed == {**module, "title": "New"}


async def test_admin_course_view_has_the_full_tree_in_position_order(catalog):
    course = await catalog.create_course()
    m2 = await catalog.add_module(course["id"], "M2")
    m1 = await catalog.add_module(course["id"], "M1", position=1)
    lesson = await catalog.add_lesson(m1["id"], "L1")
    await catalog.add_activity(lesson["id"], "A2")
    await catalog.add_activity(lesson["id"], "A1", position=1)
    tree = (await catalog.admin("GET", f"/courses/{course['id']}")).data
    assert [m["title"] for m in tree["modules"]] == ["M1", "M2"]
    assert tree["modules"][1] == {**m2, "position": 2, "lessons": []}
    assert [a["title"] for a in tree["modules"][0]["lessons"][0]["activities"]] == ["A1", "A2"]


async def test_nested_lists_page_by_position(catalog):
    course = await catalog.create_course()
    for n in range(5):
        await catalog.add_module(course["id"], f"M{n}")
    first = await catalog.public("GET", f"/courses/{course['id']}/modules?limit=2")
    second = await catalog.public("GET", f"/courses/{course['id']}/modules?limit=2&cursor={first.body['next_cursor']}")
    third = await catalog.public("GET", f"/courses/{course['id']}/modules?limit=2&cursor={second.body['next_cursor']}")
    assert [m["title"] for page in (first, second, third) for m in page.data] == [f"M{n}" for n in range(5)]
    assert third.body["next_cursor"] is None


# --- activities ---------------------------------------------------------------------------------------------


async def test_activity_carries_every_contract_field(catalog):
    course = await catalog.create_course()
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    activity = await catalog.add_activity(lesson["id"], "Quiz", kind="assessment", required=False,
                                          passing_score_scaled=0.8)
    assert activity == {"id": activity["id"], "lesson_id": lesson["id"], "title": "Quiz", "position": 1,
                        "kind": "assessment", "required": False, "scorm_package_id": None,
                        "sco_identifier": None, "passing_score_scaled": 0.8,
                        "complete_on_launch": None}


async def test_activities_are_required_by_default(catalog):
    course = await catalog.create_course()
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    assert (await catalog.add_activity(lesson["id"]))["required"] is True


async def test_a_scorm_activity_needs_a_package_and_its_sco_is_optional(catalog):
    course = await catalog.create_course()
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    resp = await catalog.admin("POST", f"/lessons/{lesson['id']}/activities",
                               {"title": "S", "kind": "scorm", "sco_identifier": "sco-1"})
    assert (resp.status, resp.error["code"]) == (400, "missing_field")
    assert "scorm_package_id" in resp.error["message"]
    # issue 20: no sco_identifier launches the package's first SCO, as the docs say (was 400 missing_field)
    resp = await catalog.admin("POST", f"/lessons/{lesson['id']}/activities",
                               {"title": "S", "kind": "scorm", "scorm_package_id": 3})
    assert resp.status == 201, resp.error
    assert resp.data["sco_identifier"] is None


async def test_only_scorm_activities_name_a_package(catalog):
    course = await catalog.create_course()
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    resp = await catalog.admin("POST", f"/lessons/{lesson['id']}/activities",
                               {"title": "V", "kind": "video", "scorm_package_id": 3})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "scorm_package_id" in resp.error["message"]


async def test_turning_a_scorm_activity_into_a_video_drops_its_package(catalog):
    course = await catalog.create_course()
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    scorm = await catalog.add_activity(lesson["id"], kind="scorm", scorm_package_id=3, sco_identifier="s1")
    video = (await catalog.admin("POST", f"/activities/{scorm['id']}", {"kind": "video"})).data
    assert (video["kind"], video["scorm_package_id"], video["sco_identifier"]) == ("video", None, None)


async def test_complete_on_launch_is_a_scorm_activitys_option(catalog):
    course = await catalog.create_course()
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    scorm = await catalog.add_activity(lesson["id"], kind="scorm", scorm_package_id=3, sco_identifier="handout")
    assert scorm["complete_on_launch"] is None  # the default: an untracked item completes on launch
    changed = (await catalog.admin("POST", f"/activities/{scorm['id']}", {"complete_on_launch": False})).data
    assert changed["complete_on_launch"] is False
    resp = await catalog.admin("POST", f"/activities/{scorm['id']}", {"complete_on_launch": "no"})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    resp = await catalog.admin("POST", f"/lessons/{lesson['id']}/activities",
                               {"title": "V", "kind": "video", "complete_on_launch": True})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "complete_on_launch" in resp.error["message"]
    video = (await catalog.admin("POST", f"/activities/{scorm['id']}", {"kind": "video"})).data
    assert (video["kind"], video["complete_on_launch"]) == ("video", None)


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"kind": "video"}, "missing_field", "title"),
    ({"title": "T"}, "missing_field", "kind"),
    ({"title": "T", "kind": "podcast"}, "invalid_argument", "kind"),
    ({"title": "T", "kind": "video", "required": "yes"}, "invalid_argument", "required"),
    ({"title": "T", "kind": "video", "position": 0}, "invalid_argument", "position"),
    ({"title": "T", "kind": "video", "passing_score_scaled": 1.5}, "invalid_argument", "passing_score_scaled"),
    ({"title": "T", "kind": "video", "passing_score_scaled": -0.1}, "invalid_argument", "passing_score_scaled"),
    ({"title": "T", "kind": "video", "lesson_id": 9}, "invalid_argument", "lesson_id"),
])
async def test_bad_activity_bodies(catalog, body, code, field):
    course = await catalog.create_course()
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    resp = await catalog.admin("POST", f"/lessons/{lesson['id']}/activities", body)
    assert (resp.status, resp.error["code"]) == (400, code)
    assert field in resp.error["message"]


@pytest.mark.parametrize(("body", "code"), [({}, "missing_field"), ({"title": " "}, "missing_field"),
                                            ({"title": "T", "position": -1}, "invalid_argument"),
                                            ({"title": "T", "course_id": 1}, "invalid_argument")])
async def test_bad_module_bodies(catalog, body, code):
    course = await catalog.create_course()
    resp = await catalog.admin("POST", f"/courses/{course['id']}/modules", body)
    assert (resp.status, resp.error["code"]) == (400, code)


# --- the edit-after-publish rule (docs/decisions/0004-catalog-edit-after-publish.md) ------------------------


async def published_course(catalog) -> dict:
    course = await catalog.publishable_course()
    await catalog.transition(course["id"], "publish")
    return (await catalog.admin("GET", f"/courses/{course['id']}")).data


STRUCTURE_WRITES = [
    ("POST", "/courses/{course}/modules", {"title": "New"}),
    ("POST", "/courses/{course}/modules/reorder", {"ids": ["{module}"]}),
    ("POST", "/modules/{module}", {"title": "Renamed"}),
    ("DELETE", "/modules/{module}", None),
    ("POST", "/modules/{module}/lessons", {"title": "New"}),
    ("POST", "/lessons/{lesson}", {"title": "Renamed"}),
    ("DELETE", "/lessons/{lesson}", None),
    ("POST", "/lessons/{lesson}/activities", {"title": "New", "kind": "link"}),
    ("POST", "/activities/{activity}", {"required": False}),
    ("DELETE", "/activities/{activity}", None),
]


def _ids(tree: dict) -> dict[str, int]:
    module = tree["modules"][0]
    lesson = module["lessons"][0]
    return {"course": tree["id"], "module": module["id"], "lesson": lesson["id"],
            "activity": lesson["activities"][0]["id"]}


def _fill(body, ids):
    if body is None:
        return None
    return {k: ([ids["module"]] if v == ["{module}"] else v) for k, v in body.items()}


@pytest.mark.parametrize(("method", "path", "body"), STRUCTURE_WRITES)
async def test_structure_of_a_published_course_cannot_change(catalog, method, path, body):
    tree = await published_course(catalog)
    ids = _ids(tree)
    resp = await catalog.admin(method, path.format(**ids), _fill(body, ids))
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "unpublish" in resp.error["message"].lower()
    assert (await catalog.admin("GET", f"/courses/{tree['id']}")).data == tree


async def test_structure_of_an_archived_course_cannot_change(catalog):
    tree = await published_course(catalog)
    await catalog.transition(tree["id"], "archive")
    resp = await catalog.admin("POST", f"/courses/{tree['id']}/modules", {"title": "Late"})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "archived" in resp.error["message"]


async def test_unpublish_edit_republish_changes_the_tree(catalog):
    tree = await published_course(catalog)
    await catalog.transition(tree["id"], "unpublish")
    await catalog.admin("POST", f"/modules/{_ids(tree)['module']}", {"title": "Revised"})
    republished = (await catalog.transition(tree["id"], "publish")).data
    assert republished["version"]["number"] == 2
    assert await titles(catalog, f"/courses/{tree['id']}/modules") == ["Revised"]


# --- admin scope --------------------------------------------------------------------------------------------


async def test_admin_paths_need_the_admin_scope(catalog):
    course = await catalog.create_course()
    resp = await catalog.call("POST", f"/admin/v1/courses/{course['id']}/modules", {"title": "M"},
                              scopes="learn:read learn:write")
    assert (resp.status, resp.error["code"]) == (403, "insufficient_scope")
    assert "admin" in resp.error["message"]


async def test_the_public_api_has_no_structure_writes(catalog):
    course = await catalog.create_course()
    resp = await catalog.public("POST", f"/courses/{course['id']}/modules", {"title": "M"})
    assert resp.status == 405
