"""Per-course API keys (issue 18, ADR 0019): a key limited to course X reads and writes only X and what hangs
under it. The sweep runs over every route of the gateway's route table, through the gateway, on one cluster with
two courses of one tenant, each with a module, lesson, activities, an enrollment, attempts and a certificate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from services.gateway.routes import API_PREFIX, PUBLIC_ROUTES
from shared.http import H_COURSE_IDS
from tests.reliability.conftest import UNLIMITED
from tests.reliability.test_reliability_api_surface import concrete, error_of, missing
from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv

pytestmark = pytest.mark.asyncio(loop_scope="module")

SLUG = "course-keys"
ALL = ("learn:read", "learn:write", "learn:cohorts:grant")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_cluster(module_env: TestEnv) -> AsyncIterator[Cluster]:
    """This module's cluster. Read-your-writes may wait longer than the default 5 s: the world below is built by
    a burst of writes on a loaded machine, and a 503 not_yet_consistent there would only say the machine is slow."""
    extra = {**UNLIMITED, "LEARN_CONSISTENCY_WAIT": "20"}
    try:
        async with running_cluster(module_env, module_env.data_dir.parent / "cluster", extra_env=extra) as c:
            yield c
    finally:
        await module_env.cleanup()


@dataclass
class World:
    full_key: str  # every course of the tenant
    x_key: str  # limited to course X
    x: dict[str, Any]  # path segment before an id -> an id of course X (or of what hangs under it)
    y: dict[str, Any]  # the same for course Y
    y_cohort: int
    mixed_cohort: int  # holds X and Y
    x_cohort: int


async def _limited_key(c: Cluster, course_ids: list[int], scopes: tuple[str, ...] = ALL) -> dict[str, Any]:
    status, body = await c.admin("POST", f"/tenants/{SLUG}/api-keys",
                                 json={"name": "course key", "scopes": list(scopes), "course_ids": course_ids})
    assert status == 201, body
    return dict(body["data"])


async def _one_course(c: Cluster, key: str, slug: str, user_id: int) -> dict[str, Any]:
    course, (reading,) = await c.course(key, SLUG, slug, [{"title": "Read", "kind": "reading", "required": True}])
    status, modules = await c.api(key, "GET", f"/courses/{course['id']}/modules")
    assert status == 200, modules
    enrollment = await c.enroll(key, user_id, course["id"])
    launch = await c.complete_activity(key, enrollment["id"], reading)
    (cert,) = await c.eventually(lambda: c.certificates_of(key, course_id=course["id"]),
                                 message=f"the certificate of course {course['id']}")
    return {"courses": course["id"], "modules": modules["data"][0]["id"], "lessons": reading["lesson_id"],
            "activities": reading["id"], "enrollments": enrollment["id"], "attempts": launch["attempt_id"],
            "certificates": cert["id"], "verify": cert["verification_id"], "user": user_id}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(shared_cluster: Cluster) -> World:
    c = shared_cluster
    full_key = await c.tenant_with_key(SLUG)
    await c.user(SLUG, 7, "Learner X")
    await c.user(SLUG, 8, "Learner Y")
    await c.user(SLUG, 9, "Learner Z")
    status, body = await c.admin("POST", f"/tenants/{SLUG}/cert-templates", json={"name": "Style", "is_default": True})
    assert status == 201, body
    x = await _one_course(c, full_key, "course-x", 7)
    y = await _one_course(c, full_key, "course-y", 8)
    cohorts = {}
    for name, courses in (("x", [x["courses"]]), ("y", [y["courses"]]), ("mixed", [x["courses"], y["courses"]])):
        status, body = await c.admin("POST", f"/tenants/{SLUG}/cohorts", json={"name": name, "course_ids": courses})
        assert status == 201, body
        cohorts[name] = body["data"]["id"]
    x_key = await _limited_key(c, [x["courses"]])
    assert x_key["course_ids"] == [x["courses"]]
    return World(full_key, x_key["key"], x, y, cohorts["y"], cohorts["mixed"], cohorts["x"])


COURSE_ROUTES = [r for r in PUBLIC_ROUTES if r.method == "GET" and "{" in r.path and r.course_scoped]
TENANT_ROUTES = [r for r in PUBLIC_ROUTES if not r.course_scoped]


def _name(route: Any) -> str:
    return f"{route.method} {route.path.removeprefix(API_PREFIX)}"


async def test_the_sweep_covers_every_get_route_of_the_table() -> None:
    gets = [r for r in PUBLIC_ROUTES if r.method == "GET"]
    covered = COURSE_ROUTES + [r for r in LIST_ROUTES] + [r for r in TENANT_ROUTES if r.method == "GET"]
    assert sorted(map(_name, gets)) == sorted(set(map(_name, covered)))


@pytest.mark.parametrize("route", COURSE_ROUTES, ids=[_name(r) for r in COURSE_ROUTES])
async def test_another_courses_id_answers_exactly_like_a_missing_one(shared_cluster: Cluster, world: World,
                                                                     route: Any) -> None:
    c = shared_cluster
    status, body = await c.request("GET", concrete(route.path, world.x), token=world.x_key)
    assert status == 200, body  # its own course: readable
    status, body = await c.request("GET", concrete(route.path, world.y), token=world.full_key)
    assert status == 200, body  # Y's id is real
    status, body = await c.request("GET", concrete(route.path, world.y), token=world.x_key)
    missing_status, missing_body = await c.request("GET", concrete(route.path, missing(world.y)), token=world.x_key)
    assert (status, missing_status) == (404, 404), (body, missing_body)
    assert error_of(body) == error_of(missing_body)
    assert body["error"].keys() == missing_body["error"].keys()
    assert error_of(body)[0].endswith("_not_found")


LIST_ROUTES = [r for r in PUBLIC_ROUTES if r.method == "GET" and "{" not in r.path and r.course_scoped]


@pytest.mark.parametrize("route", LIST_ROUTES, ids=[_name(r) for r in LIST_ROUTES])
async def test_lists_show_only_the_keys_courses(shared_cluster: Cluster, world: World, route: Any) -> None:
    c = shared_cluster
    path = route.path.removeprefix(API_PREFIX)
    status, everything = await c.api(world.full_key, "GET", path)
    assert status == 200, everything
    status, limited = await c.api(world.x_key, "GET", path)
    assert status == 200, limited

    def course_of(row: dict[str, Any]) -> int:
        return int(row["id"] if path == "/courses" else row["course_id"])

    assert {course_of(r) for r in everything["data"]} == {world.x["courses"], world.y["courses"]}
    assert [r["id"] for r in limited["data"]] == [r["id"] for r in everything["data"]
                                                  if course_of(r) == world.x["courses"]]
    assert limited["data"]
    # Filtering on Y's course, enrollment or activity finds nothing (not an error: a filter that matches nothing).
    for name in route.query:
        source = {"course_id": "courses", "enrollment_id": "enrollments", "activity_id": "activities",
                  "user_id": "user"}.get(name)
        if source is None:
            continue
        status, body = await c.api(world.x_key, "GET", f"{path}?{name}={world.y[source]}")
        assert (status, body["data"]) == (200, []), (name, body)
        status, body = await c.api(world.full_key, "GET", f"{path}?{name}={world.y[source]}")
        assert status == 200 and body["data"], (name, body)


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=[_name(r) for r in TENANT_ROUTES])
async def test_routes_not_about_a_course_are_refused(shared_cluster: Cluster, world: World, route: Any) -> None:
    c = shared_cluster
    ids = {**world.x, "cert-templates": 1, "scorm-packages": 1, "scorm-uploads": 1}
    payload = {"slug": "new-course", "title": "New"} if route.method == "POST" else None
    status, body = await c.request(route.method, concrete(route.path, ids), token=world.x_key, json=payload)
    if route.method == "HEAD":  # no body: the status says it
        assert status == 403
    else:
        assert status == 403 and body["error"]["code"] == "course_limited_key", body


async def test_writes_on_another_course_answer_like_missing_ids_and_change_nothing(shared_cluster: Cluster,
                                                                                   world: World) -> None:
    c, y = shared_cluster, world.y
    writes = [
        ("POST", "/courses/{id}", {"title": "Hijacked"}), ("POST", "/courses/{id}/archive", None),
        ("POST", "/courses/{id}/unpublish", None), ("POST", "/courses/{id}/publish", None),
        ("POST", "/enrollments/{id}/cancel", None),
        ("POST", "/enrollments/{id}/launches", {"activity_id": y["activities"]}),
        ("POST", "/certificates/{id}/revoke", {"reason": "mine now"}),
        ("POST", "/certificates/{id}/regenerate-pdf", None),
    ]
    assert {p for _, p, _ in writes} >= {r.path.removeprefix(API_PREFIX) for r in PUBLIC_ROUTES
                                         if r.method == "POST" and "{" in r.path and r.course_scoped}
    for method, pattern, payload in writes:
        path = API_PREFIX + pattern
        status, body = await c.request(method, concrete(path, y), token=world.x_key, json=payload)
        missing_status, missing_body = await c.request(method, concrete(path, missing(y)), token=world.x_key,
                                                       json=payload)
        assert (status, missing_status) == (404, 404), (pattern, body, missing_body)
        assert error_of(body) == error_of(missing_body), pattern

    # Enrolling in Y answers like a course that does not exist.
    status, body = await c.api(world.x_key, "POST", "/enrollments", json={"user_id": 9, "course_id": y["courses"]})
    missing_status, missing_body = await c.api(world.x_key, "POST", "/enrollments",
                                               json={"user_id": 9, "course_id": 987_654_321})
    assert (status, missing_status) == (404, 404) and error_of(body) == error_of(missing_body), body
    assert body["error"]["code"] == "course_not_found"
    # A cohort reaching Y (alone or with X) is not the key's to grant.
    for cohort_id in (world.y_cohort, world.mixed_cohort):
        status, body = await c.api(world.x_key, "POST", "/cohorts/grant", json={"user_id": 9, "cohort_id": cohort_id})
        missing_status, missing_body = await c.api(world.x_key, "POST", "/cohorts/grant",
                                                   json={"user_id": 9, "cohort_id": 987_654_321})
        assert (status, missing_status) == (404, 404) and error_of(body) == error_of(missing_body), body
        assert body["error"]["code"] == "cohort_not_found"

    course = (await c.api(world.full_key, "GET", f"/courses/{y['courses']}"))[1]["data"]
    assert course["title"] != "Hijacked" and course["status"] == "published"
    enrollment = (await c.api(world.full_key, "GET", f"/enrollments/{y['enrollments']}"))[1]["data"]
    assert enrollment["status"] == "completed"
    cert = (await c.api(world.full_key, "GET", f"/certificates/{y['certificates']}"))[1]["data"]
    assert cert["is_revoked"] is False and cert["pdf"]["version"] == 1
    status, body = await c.api(world.full_key, "GET", f"/enrollments?user_id=9&course_id={y['courses']}")
    assert (status, body["data"]) == (200, [])


async def test_the_key_writes_its_own_course(shared_cluster: Cluster, world: World) -> None:
    c, x = shared_cluster, world.x
    status, body = await c.api(world.x_key, "POST", f"/courses/{x['courses']}", json={"subtitle": "Edited by key"})
    assert status == 200 and body["data"]["subtitle"] == "Edited by key", body
    status, body = await c.api(world.x_key, "POST", "/cohorts/grant", json={"user_id": 9, "cohort_id": world.x_cohort})
    assert status in (200, 201), body
    assert [e["course_id"] for e in body["data"]["enrollments"]] == [x["courses"]]
    status, body = await c.api(world.x_key, "GET", f"/enrollments?user_id=9&course_id={x['courses']}")
    assert status == 200 and len(body["data"]) == 1, body


async def test_a_client_sent_course_header_is_ignored(shared_cluster: Cluster, world: World) -> None:
    c, x, y = shared_cluster, world.x, world.y
    # The limited key cannot widen itself to Y ...
    forged = {H_COURSE_IDS: f"{x['courses']} {y['courses']}"}
    status, body = await c.api(world.x_key, "GET", f"/courses/{y['courses']}", headers=forged)
    assert status == 404 and body["error"]["code"] == "course_not_found", body
    status, body = await c.api(world.x_key, "GET", "/enrollments", headers=forged)
    assert {r["course_id"] for r in body["data"]} == {x["courses"]}
    # ... and a client cannot narrow (or otherwise steer) a key the services would trust it for.
    status, body = await c.api(world.full_key, "GET", f"/certificates/{y['certificates']}",
                               headers={H_COURSE_IDS: str(x["courses"])})
    assert status == 200, body


async def test_bad_course_ids_on_key_creation_are_refused(shared_cluster: Cluster, world: World) -> None:
    c = shared_cluster
    for course_ids in ([], [0], [-3], ["x"], [True], list(range(1, 102)), {"a": 1}):
        status, body = await c.admin("POST", f"/tenants/{SLUG}/api-keys",
                                     json={"name": "bad", "scopes": ["learn:read"], "course_ids": course_ids})
        assert status == 400 and body["error"]["code"] == "invalid_argument", (course_ids, body)
    status, body = await c.admin("GET", f"/tenants/{SLUG}/api-keys")
    assert "bad" not in [k["name"] for k in body["data"]]
    # Duplicates collapse, and the key object lists its courses; an unlimited key says null.
    key = await _limited_key(c, [world.y["courses"], world.x["courses"], world.y["courses"]], scopes=("learn:read",))
    assert key["course_ids"] == sorted([world.x["courses"], world.y["courses"]])
    status, body = await c.admin("GET", f"/tenants/{SLUG}/api-keys/{key['id']}")
    assert body["data"]["course_ids"] == key["course_ids"]
    status, body = await c.api(key["key"], "GET", "/courses")
    assert {r["id"] for r in body["data"]} == {world.x["courses"], world.y["courses"]}
