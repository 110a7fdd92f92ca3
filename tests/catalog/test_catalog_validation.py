"""Every course field's bad values: 400 missing_field for absent/blank required fields, 400 invalid_argument
with a message naming the field for everything else."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = {"slug": "valid-slug", "title": "Valid"}

MISSING = [
    ("slug", {"title": "No slug"}),
    ("slug", {"slug": None, "title": "Null slug"}),
    ("slug", {"slug": "  ", "title": "Blank slug"}),
    ("title", {"slug": "no-title"}),
    ("title", {"slug": "null-title", "title": None}),
    ("title", {"slug": "blank-title", "title": ""}),
]


@pytest.mark.parametrize(("field", "body"), MISSING)
async def test_missing_required_field_is_missing_field(catalog, field, body):
    resp = await catalog.public("POST", "/courses", body)
    assert (resp.status, resp.error["code"]) == (400, "missing_field")
    assert field in resp.error["message"]


INVALID = [
    ("slug", "Upper-Case"),
    ("slug", "under_score"),
    ("slug", "double--hyphen"),
    ("slug", "-leading"),
    ("slug", "trailing-"),
    ("slug", "has space"),
    ("slug", "dot.ted"),
    ("slug", "a" * 101),
    ("slug", 12),
    ("title", 5),
    ("title", "t" * 301),
    ("subtitle", 3),
    ("summary", ["list"]),
    ("language", "english-language-not-a-tag-really-long"),
    ("language", "e"),
    ("language", "en_US"),
    ("language", 1),
    ("completion_rule", "most"),
    ("completion_rule", ""),
    ("completion_rule", 1),
    ("estimated_minutes", -1),
    ("estimated_minutes", "90"),
    ("estimated_minutes", 1.5),
    ("estimated_minutes", True),
    ("credit_hours", -0.5),
    ("credit_hours", "2.5"),
    ("credit_hours", True),
    ("credit_hours", 1.23456),
    ("credit_kind", 3),
    ("credit_kind", " "),
    ("credit_kind", "k" * 65),
    ("credit_expires_after_months", 0),
    ("credit_expires_after_months", -3),
    ("credit_expires_after_months", 1.5),
    ("credit_expires_after_months", "12"),
    ("certificate_template_id", 0),
    ("certificate_template_id", "7"),
]


@pytest.mark.parametrize(("field", "value"), INVALID)
async def test_bad_value_on_create_is_invalid_argument_naming_the_field(catalog, field, value):
    resp = await catalog.public("POST", "/courses", {**BASE, field: value})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert field in resp.error["message"]


@pytest.mark.parametrize(("field", "value"), INVALID)
async def test_bad_value_on_update_is_invalid_argument_naming_the_field(catalog, field, value):
    course = await catalog.create_course("to-update")
    resp = await catalog.public("POST", f"/courses/{course['id']}", {field: value})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert field in resp.error["message"]
    assert (await catalog.public("GET", f"/courses/{course['id']}")).data == course


@pytest.mark.parametrize("field", ["slug", "title"])
async def test_clearing_a_required_field_on_update_is_missing_field(catalog, field):
    course = await catalog.create_course("keep-me")
    resp = await catalog.public("POST", f"/courses/{course['id']}", {field: None})
    assert (resp.status, resp.error["code"]) == (400, "missing_field")
    assert field in resp.error["message"]


@pytest.mark.parametrize("field", ["id", "tenant_id", "status", "version", "owner", "credit"])
async def test_unknown_or_read_only_fields_are_rejected(catalog, field):
    resp = await catalog.public("POST", "/courses", {**BASE, field: 1})
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert field in resp.error["message"]


async def test_malformed_json_is_invalid_argument(catalog):
    resp = await catalog.client.post("/api/v1/learn/courses", data=b"{not json",
                                     headers={**catalog.env.internal_headers(), "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_argument"


async def test_a_body_that_is_not_an_object_is_invalid_argument(catalog):
    resp = await catalog.public("POST", "/courses", ["slug", "title"])
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")


@pytest.mark.parametrize(("field", "value"), [
    ("credit_hours", 0), ("credit_hours", 1.25), ("estimated_minutes", 0),
    ("credit_expires_after_months", 1), ("language", "en"), ("language", "zh-Hant-TW"),
    ("completion_rule", "all_activities"), ("slug", "a"), ("slug", "a1-b2-c3"), ("slug", "s" * 100),
])
async def test_boundary_values_are_accepted(catalog, field, value):
    resp = await catalog.public("POST", "/courses", {**BASE, field: value})
    assert resp.status == 201, resp.body
