"""No tenant sees another, no input crashes it (issue 9): the isolation sweep over every route of the gateway's
route table, and schemathesis fuzzing of the gateway's OpenAPI document with valid, wrong-scope and
wrong-tenant keys. Both run against one cluster holding a tenant with one of every resource.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import pytest_asyncio
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.routes import API_PREFIX, PUBLIC_ROUTES, RouteTable
from tests.support.cluster import Cluster
from tests.support.scorm_packages import FIXTURES

pytestmark = pytest.mark.asyncio(loop_scope="module")

MISSING_ID = 987_654_321
ALL_SCOPES = ("learn:read", "learn:write", "learn:cohorts:grant")


@dataclass
class Tenant:
    slug: str
    key: str
    #: path segment before an id (``courses``, ``verify`` ...) -> an id of this tenant
    ids: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    owner: Tenant  # holds one of every resource
    other: Tenant  # a tenant with its own data, looking at the owner's ids


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(shared_cluster: Cluster) -> World:
    c = shared_cluster
    owner = Tenant("iso-owner", await c.tenant_with_key("iso-owner"))
    other = Tenant("iso-other", await c.tenant_with_key("iso-other"))
    await c.user(owner.slug, 7, "Owner Learner")
    await c.user(other.slug, 8, "Other Learner")
    status, body = await c.admin("POST", f"/tenants/{owner.slug}/cert-templates",
                                 json={"name": "Owner style", "is_default": True})
    assert status == 201, body
    template_id = body["data"]["id"]
    package = await c.upload_scorm(owner.slug, FIXTURES / "golf_scorm12_singlesco.zip")
    assert package["status"] == "ready", package
    course, (golf, reading) = await c.course(owner.key, owner.slug, "owned", [
        {"title": "Golf", "kind": "scorm", "required": True, "scorm_package_id": package["id"],
         "sco_identifier": package["scos"][0]["identifier"]},
        {"title": "Read", "kind": "reading", "required": True},
    ])
    await c.course(other.key, other.slug, "theirs", [{"title": "Read", "kind": "reading"}])
    enrollment = await c.enroll(owner.key, 7, course["id"])
    golf_launch = await c.complete_activity(owner.key, enrollment["id"], golf,
                                            {"cmi.core.lesson_status": "passed"})
    await c.complete_activity(owner.key, enrollment["id"], reading)
    (cert,) = await c.eventually(lambda: c.certificates_of(owner.key, user_id=7), message="the owner's certificate")
    status, modules = await c.api(owner.key, "GET", f"/courses/{course['id']}/modules")
    assert status == 200, modules
    status, body = await c.admin("POST", f"/tenants/{owner.slug}/cohorts",
                                 json={"name": "Owners", "course_ids": [course["id"]]})
    assert status == 201, body
    cohort_id = body["data"]["id"]
    status, keys = await c.admin("GET", f"/tenants/{owner.slug}/api-keys")
    assert status == 200, keys
    owner.ids = {
        "courses": course["id"], "modules": modules["data"][0]["id"], "lessons": golf["lesson_id"],
        "activities": golf["id"], "enrollments": enrollment["id"], "attempts": golf_launch["attempt_id"],
        "certificates": cert["id"], "verify": cert["verification_id"], "cert-templates": template_id,
        "scorm-packages": package["id"], "cohorts": cohort_id, "api-keys": keys["data"][0]["id"], "users": 7,
    }
    return World(owner, other)


def concrete(path: str, ids: dict[str, Any]) -> str:
    """The route's path with each ``{param}`` replaced by the id of the resource named just before it."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if segment.startswith("{"):
            segments[i] = str(ids[segments[i - 1]])
    return "/".join(segments)


def missing(ids: dict[str, Any]) -> dict[str, Any]:
    return {name: secrets.token_urlsafe(30)[:40] if name == "verify" else MISSING_ID for name in ids}


def error_of(body: Any) -> tuple[str, str]:
    return body["error"]["code"], body["error"]["message"]


# --- isolation sweep ------------------------------------------------------------------------------------------

GET_ROUTES = [r for r in PUBLIC_ROUTES if r.method == "GET" and "{" in r.path]
ADMIN_GETS = ["courses/{id}", "modules/{id}", "lessons/{id}", "activities/{id}", "cohorts/{id}",
              "cert-templates/{id}", "scorm-packages/{id}", "api-keys/{id}", "users/{id}"]


