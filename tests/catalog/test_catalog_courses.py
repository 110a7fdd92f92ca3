"""Courses: every contract field round-trips, defaults, partial update, slug uniqueness, unknown ids."""

from __future__ import annotations

import re

import pytest

from tests.catalog.conftest import new_tenant

pytestmark = pytest.mark.asyncio(loop_scope="module")

FULL = {
    "slug": "intro-to-mobieus",
    "title": "Intro to Mobieus",
    "subtitle": "Start here",
    "summary": "Everything a new operator needs.",
    "language": "pt-BR",
    "completion_rule": "any_activity",
    "estimated_minutes": 90,
    "credit_hours": 2.5,
    "credit_kind": "CEU",
    "credit_expires_after_months": 24,
    "certificate_template_id": 7,
}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


async def test_create_returns_every_contract_field(catalog):
    resp = await catalog.public("POST", "/courses", FULL)
    assert resp.status == 201
    course = resp.data
    assert set(course) == {"id", "slug", "title", "subtitle", "summary", "language", "completion_rule",
                           "estimated_minutes", "status", "credit", "version", "owner", "certificate_template_id",
                           "created_at", "updated_at"}
    assert {k: course[k] for k in ("slug", "title", "subtitle", "summary", "language", "completion_rule",
                                   "estimated_minutes", "certificate_template_id")} == {
        k: FULL[k] for k in ("slug", "title", "subtitle", "summary", "language", "completion_rule",
                             "estimated_minutes", "certificate_template_id")}
    assert course["credit"] == {"hours": 2.5, "kind": "CEU", "expires_after_months": 24}
    assert course["status"] == "draft"
    assert course["version"] == {"number": 1, "status": "draft", "published_at": None}
    assert RFC3339.fullmatch(course["created_at"]) and RFC3339.fullmatch(course["updated_at"])


async def test_get_returns_what_create_returned(catalog):
    created = (await catalog.public("POST", "/courses", FULL)).data
    assert (await catalog.public("GET", f"/courses/{created['id']}")).data == created


async def test_list_returns_the_same_objects_as_get(catalog):
    created = (await catalog.public("POST", "/courses", FULL)).data
    assert (await catalog.public("GET", "/courses")).data == [created]


async def test_create_applies_the_contract_defaults(catalog):
    course = await catalog.create_course("minimal", title="Minimal")
    assert course["language"] == "en"
    assert course["completion_rule"] == "all_required"
    assert course["subtitle"] is None and course["summary"] is None and course["estimated_minutes"] is None
    assert course["credit"] == {"hours": None, "kind": None, "expires_after_months": None}
    assert course["certificate_template_id"] is None


async def test_owner_is_the_admin_user_forwarded_by_the_gateway(catalog):
    resp = await catalog.public("POST", "/courses", {"slug": "owned", "title": "Owned"},
                                **{"X-Learn-Owner-Id": "42", "X-Learn-Owner-Name": "Grace%20Hopper"})
    assert resp.data["owner"] == {"id": 42, "name": "Grace Hopper"}


async def test_owner_fields_are_null_when_the_gateway_forwards_no_owner(catalog):
    headers = catalog.env.internal_headers(tenant_id=catalog.tenant.id, tenant=catalog.tenant.slug)
    del headers["X-Learn-Owner-Id"], headers["X-Learn-Owner-Name"]
    resp = await catalog.client.post("/api/v1/learn/courses", json={"slug": "orphan", "title": "Orphan"},
                                     headers=headers)
    assert (await resp.json())["data"]["owner"] == {"id": None, "name": None}


async def test_an_overlong_owner_name_is_shortened_not_fatal(catalog):
    resp = await catalog.public("POST", "/courses", {"slug": "long-owner", "title": "T"},
                                **{"X-Learn-Owner-Name": "n" * 300})
    assert resp.data["owner"]["name"] == "n" * 200


