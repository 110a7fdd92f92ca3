"""Another tenant sees nothing: every id of one tenant answers like a missing id in another."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.catalog.conftest import CatalogApi, new_tenant

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def owned(catalog: CatalogApi) -> dict[str, int]:
    """A course of the test's tenant with one of each node."""
    course = await catalog.create_course("private")
    module = await catalog.add_module(course["id"])
    lesson = await catalog.add_lesson(module["id"])
    activity = await catalog.add_activity(lesson["id"])
    return {"course": course["id"], "module": module["id"], "lesson": lesson["id"], "activity": activity["id"]}


async def test_another_tenant_lists_no_courses(catalog, owned):
    resp = await catalog.public("GET", "/courses", tenant=new_tenant("other"))
    assert (resp.data, resp.body["next_cursor"]) == ([], None)


async def test_another_tenants_course_answers_exactly_like_a_missing_one(catalog, owned):
    intruder = new_tenant("other")
    foreign = await catalog.public("GET", f"/courses/{owned['course']}", tenant=intruder)
    missing = await catalog.public("GET", "/courses/987654321", tenant=intruder)
    assert (foreign.status, foreign.error["code"], foreign.error["message"]) == (
        missing.status, missing.error["code"], missing.error["message"]) == (404, "course_not_found",
                                                                            "Course not found.")


PUBLIC_PROBES = [
    ("GET", "/courses/{course}", None, "course_not_found"),
    ("POST", "/courses/{course}", {"title": "Mine now"}, "course_not_found"),
    ("POST", "/courses/{course}/publish", None, "course_not_found"),
    ("POST", "/courses/{course}/unpublish", None, "course_not_found"),
    ("POST", "/courses/{course}/archive", None, "course_not_found"),
    ("GET", "/courses/{course}/modules", None, "course_not_found"),
    ("GET", "/modules/{module}/lessons", None, "module_not_found"),
    ("GET", "/lessons/{lesson}/activities", None, "lesson_not_found"),
]


@pytest.mark.parametrize(("method", "path", "body", "code"), PUBLIC_PROBES)
async def test_public_paths_hide_another_tenants_ids(catalog, owned, method, path, body, code):
    resp = await catalog.public(method, path.format(**owned), body, tenant=new_tenant("other"))
    assert (resp.status, resp.error["code"]) == (404, code)


ADMIN_PROBES = [
    ("GET", "/courses/{course}", None, "course_not_found"),
    ("POST", "/courses/{course}/modules", {"title": "Sneaky"}, "course_not_found"),
    ("POST", "/courses/{course}/modules/reorder", {"ids": []}, "course_not_found"),
    ("GET", "/modules/{module}", None, "module_not_found"),
    ("POST", "/modules/{module}", {"title": "Sneaky"}, "module_not_found"),
    ("DELETE", "/modules/{module}", None, "module_not_found"),
    ("POST", "/modules/{module}/lessons", {"title": "Sneaky"}, "module_not_found"),
    ("POST", "/lessons/{lesson}", {"title": "Sneaky"}, "lesson_not_found"),
    ("DELETE", "/lessons/{lesson}", None, "lesson_not_found"),
    ("POST", "/lessons/{lesson}/activities", {"title": "Sneaky", "kind": "link"}, "lesson_not_found"),
    ("POST", "/activities/{activity}", {"title": "Sneaky"}, "activity_not_found"),
    ("DELETE", "/activities/{activity}", None, "activity_not_found"),
]


@pytest.mark.parametrize(("method", "path", "body", "code"), ADMIN_PROBES)
async def test_admin_paths_hide_another_tenants_ids(catalog, owned, method, path, body, code):
    resp = await catalog.admin(method, path.format(**owned), body, tenant=new_tenant("other"))
    assert (resp.status, resp.error["code"]) == (404, code)


async def test_nothing_changed_after_the_other_tenants_attempts(catalog, owned):
    intruder = new_tenant("other")
    for method, path, body, _ in ADMIN_PROBES:
        await catalog.admin(method, path.format(**owned), body, tenant=intruder)
    for method, path, body, _ in PUBLIC_PROBES:
        await catalog.public(method, path.format(**owned), body, tenant=intruder)
    tree = (await catalog.admin("GET", f"/courses/{owned['course']}")).data
    assert tree["title"] == "Course private" and tree["status"] == "draft"
    assert [m["title"] for m in tree["modules"]] == ["Module"]
    assert [a["title"] for a in tree["modules"][0]["lessons"][0]["activities"]] == ["Activity"]
