"""The catalog enforces a per-course key's limit from the gateway's X-Learn-Course-Ids header, in its queries
(ADR 0019): called directly, with the headers the gateway would forward."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from shared.http import H_COURSE_IDS
from tests.catalog.conftest import CatalogApi

pytestmark = pytest.mark.asyncio(loop_scope="module")

MISSING = 987_654_321


@pytest_asyncio.fixture(loop_scope="module")
async def two(catalog: CatalogApi) -> dict[str, dict[str, int]]:
    """Two courses of the test's tenant, each with a module, a lesson and an activity."""
    out = {}
    for name in ("x", "y"):
        course = await catalog.create_course(f"course-{name}")
        module = await catalog.add_module(course["id"])
        lesson = await catalog.add_lesson(module["id"])
        activity = await catalog.add_activity(lesson["id"])
        out[name] = {"courses": course["id"], "modules": module["id"], "lessons": lesson["id"],
                     "activities": activity["id"]}
    return out


def only(course_ids: Any) -> dict[str, str]:
    return {H_COURSE_IDS: str(course_ids)}


async def test_lists_and_reads_see_only_the_keys_courses(catalog: CatalogApi, two: dict[str, dict[str, int]]) -> None:
    x, y = two["x"], two["y"]
    listed = await catalog.public("GET", "/courses", **only(x["courses"]))
    assert [c["id"] for c in listed.data] == [x["courses"]]
    both = await catalog.public("GET", "/courses", **only(f"{x['courses']} {y['courses']}"))
    assert {c["id"] for c in both.data} == {x["courses"], y["courses"]}
    for path in ("/courses/{courses}", "/courses/{courses}/modules", "/modules/{modules}/lessons",
                 "/lessons/{lessons}/activities"):
        assert (await catalog.public("GET", path.format(**x), **only(x["courses"]))).status == 200
        foreign = await catalog.public("GET", path.format(**y), **only(x["courses"]))
        missing = await catalog.public("GET", path.format(courses=MISSING, modules=MISSING, lessons=MISSING),
                                       **only(x["courses"]))
        assert foreign.status == missing.status == 404, path
        assert foreign.error["code"] == missing.error["code"] and foreign.error["message"] == missing.error["message"]


async def test_writes_on_another_course_change_nothing(catalog: CatalogApi, two: dict[str, dict[str, int]]) -> None:
    x, y = two["x"], two["y"]
    for method, path, body in (("POST", "/courses/{courses}", {"title": "Mine now"}),
                               ("POST", "/courses/{courses}/archive", None)):
        foreign = await catalog.public(method, path.format(**y), body, **only(x["courses"]))
        assert (foreign.status, foreign.error["code"]) == (404, "course_not_found")
    assert (await catalog.public("GET", f"/courses/{y['courses']}")).data["title"] != "Mine now"
    updated = await catalog.public("POST", f"/courses/{x['courses']}", {"subtitle": "ok"}, **only(x["courses"]))
    assert updated.data["subtitle"] == "ok"


async def test_a_limited_key_cannot_create_a_course(catalog: CatalogApi, two: dict[str, dict[str, int]]) -> None:
    before = (await catalog.public("GET", "/courses")).data
    refused = await catalog.public("POST", "/courses", {"slug": "sneaky", "title": "Sneaky"},
                                   **only(two["x"]["courses"]))
    assert (refused.status, refused.error["code"]) == (403, "course_limited_key")
    assert (await catalog.public("GET", "/courses")).data == before


@pytest.mark.parametrize("garbled", ["", "abc", "12,13", "-1", "0", "1 x"])
async def test_a_header_that_does_not_parse_limits_to_no_course(catalog: CatalogApi, two: dict[str, dict[str, int]],
                                                                garbled: str) -> None:
    assert (await catalog.public("GET", "/courses", **{H_COURSE_IDS: garbled})).data == []
    resp = await catalog.public("GET", f"/courses/{two['x']['courses']}", **{H_COURSE_IDS: garbled})
    assert resp.status == 404