async def test_update_changes_only_the_fields_sent(catalog):
    course = (await catalog.public("POST", "/courses", FULL)).data
    updated = (await catalog.public("POST", f"/courses/{course['id']}", {"title": "Renamed"})).data
    assert updated["title"] == "Renamed"
    assert {k: v for k, v in updated.items() if k not in ("title", "updated_at")} == {
        k: v for k, v in course.items() if k not in ("title", "updated_at")}
    assert updated["updated_at"] > course["updated_at"]


async def test_update_with_null_clears_optional_fields(catalog):
    course = (await catalog.public("POST", "/courses", FULL)).data
    cleared = (await catalog.public("POST", f"/courses/{course['id']}", {
        "subtitle": None, "summary": None, "estimated_minutes": None, "credit_hours": None, "credit_kind": None,
        "credit_expires_after_months": None, "certificate_template_id": None,
    })).data
    assert cleared["subtitle"] is None and cleared["summary"] is None and cleared["estimated_minutes"] is None
    assert cleared["credit"] == {"hours": None, "kind": None, "expires_after_months": None}
    assert cleared["certificate_template_id"] is None


async def test_update_with_null_restores_defaulted_fields(catalog):
    course = (await catalog.public("POST", "/courses", FULL)).data
    reset = (await catalog.public("POST", f"/courses/{course['id']}",
                                  {"language": None, "completion_rule": None})).data
    assert (reset["language"], reset["completion_rule"]) == ("en", "all_required")


async def test_update_can_set_every_field(catalog):
    course = await catalog.create_course("bare")
    updated = (await catalog.public("POST", f"/courses/{course['id']}", {**FULL, "slug": "bare-renamed"})).data
    assert updated["slug"] == "bare-renamed"
    assert updated["credit"] == {"hours": 2.5, "kind": "CEU", "expires_after_months": 24}
    assert updated["language"] == "pt-BR" and updated["estimated_minutes"] == 90


async def test_slug_taken_in_the_tenant_is_rejected(catalog):
    await catalog.create_course("dup")
    resp = await catalog.public("POST", "/courses", {"slug": "dup", "title": "Again"})
    assert resp.status == 400
    assert resp.error["code"] == "invalid_argument"
    assert "slug" in resp.error["message"] and "taken" in resp.error["message"]


async def test_renaming_to_a_taken_slug_is_rejected(catalog):
    await catalog.create_course("first")
    second = await catalog.create_course("second")
    resp = await catalog.public("POST", f"/courses/{second['id']}", {"slug": "first"})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "taken" in resp.error["message"]


async def test_sending_a_course_its_own_slug_is_not_a_conflict(catalog):
    course = await catalog.create_course("mine")
    assert (await catalog.public("POST", f"/courses/{course['id']}", {"slug": "mine"})).status == 200


async def test_the_same_slug_may_exist_in_two_tenants(catalog):
    await catalog.create_course("shared-slug")
    assert (await catalog.create_course("shared-slug", tenant=new_tenant()))["slug"] == "shared-slug"


async def test_unknown_course_id_is_course_not_found(catalog):
    for method, path in (("GET", "/courses/999"), ("POST", "/courses/999"), ("POST", "/courses/999/publish"),
                         ("GET", "/courses/abc")):
        resp = await catalog.public(method, path, {} if method == "POST" else None)
        assert resp.status == 404, path
        assert resp.error["code"] == "course_not_found"
        assert resp.error["message"] == "Course not found."


async def test_archived_course_cannot_be_updated(catalog):
    course = await catalog.create_course("old")
    await catalog.transition(course["id"], "archive")
    resp = await catalog.public("POST", f"/courses/{course['id']}", {"title": "New"})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "archived" in resp.error["message"]


async def test_a_published_course_can_be_renamed(catalog):
    course = await catalog.publishable_course()
    await catalog.transition(course["id"], "publish")
    updated = (await catalog.public("POST", f"/courses/{course['id']}", {"title": "Better"})).data
    assert (updated["title"], updated["status"]) == ("Better", "published")


async def test_requests_without_the_internal_credential_are_rejected(catalog):
    resp = await catalog.client.get("/api/v1/learn/courses")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_api_key"