@pytest.mark.parametrize("route", GET_ROUTES, ids=[r.path.removeprefix(API_PREFIX) for r in GET_ROUTES])
async def test_another_tenants_id_answers_exactly_like_a_missing_one(shared_cluster: Cluster, world: World,
                                                                     route: Any) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    owned = concrete(route.path, owner.ids)
    status, body = await c.request("GET", owned, token=owner.key)
    assert status == 200, (owned, body)  # the id is real

    status, body = await c.request("GET", owned, token=other.key)
    missing_status, missing_body = await c.request("GET", concrete(route.path, missing(owner.ids)), token=other.key)
    assert (status, missing_status) == (404, 404), (owned, body, missing_body)
    assert error_of(body) == error_of(missing_body)
    assert error_of(body)[0].endswith("_not_found")


@pytest.mark.parametrize("path", ADMIN_GETS)
async def test_admin_reads_through_another_tenant_answer_like_missing_ids(shared_cluster: Cluster, world: World,
                                                                          path: str) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    resource = path.split("/")[0]
    status, body = await c.admin("GET", f"/tenants/{owner.slug}/{resource}/{owner.ids[resource]}")
    assert status == 200, body
    status, body = await c.admin("GET", f"/tenants/{other.slug}/{resource}/{owner.ids[resource]}")
    missing_status, missing_body = await c.admin("GET", f"/tenants/{other.slug}/{resource}/{MISSING_ID}")
    assert (status, missing_status) == (404, 404), (body, missing_body)
    assert error_of(body) == error_of(missing_body)


async def test_writes_on_another_tenants_ids_answer_like_missing_ones_and_change_nothing(
        shared_cluster: Cluster, world: World) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    writes = [
        ("POST", "/courses/{id}", {"title": "Hijacked"}), ("POST", "/courses/{id}/archive", None),
        ("POST", "/courses/{id}/unpublish", None), ("POST", "/enrollments/{id}/cancel", None),
        ("POST", "/enrollments/{id}/launches", {"activity_id": owner.ids["activities"]}),
        ("POST", "/certificates/{id}/revoke", {"reason": "mine now"}),
        ("POST", "/certificates/{id}/regenerate-pdf", None),
    ]
    for method, pattern, payload in writes:
        path = API_PREFIX + pattern
        status, body = await c.request(method, concrete(path, owner.ids), token=other.key, json=payload)
        missing_status, missing_body = await c.request(method, concrete(path, missing(owner.ids)),
                                                       token=other.key, json=payload)
        assert (status, missing_status) == (404, 404), (pattern, body, missing_body)
        assert error_of(body) == error_of(missing_body), pattern
    status, body = await c.api(other.key, "POST", "/enrollments", json={"user_id": 8,
                                                                        "course_id": owner.ids["courses"]})
    assert status == 404 and body["error"]["code"] == "course_not_found"
    status, body = await c.api(other.key, "POST", "/cohorts/grant", json={"user_id": 8,
                                                                          "cohort_id": owner.ids["cohorts"]})
    assert status == 404 and body["error"]["code"] == "cohort_not_found"

    course = (await c.api(owner.key, "GET", f"/courses/{owner.ids['courses']}"))[1]["data"]
    assert course["title"] != "Hijacked" and course["status"] == "published"
    cert = (await c.api(owner.key, "GET", f"/certificates/{owner.ids['certificates']}"))[1]["data"]
    assert cert["is_revoked"] is False and cert["pdf"]["version"] == 1


async def test_filtered_lists_never_show_another_tenants_rows(shared_cluster: Cluster, world: World) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    ids = owner.ids
    for path in (f"/enrollments?course_id={ids['courses']}", f"/attempts?enrollment_id={ids['enrollments']}",
                 f"/attempts?activity_id={ids['activities']}", f"/certificates?course_id={ids['courses']}",
                 "/cert-templates", "/scorm-packages", "/certificates", "/attempts"):
        status, body = await c.api(owner.key, "GET", path)
        assert status == 200 and body["data"], (path, body)
        status, body = await c.api(other.key, "GET", path)
        assert status == 200 and body["data"] == [], (path, body)
    status, body = await c.api(other.key, "GET", "/courses")
    assert [course["slug"] for course in body["data"]] == ["theirs"]


