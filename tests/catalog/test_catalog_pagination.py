"""Keyset pagination of the course list over 250 courses."""

from __future__ import annotations

import asyncio
import base64

import pytest
import pytest_asyncio

from tests.catalog.conftest import CatalogApi, new_tenant

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOTAL = 250


@pytest.fixture(scope="module")
def seeded_tenant():
    return new_tenant("paged")


_seeded: dict[int, list[int]] = {}


async def seed(catalog: CatalogApi) -> list[int]:
    """250 courses in one tenant (created once per module); their ids newest first."""
    if catalog.tenant.id not in _seeded:
        ids: list[int] = []
        for start in range(0, TOTAL, 25):
            batch = await asyncio.gather(*(catalog.create_course(f"course-{n}")
                                           for n in range(start, start + 25)))
            ids += [c["id"] for c in batch]
        _seeded[catalog.tenant.id] = sorted(ids, reverse=True)
    return _seeded[catalog.tenant.id]


@pytest_asyncio.fixture(loop_scope="module")
async def paged(catalog, seeded_tenant) -> tuple[CatalogApi, list[int]]:
    catalog.tenant = seeded_tenant
    return catalog, await seed(catalog)


async def walk(catalog: CatalogApi, limit: int) -> tuple[list[int], list[int]]:
    """All ids in page order, and the page sizes."""
    seen: list[int] = []
    sizes: list[int] = []
    cursor = None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = await catalog.public("GET", "/courses" + query)
        seen += [c["id"] for c in page.data]
        sizes.append(len(page.data))
        cursor = page.body["next_cursor"]
        if cursor is None:
            return seen, sizes
        assert len(sizes) <= TOTAL, "pagination does not terminate"


@pytest.mark.parametrize("limit", [1, 50, 100])
async def test_every_course_is_visited_exactly_once_in_id_descending_order(paged, limit):
    catalog, ids = paged
    seen, sizes = await walk(catalog, limit)
    assert seen == ids
    assert all(size == limit for size in sizes[:-1])


async def test_the_default_page_is_50(paged):
    catalog, ids = paged
    page = await catalog.public("GET", "/courses")
    assert [c["id"] for c in page.data] == ids[:50]


@pytest.mark.parametrize("limit", [50, 100])
async def test_next_cursor_is_null_on_the_last_page(paged, limit):
    catalog, _ = paged
    _, sizes = await walk(catalog, limit)
    # the walk stops at the first null cursor: the pages are full, and no empty page trails the last one
    assert sizes == [limit] * (TOTAL // limit) + ([TOTAL % limit] if TOTAL % limit else [])


async def test_a_page_ending_exactly_at_the_last_course_has_a_null_cursor(paged):
    catalog, ids = paged
    page = await catalog.public("GET", "/courses?limit=100")
    cursor = page.body["next_cursor"]
    second = await catalog.public("GET", f"/courses?limit=100&cursor={cursor}")
    third = await catalog.public("GET", f"/courses?limit=50&cursor={second.body['next_cursor']}")
    assert [c["id"] for c in third.data] == ids[200:]
    assert third.body["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
async def test_limit_out_of_range_is_invalid_argument(paged, limit):
    catalog, _ = paged
    resp = await catalog.public("GET", f"/courses?limit={limit}")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "limit" in resp.error["message"]


async def test_a_tampered_cursor_is_invalid_argument(paged):
    catalog, _ = paged
    cursor = (await catalog.public("GET", "/courses?limit=10")).body["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    body, mac = raw.split(b".", 1)
    forged = base64.urlsafe_b64encode(str(int(body) + 5).encode() + b"." + mac).decode().rstrip("=")
    for bad in (forged, cursor[:-2], "garbage", cursor + "x"):
        resp = await catalog.public("GET", f"/courses?cursor={bad}")
        assert (resp.status, resp.error["code"]) == (400, "invalid_argument"), bad
        assert "cursor" in resp.error["message"]


async def test_a_cursor_from_another_tenant_is_invalid_argument(paged):
    catalog, _ = paged
    cursor = (await catalog.public("GET", "/courses?limit=10")).body["next_cursor"]
    resp = await catalog.public("GET", f"/courses?cursor={cursor}", tenant=new_tenant())
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")


async def test_a_cursor_from_another_list_is_invalid_argument(catalog):
    first = await catalog.create_course("first")
    await catalog.create_course("second")
    cursor = (await catalog.public("GET", "/courses?limit=1")).body["next_cursor"]
    resp = await catalog.public("GET", f"/courses/{first['id']}/modules?cursor={cursor}")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "cursor" in resp.error["message"]
