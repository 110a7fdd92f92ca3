"""Two gateway replicas sharing one database (ADR 0021): an admin UI session, its CSRF token, its flash messages
and its sign-out hold whichever replica a request lands on; so does a staff member's session on their tenant's
host."""

from __future__ import annotations

import re

import aiohttp

from tests.gateway.conftest import ADMIN_TOKEN
from tests.gateway.test_gateway_staff import PASSWORD, accept, invite


async def _form_token(http: aiohttp.ClientSession, url: str, name: str) -> str:
    page = await (await http.get(url)).text()
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def test_a_ui_session_works_on_both_replicas_for_100_requests(make_gateway):
    one, two = await make_gateway(), await make_gateway()
    bases = [str(one.client.make_url("")).rstrip("/"), str(two.client.make_url("")).rstrip("/")]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        login = await _form_token(http, bases[0] + "/admin/login", "login_token")
        resp = await http.post(bases[0] + "/admin/login", data={"login_token": login, "token": ADMIN_TOKEN},
                               allow_redirects=False)
        assert resp.status == 303
        for n in range(100):
            resp = await http.get(bases[n % 2] + "/admin", allow_redirects=False)
            assert resp.status == 200, (n, resp.status)
        # A write on replica 2 with the token replica 1 rendered; its flash message shows on replica 1.
        csrf = await _form_token(http, bases[0] + "/admin", "csrf_token")
        resp = await http.post(bases[1] + "/admin/tenants", data={"csrf_token": csrf, "slug": "shared",
                                                                  "name": "Shared", "plan": "pro"},
                               allow_redirects=False)
        assert resp.status == 303, await resp.text()
        assert "Tenant shared created." in await (await http.get(bases[0] + "/admin")).text()
        # Signed out on replica 2: signed out on replica 1 too.
        csrf = await _form_token(http, bases[1] + "/admin", "csrf_token")
        resp = await http.post(bases[1] + "/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
        assert resp.status == 303
        resp = await http.get(bases[0] + "/admin", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/admin/login")


async def test_a_staff_session_works_on_both_replicas_on_its_tenant_host(make_gateway):
    one, two = await make_gateway(), await make_gateway()
    await one.tenant("acme")
    invited = await invite(one, "acme", "ada@acme.test", "owner")
    assert (await accept(one, invited["invitation"]["url"])).status == 200
    bases = [str(one.client.make_url("")).rstrip("/"), str(two.client.make_url("")).rstrip("/")]
    tenant_host = {"Host": "acme.localhost"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page = await (await http.get(bases[1] + "/admin/login", headers=tenant_host)).text()
        assert 'name="email"' in page and "Admin token" not in page
        login = re.search(r'name="login_token" value="([^"]+)"', page)
        assert login
        resp = await http.post(bases[1] + "/admin/login", headers=tenant_host, allow_redirects=False,
                               data={"login_token": login.group(1), "email": "ada@acme.test", "password": PASSWORD})
        assert resp.status == 303, await resp.text()
        for n in range(20):
            resp = await http.get(bases[n % 2] + "/admin/staff", headers=tenant_host, allow_redirects=False)
            assert resp.status == 200, (n, resp.status)
            assert "ada@acme.test" in await resp.text()
        # The same cookie on the platform host (no tenant in Host) or another tenant's host: not signed in.
        for other in ({}, {"Host": "globex.localhost"}):
            resp = await http.get(bases[0] + "/admin/staff", headers=other, allow_redirects=False)
            assert resp.status == 303 and resp.headers["Location"].startswith("/admin/login"), other
