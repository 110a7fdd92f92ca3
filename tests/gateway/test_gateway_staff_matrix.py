"""The role × tenant × course matrix over every admin write route (ADR 0021): the gateway in front of the real
catalog (course teams) and echo services for the rest; each staff role, the operator and another tenant's owner
call every write route on a course whose team the author is on (X) and on one they are not on (Y).

Refused means 403 (``insufficient_role``, ``not_on_course_team``) or, for another tenant's paths, 404
``tenant_not_found``; allowed means anything else but 401 (the call passed authorisation: a bogus body then gets
400, a missing row 404). The expectation is written here from the rule of docs/admin-ui.md, not from the code.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from services.catalog.app import create_app as catalog_app
from services.catalog.config import CatalogSettings
from services.certificates.app import create_app as certificates_app
from services.enrollment.app import create_app as enrollment_app
from services.scorm.app import create_app as scorm_app
from services.webhooks.app import create_app as webhooks_app
from tests.gateway.test_gateway_staff import member

ADMIN = "/admin/api/v1"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
COURSE_PREFIXES = ("courses", "modules", "lessons", "activities")


def service_write_routes() -> list[tuple[str, str]]:
    """Every admin write route of every service, as the admin API path below ``/tenants/{slug}/``."""
    found: set[tuple[str, str]] = set()
    for factory in (catalog_app, enrollment_app, certificates_app, scorm_app, webhooks_app):
        for route in factory().router.routes():
            path = route.resource.canonical if route.resource else ""
            if path.startswith("/admin/v1/") and route.method in WRITES:
                found.add((route.method, path[len("/admin/v1/"):]))
    return sorted(found)


def gateway_write_routes(app: Any) -> list[tuple[str, str]]:
    """The gateway's own admin write routes (the sign-in routes, which need no credential, aside)."""
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if (path.startswith(ADMIN) and route.method in WRITES and "{rest" not in path and "{tail" not in path
                and "/sessions" not in path and "/staff-links" not in path):
            found.add((route.method, path))
    return sorted(found)


def expected(actor: str, method: str, rest: str | None, course: str | None) -> bool:
    """May ``actor`` write here? ``rest`` None: a platform route; "" the tenant itself."""
    if actor == "operator":
        return True
    if actor == "other-tenant-owner" or rest is None or rest == "" or actor == "viewer":
        return False
    prefix = rest.split("/")[0]
    if prefix in ("staff", "sso"):  # the staff and single sign-on: owners only
        return actor == "owner"
    if actor in ("owner", "admin"):
        return True
    # an author: the course content of the courses whose team they are on, but neither creating courses nor
    # changing teams
    if prefix not in COURSE_PREFIXES or rest == "courses" or "/team/" in rest:
        return False
    return course == "X"


@pytest.fixture
async def system(make_gateway, test_env):
    catalog = TestServer(catalog_app(CatalogSettings(common=test_env.common())))
    await catalog.start_server()
    gw = await make_gateway(catalog_url=str(catalog.make_url("")).rstrip("/"))
    yield gw
    await catalog.close()


