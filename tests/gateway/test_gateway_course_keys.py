"""Per-course keys at the gateway (ADR 0019): made by the admin API and learnctl, forwarded as X-Learn-Course-Ids
(never the client's), refused on routes not about one course before any service is called. Echo services stand in
for the real ones (the real services' filtering: tests/reliability/test_reliability_course_keys.py)."""

from __future__ import annotations

import json

import pytest

from services.gateway.routes import API_PREFIX, PUBLIC_ROUTES
from shared.http import H_COURSE_IDS
from tests.gateway.test_gateway_cli_dlq import ctl

COURSES = "/api/v1/learn/courses"


async def test_learnctl_makes_a_per_course_key_and_the_gateway_forwards_its_courses(gw, capsys):
    await gw.tenant("acme")
    code, out, _ = await ctl(gw, capsys, "--json", "keys", "create", "acme", "--name", "partner",
                             "--scope", "learn:read", "--course", "14", "--course", "12,13", "--course", "12")
    assert code == 0, out
    created = json.loads(out)
    assert created["course_ids"] == [12, 13, 14]
    resp = await gw.api("GET", COURSES + "/12", created["key"], headers={H_COURSE_IDS: "99"})
    assert resp.status == 200
    assert (await resp.json())["data"]["headers"][H_COURSE_IDS] == "12 13 14"  # the key's, not the client's
    code, out, _ = await ctl(gw, capsys, "keys", "list", "acme")
    header, row = out.strip().splitlines()
    assert code == 0 and header.split()[4] == "COURSE_IDS" and row.split()[4] == "12,13,14", out


async def test_learnctl_refuses_what_is_not_a_course_id(gw, capsys):
    await gw.tenant("acme")
    code, _, err = await ctl(gw, capsys, "keys", "create", "acme", "--name", "bad", "--scope", "learn:read",
                             "--course", "twelve")
    assert code != 0 and "--course" in err
    listed = await gw.client.get("/admin/api/v1/tenants/acme/api-keys", headers=gw.admin())
    assert (await listed.json())["data"] == []


async def test_a_key_for_every_course_forwards_no_course_header_even_if_the_client_sends_one(gw):
    await gw.tenant("acme")
    key = await gw.key("acme")
    assert key["course_ids"] is None
    resp = await gw.api("GET", COURSES, key["key"], headers={H_COURSE_IDS: "1"})
    assert H_COURSE_IDS not in (await resp.json())["data"]["headers"]


@pytest.mark.parametrize("course_ids", [[], [0], [-1], ["7"], [1.5], [True], "7", list(range(1, 102)), {"a": 1}])
async def test_the_admin_api_refuses_bad_course_ids(gw, course_ids):
    await gw.tenant("acme")
    resp = await gw.client.post("/admin/api/v1/tenants/acme/api-keys", headers=gw.admin(),
                                json={"name": "bad", "scopes": ["learn:read"], "course_ids": course_ids})
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_argument", body
    assert "course_ids" in body["error"]["message"]


NOT_COURSE_SCOPED = [r for r in PUBLIC_ROUTES if not r.course_scoped]


def test_only_course_creation_templates_and_packages_are_not_course_scoped():
    assert sorted((r.method, r.path.removeprefix(API_PREFIX)) for r in NOT_COURSE_SCOPED) == [
        ("DELETE", "/scorm-packages/{id}"), ("GET", "/cert-templates"), ("GET", "/cert-templates/{id}"),
        ("GET", "/scorm-packages"), ("GET", "/scorm-packages/{id}"), ("GET", "/scorm-uploads/{id}"),
        ("HEAD", "/scorm-uploads/{id}"), ("PATCH", "/scorm-uploads/{id}"), ("POST", "/courses"),
        ("POST", "/scorm-packages"), ("POST", "/scorm-packages/{id}/versions"), ("POST", "/scorm-uploads")]


@pytest.mark.parametrize("route", NOT_COURSE_SCOPED, ids=[f"{r.method} {r.path}" for r in NOT_COURSE_SCOPED])
async def test_routes_not_about_a_course_are_refused_before_any_service_is_called(gw, route):
    await gw.tenant("acme")
    limited = await gw.key("acme", scopes=["learn:read", "learn:write"], course_ids=[5])
    path = route.path.replace("{id}", "3")
    resp = await gw.api(route.method, path, limited["key"], json={"slug": "x", "title": "X"}
                        if route.method == "POST" else None)
    if route.method == "HEAD":  # no body: the status says it
        assert resp.status == 403
    else:
        body = await resp.json()
        assert resp.status == 403 and body["error"]["code"] == "course_limited_key", body
    assert all(not echo.seen for echo in gw.echoes.values())
    full = await gw.key("acme", scopes=["learn:read", "learn:write"])
    assert (await gw.api(route.method, path, full["key"], json={} if route.method == "POST" else None)).status == 200
