"""Concurrent writes: the slug rule and sibling positions hold when requests race."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_racing_creates_with_one_slug_make_one_course_and_clean_rejections(catalog):
    responses = await asyncio.gather(*(catalog.public("POST", "/courses", {"slug": "race", "title": f"T{n}"})
                                       for n in range(8)))
    assert sorted(r.status for r in responses) == [201] + [400] * 7
    assert {r.error["code"] for r in responses if r.status == 400} == {"invalid_argument"}
    assert len((await catalog.public("GET", "/courses")).data) == 1


async def test_racing_module_inserts_keep_positions_contiguous(catalog):
    course = await catalog.create_course()
    await asyncio.gather(*(catalog.add_module(course["id"], f"M{n}", position=1) for n in range(10)))
    modules = (await catalog.public("GET", f"/courses/{course['id']}/modules")).data
    assert [m["position"] for m in modules] == list(range(1, 11))
    assert len({m["title"] for m in modules}) == 10
