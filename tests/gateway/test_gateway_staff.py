"""Tenant staff on the admin API (ADR 0021): invitations, links, sign-in, sessions bound to their tenant, roles,
suspension, throttling shared through the database, the audit log, mail through a local SMTP sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from aiosmtpd.controller import Controller

from shared.service import DB_KEY
from tests.gateway.conftest import Harness
from tests.support.cluster import free_port

ADMIN = "/admin/api/v1"
PASSWORD = "correct horse battery"


def _token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


async def invite(gw: Harness, slug: str, email: str, role: str, headers: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    resp = await gw.client.post(f"{ADMIN}/tenants/{slug}/staff", json={"email": email, "name": email.split("@")[0],
                                                                       "role": role},
                                headers=headers or gw.admin())
    assert resp.status == 201, await resp.text()
    return (await resp.json())["data"]


async def accept(gw: Harness, url: str, password: str = PASSWORD) -> Any:
    return await gw.client.post(f"{ADMIN}/staff-links/accept", json={"token": _token_of(url), "password": password})


async def sign_in(gw: Harness, slug: str, email: str, password: str = PASSWORD, **kw: Any) -> Any:
    return await gw.client.post(f"{ADMIN}/tenants/{slug}/sessions", json={"email": email, "password": password},
                                **kw)


async def member(gw: Harness, slug: str, email: str, role: str, by: dict[str, str] | None = None) -> dict[str, str]:
    """An active staff member signed in: the bearer headers of their session."""
    invited = await invite(gw, slug, email, role, by)
    assert (await accept(gw, invited["invitation"]["url"])).status == 200
    resp = await sign_in(gw, slug, email)
    assert resp.status == 201, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['data']['token']}"}


async def test_an_invited_member_sets_a_password_once_and_signs_in(gw):
    await gw.tenant("acme")
    invited = await invite(gw, "acme", "Ada@Example.com", "owner")
    assert invited["status"] == "invited" and invited["email"] == "ada@example.com"
    link = invited["invitation"]
    assert link["mailed"] is False and link["url"].startswith("http") and "acme.localhost" in link["url"]
    # the link's target, then a password too short, then the right one, then the same link again
    resp = await gw.client.post(f"{ADMIN}/staff-links/lookup", json={"token": _token_of(link["url"])})
    assert (await resp.json())["data"]["email"] == "ada@example.com"
    resp = await accept(gw, link["url"], "short")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_argument"
    resp = await accept(gw, link["url"])
    assert resp.status == 200 and (await resp.json())["data"]["staff"]["status"] == "active"
    resp = await accept(gw, link["url"], "another long password")
    assert resp.status == 400
    # sign-in: wrong password, unknown email, then right
    assert (await sign_in(gw, "acme", "ada@example.com", "wrong password!")).status == 401
    assert (await sign_in(gw, "acme", "nobody@example.com")).status == 401
    resp = await sign_in(gw, "acme", "ADA@example.com")
    assert resp.status == 201
    token = (await resp.json())["data"]["token"]
    listed = await gw.client.get(f"{ADMIN}/tenants/acme/staff", headers={"Authorization": f"Bearer {token}"})
    assert listed.status == 200 and [s["email"] for s in (await listed.json())["data"]] == ["ada@example.com"]
    # the token is stored only as its digest
    async with gw.app[DB_KEY].engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT id_hash FROM ui_sessions"))).scalars().all()
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    # sign-out ends it on the server
    resp = await gw.client.delete(f"{ADMIN}/tenants/acme/sessions/current",
                                  headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    again = await gw.client.get(f"{ADMIN}/tenants/acme/staff", headers={"Authorization": f"Bearer {token}"})
    assert again.status == 401


async def test_bad_staff_input_is_refused(gw):
    await gw.tenant("acme")
    await invite(gw, "acme", "ada@example.com", "owner")
    for body, code in (({"email": "ada@example.com", "name": "Again", "role": "author"}, "invalid_argument"),
                       ({"email": "not-an-email", "name": "X", "role": "author"}, "invalid_argument"),
                       ({"email": "x@example.com", "name": "X", "role": "root"}, "invalid_argument"),
                       ({"email": "x@example.com", "role": "author"}, "missing_field"),
                       ({"email": "x@example.com", "name": "X", "role": "author", "password": "x"},
                        "invalid_argument")):
        resp = await gw.client.post(f"{ADMIN}/tenants/acme/staff", json=body, headers=gw.admin())
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == code, body
    for path in (f"{ADMIN}/tenants/acme/staff/999", f"{ADMIN}/tenants/acme/staff/x"):
        resp = await gw.client.get(path, headers=gw.admin())
        assert resp.status == 404 and (await resp.json())["error"]["code"] in ("staff_not_found", "not_found")
    resp = await gw.client.post(f"{ADMIN}/staff-links/accept", json={"token": "nope", "password": PASSWORD})
    assert resp.status == 400
    assert (await gw.client.post(f"{ADMIN}/tenants/nope/staff", json={"email": "a@b.co", "name": "A",
                                                                       "role": "author"},
                                 headers=gw.admin())).status == 404


async def test_roles_decide_what_a_member_may_do(gw):
    await gw.tenant("acme")
    owner = await member(gw, "acme", "owner@acme.test", "owner")
    admin = await member(gw, "acme", "admin@acme.test", "admin", owner)
    author = await member(gw, "acme", "author@acme.test", "author", owner)
    viewer = await member(gw, "acme", "viewer@acme.test", "viewer", owner)
    key = {"name": "k", "scopes": ["learn:read"]}
    cases = [
        # (who, method, path, body, allowed?)
        (owner, "POST", "/tenants/acme/api-keys", key, True),
        (admin, "POST", "/tenants/acme/api-keys", key, True),
        (author, "POST", "/tenants/acme/api-keys", key, False),
        (viewer, "POST", "/tenants/acme/api-keys", key, False),
        (admin, "POST", "/tenants/acme/staff", {"email": "n@acme.test", "name": "N", "role": "viewer"}, False),
        (owner, "POST", "/tenants/acme", {"plan": "sovereign"}, False),
        (owner, "POST", "/tenants", {"slug": "new-one", "name": "N", "plan": "pro"}, False),
        (owner, "GET", "/tenants", None, False),
        (author, "POST", "/tenants/acme/courses/1", {"title": "T"}, True),  # the catalog checks the team
        (author, "POST", "/tenants/acme/modules/1/lessons", {"title": "T"}, True),
        (author, "POST", "/tenants/acme/courses", {"title": "T"}, False),
        (author, "PUT", "/tenants/acme/courses/1/team/3", {"role": "editor"}, False),
        (author, "POST", "/tenants/acme/cohorts", {"name": "C"}, False),
        (viewer, "POST", "/tenants/acme/courses/1", {"title": "T"}, False),
        (viewer, "DELETE", "/tenants/acme/modules/1", None, False),
        (viewer, "GET", "/tenants/acme/courses/1", None, True),
        (viewer, "GET", "/tenants/acme/staff", None, True),
        (viewer, "GET", "/tenants/acme/audit-log", None, False),
        (admin, "GET", "/tenants/acme/audit-log", None, True),
    ]
    for who, method, path, body, allowed in cases:
        before = len(gw.echoes["catalog"].seen) + len(gw.echoes["enrollment"].seen)
        resp = await gw.client.request(method, ADMIN + path, json=body, headers=who)
        if allowed:
            assert resp.status < 400, (method, path, resp.status, await resp.text())
        else:
            assert resp.status == 403, (method, path, resp.status, await resp.text())
            assert (await resp.json())["error"]["code"] == "insufficient_role"
            assert len(gw.echoes["catalog"].seen) + len(gw.echoes["enrollment"].seen) == before
    forwarded = gw.echoes["catalog"].seen[-1]["headers"]
    assert forwarded["X-Learn-Staff-Role"] == "viewer" and forwarded["X-Learn-Staff-Id"].isdigit()


async def test_a_session_is_bound_to_its_tenant(gw):
    await gw.tenant("acme")
    await gw.tenant("globex")
    acme = await member(gw, "acme", "ada@acme.test", "owner")
    globex = await member(gw, "globex", "gus@globex.test", "owner")
    for path in ("/tenants/acme", "/tenants/acme/staff", "/tenants/acme/courses", "/tenants/acme/api-keys",
                 "/tenants/acme/audit-log"):
        resp = await gw.client.get(ADMIN + path, headers=globex)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == "tenant_not_found"
        resp = await gw.client.post(ADMIN + path, json={}, headers=globex)
        assert resp.status in (403, 404), path
    # on acme's host, globex's session is refused outright, whatever the path
    resp = await gw.client.get(f"{ADMIN}/tenants/globex/staff", headers={**globex, "Host": "acme.localhost"})
    assert resp.status == 401
    resp = await gw.client.get(f"{ADMIN}/tenants/acme/staff", headers={**acme, "Host": "acme.localhost"})
    assert resp.status == 200
    # signing in to globex on acme's host
    resp = await sign_in(gw, "globex", "gus@globex.test", headers={"Host": "acme.localhost"})
    assert resp.status == 404
    # a client cannot forge the staff identity headers
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/courses/1", json={},
                                headers={**gw.admin(), "X-Learn-Staff-Role": "owner", "X-Learn-Staff-Id": "1"})
    assert "X-Learn-Staff-Role" not in gw.echoes["catalog"].seen[-1]["headers"]


async def test_suspension_ends_sessions_and_the_last_owner_stays(gw):
    await gw.tenant("acme")
    owner = await member(gw, "acme", "ada@acme.test", "owner")
    author = await member(gw, "acme", "bob@acme.test", "author", owner)
    staff = (await (await gw.client.get(f"{ADMIN}/tenants/acme/staff", headers=owner)).json())["data"]
    ids = {s["email"]: s["id"] for s in staff}
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/staff/{ids['bob@acme.test']}", json={"status": "suspended"},
                                headers=owner)
    assert resp.status == 200 and (await resp.json())["data"]["status"] == "suspended"
    assert (await gw.client.get(f"{ADMIN}/tenants/acme/staff", headers=author)).status == 401
    assert (await sign_in(gw, "acme", "bob@acme.test")).status == 401
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/staff/{ids['ada@acme.test']}", json={"role": "admin"},
                                headers=owner)
    assert resp.status == 400 and "owner" in (await resp.json())["error"]["message"]
    # a reset link works once and replaces the older ones
    await gw.client.post(f"{ADMIN}/tenants/acme/staff/{ids['bob@acme.test']}", json={"status": "active"},
                         headers=owner)
    first = (await (await gw.client.post(f"{ADMIN}/tenants/acme/staff/{ids['bob@acme.test']}/reset-password",
                                         headers=owner)).json())["data"]["link"]
    second = (await (await gw.client.post(f"{ADMIN}/tenants/acme/staff/{ids['bob@acme.test']}/reset-password",
                                          headers=owner)).json())["data"]["link"]
    assert first["purpose"] == "reset"
    assert (await accept(gw, first["url"], "a new long password")).status == 400
    assert (await accept(gw, second["url"], "a new long password")).status == 200
    assert (await sign_in(gw, "acme", "bob@acme.test")).status == 401
    assert (await sign_in(gw, "acme", "bob@acme.test", "a new long password")).status == 201


async def test_an_expired_link_is_refused(gw):
    await gw.tenant("acme")
    invited = await invite(gw, "acme", "ada@acme.test", "owner")
    db = gw.app[DB_KEY]
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE staff_links SET expires_at = now() - interval '1 second'"))
    assert (await accept(gw, invited["invitation"]["url"])).status == 400


async def test_sign_in_failures_are_counted_across_replicas(make_gateway):
    one = await make_gateway(staff_sign_in_max_failures=3)
    two = await make_gateway(staff_sign_in_max_failures=3)
    await one.tenant("acme")
    invited = await invite(one, "acme", "ada@acme.test", "owner")
    assert (await accept(one, invited["invitation"]["url"])).status == 200
    for gw in (one, two, one):
        assert (await sign_in(gw, "acme", "ada@acme.test", "wrong password!")).status == 401
    resp = await sign_in(two, "acme", "ada@acme.test")  # even the right password, on the other replica
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    # a session made on one replica works on the other
    other = await make_gateway()
    owner_b = await member(other, "acme", "eve@acme.test", "viewer")
    assert (await one.client.get(f"{ADMIN}/tenants/acme/staff", headers=owner_b)).status == 200
    assert (await two.client.get(f"{ADMIN}/tenants/acme/staff", headers=owner_b)).status == 200


async def test_writes_are_in_the_audit_log_and_exported(gw, events):
    await gw.tenant("acme")
    owner = await member(gw, "acme", "ada@acme.test", "owner")
    await gw.client.post(f"{ADMIN}/tenants/acme/api-keys", json={"name": "k", "scopes": ["learn:read"]},
                         headers=owner)
    await gw.client.post(f"{ADMIN}/tenants/acme/courses/7", json={"title": "T"}, headers=owner)
    resp = await gw.client.post(f"{ADMIN}/tenants/acme/api-keys", json={"name": "k", "scopes": []}, headers=owner)
    assert resp.status == 400  # refused writes change nothing and are not logged
    log = (await (await gw.client.get(f"{ADMIN}/tenants/acme/audit-log", headers=owner)).json())["data"]
    by_path = {(e["method"], e["path"]): e for e in log}
    key = by_path[("POST", "/admin/api/v1/tenants/acme/api-keys")]
    assert key["actor"] == "staff" and key["actor_email"] == "ada@acme.test" and key["before_digest"] is None
    assert len(key["after_digest"]) == 64
    course = by_path[("POST", "/admin/api/v1/tenants/acme/courses/7")]
    assert course["before_digest"] and course["after_digest"]
    invited = by_path[("POST", "/admin/api/v1/tenants/acme/staff")]
    assert invited["actor"] == "operator"
    assert len(log) == 3
    recorded = await events.wait_for("audit.recorded", 3)
    assert {e.data["path"] for e in recorded} >= {key["path"], course["path"]}
    assert (await events.wait_for("staff.invited"))[0].data["email"] == "ada@acme.test"


class Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


async def test_with_smtp_the_link_is_mailed_not_returned(make_gateway):
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        gw = await make_gateway(smtp_url=f"smtp://127.0.0.1:{port}")
        await gw.tenant("acme")
        invited = await invite(gw, "acme", "ada@acme.test", "owner")
        assert invited["invitation"]["mailed"] is True and "url" not in invited["invitation"]
        assert len(sink.messages) == 1 and sink.messages[0].rcpt_tos == ["ada@acme.test"]
        body = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default).get_content()
        url = next(line for line in body.splitlines() if "/admin/accept?token=" in line).strip()
        assert (await accept(gw, url)).status == 200
        assert (await sign_in(gw, "acme", "ada@acme.test")).status == 201
    finally:
        await asyncio.to_thread(controller.stop)


async def test_learnctl_staff_mirrors_the_admin_api(gw, capsys):
    from tests.gateway.test_gateway_cli_dlq import ctl

    await gw.tenant("acme")
    code, out, _ = await ctl(gw, capsys, "staff", "invite", "acme", "ada@acme.test", "--name", "Ada", "--role",
                             "owner")
    assert code == 0 and "Single-use link" in out
    url = out.strip().splitlines()[-1]
    assert (await accept(gw, url)).status == 200
    code, out, _ = await ctl(gw, capsys, "--json", "staff", "list", "acme")
    staff_id = json.loads(out)[0]["id"]
    assert json.loads(out)[0]["status"] == "active"
    code, out, err = await ctl(gw, capsys, "staff", "update", "acme", str(staff_id), "--role", "admin")
    assert code != 0 and "owner" in err  # the last owner stays an owner
    code, out, _ = await ctl(gw, capsys, "staff", "reset-password", "acme", str(staff_id))
    assert code == 0 and "/admin/accept?token=" in out
    code, out, _ = await ctl(gw, capsys, "audit", "list", "acme")
    assert code == 0 and "/admin/api/v1/tenants/acme/staff" in out
    code, out, _ = await ctl(gw, capsys, "staff", "suspend", "acme", str(staff_id))
    assert code != 0  # the last owner cannot be suspended either