async def test_every_admin_write_route_by_role_tenant_and_course(system):
    gw = system
    await gw.tenant("acme")
    await gw.tenant("globex")
    actors = {"operator": gw.admin()}
    actors["owner"] = await member(gw, "acme", "owner@acme.test", "owner")
    actors["admin"] = await member(gw, "acme", "admin@acme.test", "admin", actors["owner"])
    actors["author"] = await member(gw, "acme", "author@acme.test", "author", actors["owner"])
    actors["viewer"] = await member(gw, "acme", "viewer@acme.test", "viewer", actors["owner"])
    actors["other-tenant-owner"] = await member(gw, "globex", "owner@globex.test", "owner")
    staff = (await (await gw.client.get(f"{ADMIN}/tenants/acme/staff", headers=gw.admin())).json())["data"]
    ids = {s["email"].split("@")[0]: s["id"] for s in staff}

    async def op(method: str, rest: str, body: Any = None) -> dict[str, Any]:
        resp = await gw.client.request(method, f"{ADMIN}/tenants/acme/{rest}", json=body, headers=gw.admin())
        assert resp.status in (200, 201), (rest, await resp.text())
        return (await resp.json())["data"]

    async def tree(slug: str) -> dict[str, int]:
        course = await op("POST", "courses", {"slug": slug, "title": slug.upper()})
        module = await op("POST", f"courses/{course['id']}/modules", {"title": "M"})
        lesson = await op("POST", f"modules/{module['id']}/lessons", {"title": "L"})
        activity = await op("POST", f"lessons/{lesson['id']}/activities", {"title": "A", "kind": "reading"})
        return {"courses": course["id"], "modules": module["id"], "lessons": lesson["id"],
                "activities": activity["id"]}

    courses = {"X": await tree("x"), "Y": await tree("y")}
    await op("PUT", f"courses/{courses['X']['courses']}/team/{ids['author']}", {"role": "editor"})

    async def fresh(course: str, resource: str) -> int:
        """A new row to delete (deleting must not take the rows the other calls use)."""
        ids_ = courses[course]
        if resource == "modules":
            return int((await op("POST", f"courses/{ids_['courses']}/modules", {"title": "D"}))["id"])
        if resource == "lessons":
            return int((await op("POST", f"modules/{ids_['modules']}/lessons", {"title": "D"}))["id"])
        return int((await op("POST", f"lessons/{ids_['lessons']}/activities", {"title": "D", "kind": "link"}))["id"])

    calls: list[tuple[str, str, str, str | None, str | None]] = []  # (method, path, rest, course, label)
    for method, rest in service_write_routes():
        prefix = rest.split("/")[0]
        if prefix in COURSE_PREFIXES:
            for course in ("X", "Y"):
                calls.append((method, rest, rest, course, None))
        else:
            calls.append((method, rest, rest, None, None))
    own = [(m, p) for m, p in gateway_write_routes(gw.app)]
    assert own, "the gateway's own write routes were found"

    wrong: list[tuple[Any, ...]] = []
    checked = 0
    for actor, headers in actors.items():
        for method, template, _rest, course, _ in calls:
            values = courses[course] if course else {}
            prefix = template.split("/")[0]

            path = template
            if "{staff_id}" in path:
                path = path.replace("{staff_id}", str(ids["viewer"]))
            if "{id}" in path:
                if method == "DELETE" and prefix in ("modules", "lessons", "activities") and course:
                    row = await fresh(course, prefix)
                else:
                    row = values.get(prefix, 1)
                path = path.replace("{id}", str(row), 1)
            path = re.sub(r"\{\w+\}", "1", path)
            body = None if method == "DELETE" else {"__matrix__": True}
            resp = await gw.client.request(method, f"{ADMIN}/tenants/acme/{path}", json=body, headers=headers)
            payload = await resp.json(content_type=None) if "json" in resp.headers.get("Content-Type", "") else {}
            code = (payload.get("error") or {}).get("code")
            refused = resp.status == 403 or (resp.status == 404 and code == "tenant_not_found")
            assert resp.status != 401 and resp.status < 500, (actor, method, path, resp.status, payload)
            if refused == expected(actor, method, template, course):
                wrong.append((actor, method, path, course, resp.status, code))
            elif (refused and actor == "author" and prefix in COURSE_PREFIXES and course == "Y"
                  and "/team/" not in template and template != "courses"):
                assert code == "not_on_course_team", (method, path, code)
            checked += 1
        for method, full in own:
            rest: str | None = None
            path = full
            if full.startswith(f"{ADMIN}/tenants/{{slug}}"):
                path = full.replace("{slug}", "acme")
                rest = full[len(f"{ADMIN}/tenants/{{slug}}"):].strip("/")
                rest = re.sub(r"\{\w+\}", "1", rest)
            path = re.sub(r"\{(\w+)\}", lambda m: "999999" if m.group(1) != "queue" else "catalog.none", path)
            body = None if method == "DELETE" else {"__matrix__": True}
            resp = await gw.client.request(method, path, json=body, headers=headers)
            payload = await resp.json(content_type=None) if "json" in resp.headers.get("Content-Type", "") else {}
            code = (payload.get("error") or {}).get("code")
            refused = resp.status == 403 or (resp.status == 404 and code == "tenant_not_found")
            assert resp.status != 401 and resp.status < 500, (actor, method, path, resp.status, payload)
            if refused == expected(actor, method, rest, None):
                wrong.append((actor, method, path, None, resp.status, code))
            checked += 1
    assert wrong == [], f"{len(wrong)} of {checked} calls wrongly allowed or refused"
    assert checked > 200


async def test_teams_are_checked_and_a_suspended_member_loses_their_places(system):
    gw = system
    await gw.tenant("acme")
    await gw.tenant("globex")
    owner = await member(gw, "acme", "owner@acme.test", "owner")
    author = await member(gw, "acme", "author@acme.test", "author", owner)
    staff = (await (await gw.client.get(f"{ADMIN}/tenants/acme/staff", headers=owner)).json())["data"]
    author_id = next(s["id"] for s in staff if s["email"] == "author@acme.test")
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/courses", json={"slug": "c", "title": "C"}, headers=owner)
    course_id = (await resp.json())["data"]["id"]
    team = f"{ADMIN}/tenants/acme/courses/{course_id}/team"
    for path, body, status, code in (
        (f"{team}/{author_id}", {"role": "boss"}, 400, "invalid_argument"),
        (f"{team}/{author_id}", {}, 400, "missing_field"),
        (f"{team}/999999", {"role": "editor"}, 400, "invalid_argument"),
        (f"{ADMIN}/tenants/acme/courses/999999/team/{author_id}", {"role": "editor"}, 404, "course_not_found"),
        (f"{ADMIN}/tenants/globex/courses/{course_id}/team/{author_id}", {"role": "editor"}, 404, "course_not_found"),
    ):
        resp = await gw.client.put(path, json=body, headers=gw.admin())
        assert resp.status == status, (path, body, await resp.text())
        assert (await resp.json())["error"]["code"] == code, (path, body)
    resp = await gw.client.put(f"{team}/{author_id}", json={"role": "lead"}, headers=owner)
    assert resp.status == 200
    assert [(m["staff_id"], m["role"]) for m in (await resp.json())["data"]] == [(author_id, "lead")]
    assert (await gw.client.post(f"{ADMIN}/tenants/acme/courses/{course_id}", json={"title": "By the author"},
                                 headers=author)).status == 200
    # Suspended: the session ends and the team place goes (through staff.updated, read-your-writes).
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/staff/{author_id}", json={"status": "suspended"},
                                headers=owner)
    assert resp.status == 200
    assert (await gw.client.get(team, headers=author)).status == 401
    assert (await (await gw.client.get(team, headers=owner)).json())["data"] == []
    resp = await gw.client.put(f"{team}/{author_id}", json={"role": "editor"}, headers=owner)
    assert resp.status == 400  # a suspended member cannot be put back on a team
    # Lifted: signed in again, the author is on no team any more.
    await gw.client.post(f"{ADMIN}/tenants/acme/staff/{author_id}", json={"status": "active"}, headers=owner)
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/sessions", json={"email": "author@acme.test",
                                                                        "password": "correct horse battery"})
    again = {"Authorization": f"Bearer {(await resp.json())['data']['token']}"}
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/courses/{course_id}", json={"title": "Again"}, headers=again)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "not_on_course_team"