# --- fuzzing ----------------------------------------------------------------------------------------------------

POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance]
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass
class FuzzReport:
    answers: list[tuple[str, str, int, Any]] = field(default_factory=list)  # (method, path, status, json)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (operation, reason) -> example

    def summary(self) -> str:
        return "\n\n".join(f"{op}: {example}" for (op, _), example in list(self.failures.items())[:15])


def fuzz(cluster: Cluster, headers: dict[str, str], examples: int, mode: GenerationMode,
         checks: list[Any]) -> FuzzReport:
    """Every operation of the served OpenAPI document, ``examples`` generated cases each (blocking: run it in a
    thread). Failed checks are collected, one example per operation and reason, so one run reports them all."""
    base = cluster.gateway_url
    schema = schemathesis.openapi.from_url(base + "/api/v1/learn/openapi.json", timeout=30)
    report = FuzzReport()
    session = requests.Session()

    def exercise(operation: Any) -> None:
        name = f"{operation.method.upper()} {operation.path}"

        @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                             phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def one_case(case: Any) -> None:
            response = case.call(base_url=base, session=session, headers=headers, timeout=30)
            try:
                body = response.json()
            except ValueError:
                body = None
            report.answers.append((case.method, case.formatted_path, response.status_code, body))
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as exc:  # a failed check: keep one example per reason
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                report.failures.setdefault((name, reason), f"{case.method} {case.formatted_path} "
                                           f"-> {response.status_code}\n{str(exc)[:1500]}")

        try:
            one_case()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, name  # nothing in this operation can be made invalid

    for result in schema.get_all_operations():
        exercise(result.ok())
    return report


def api_answers(report: FuzzReport) -> list[tuple[str, str, int, Any]]:
    return [a for a in report.answers if a[1].startswith(API_PREFIX) and not a[1].endswith("/openapi.json")]


@pytest.mark.slow
async def test_fuzzing_with_a_valid_key_never_crashes_and_answers_as_documented(shared_cluster: Cluster,
                                                                                 world: World) -> None:
    headers = {"Authorization": f"Bearer {world.owner.key}"}
    valid = await asyncio.to_thread(fuzz, shared_cluster, headers, 25, GenerationMode.POSITIVE, POSITIVE_CHECKS)
    invalid = await asyncio.to_thread(fuzz, shared_cluster, headers, 12, GenerationMode.NEGATIVE, NEGATIVE_CHECKS)
    assert not valid.failures and not invalid.failures, (
        f"valid inputs:\n{valid.summary()}\n\ninvalid inputs:\n{invalid.summary()}")
    assert any(status in (200, 201) for _, _, status, _ in api_answers(valid))
    assert all(status < 500 for _, _, status, _ in invalid.answers)


@pytest.mark.slow
async def test_fuzzing_with_a_wrong_scope_key_is_refused_by_scope(shared_cluster: Cluster, world: World) -> None:
    key = await shared_cluster.tenant_with_key("iso-grant-only", scopes=("learn:cohorts:grant",))
    report = await asyncio.to_thread(fuzz, shared_cluster, {"Authorization": f"Bearer {key}"}, 6,
                                     GenerationMode.POSITIVE, POSITIVE_CHECKS)
    assert not report.failures, report.summary()
    for method, path, status, body in api_answers(report):
        if RouteTable.unsafe_path(path):
            # dot segments and encoded slashes or backslashes never match a route: no such route, for any key
            assert status == 404 and body["error"]["code"] == "not_found", (method, path, status, body)
        elif path != API_PREFIX + "/cohorts/grant":
            assert status == 403 and body["error"]["code"] == "insufficient_scope", (method, path, status, body)


@pytest.mark.slow
async def test_fuzzing_with_another_tenants_key_on_this_tenants_host_is_unauthorised(shared_cluster: Cluster,
                                                                                      world: World) -> None:
    headers = {"Authorization": f"Bearer {world.other.key}", "Host": f"{world.owner.slug}.localhost"}
    report = await asyncio.to_thread(fuzz, shared_cluster, headers, 6, GenerationMode.POSITIVE, POSITIVE_CHECKS)
    assert not report.failures, report.summary()
    for method, path, status, body in api_answers(report):
        assert status == 401 and body["error"]["code"] == "invalid_api_key", (method, path, status, body)
