"""The admin UI's safety rules over HTTP, against the real gateway (sign-in, sessions, CSRF, headers)."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest

from services.gateway.ui.security import CSP, LOGIN_COOKIE, SESSION_COOKIE, with_content_origin

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_pages_ask_for_sign_in_and_come_back_after_it(ui_gateway) -> None:
    resp = await ui_gateway.client.get("/admin/api-keys?tenant=acme", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/admin/login?next=%2Fadmin%2Fapi-keys%3Ftenant%3Dacme"


async def test_sign_in_with_the_admin_token_opens_the_tenants_page(ui_gateway) -> None:
    await ui_gateway.sign_in()
    resp = await ui_gateway.client.get("/admin")
    assert resp.status == 200
    assert "<h1>Tenants</h1>" in await resp.text()


async def test_a_wrong_token_is_refused_without_a_session(ui_gateway) -> None:
    page = await (await ui_gateway.client.get("/admin/login")).text()
    login_token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = await ui_gateway.client.post("/admin/login", data={"login_token": login_token, "token": "guess"},
                                        allow_redirects=False)
    assert resp.status == 401
    assert "That is not the admin token." in await resp.text()
    assert SESSION_COOKIE not in resp.cookies


async def test_a_sign_in_post_without_the_forms_token_is_refused(ui_gateway) -> None:
    await ui_gateway.client.get("/admin/login")
    resp = await ui_gateway.client.post("/admin/login", data={"token": ui_gateway.admin_token},
                                        allow_redirects=False)
    assert resp.status == 403
    assert SESSION_COOKIE not in resp.cookies


async def test_failed_sign_ins_are_limited_per_client_even_for_the_right_token_afterwards(ui_gateway) -> None:
    for _ in range(3):  # LEARN_GATEWAY_UI_SIGN_IN_MAX_FAILURES=3 in the fixture
        page = await (await ui_gateway.client.get("/admin/login")).text()
        login_token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        resp = await ui_gateway.client.post("/admin/login", data={"login_token": login_token, "token": "guess"})
        assert resp.status == 401
    page = await (await ui_gateway.client.get("/admin/login")).text()
    login_token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = await ui_gateway.client.post("/admin/login", data={"login_token": login_token,
                                                              "token": ui_gateway.admin_token},
                                        allow_redirects=False)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in await resp.text()
    assert SESSION_COOKIE not in resp.cookies


async def test_the_session_cookie_is_httponly_samesite_strict_and_scoped_to_the_ui(ui_gateway) -> None:
    page = await (await ui_gateway.client.get("/admin/login")).text()
    login_token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = await ui_gateway.client.post("/admin/login", data={"login_token": login_token,
                                                              "token": ui_gateway.admin_token},
                                        allow_redirects=False)
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/admin"
    assert not cookie["secure"]  # plain HTTP here: a Secure cookie would never come back
    assert len(cookie.value) >= 40


async def test_the_session_cookie_is_secure_behind_an_https_proxy(ui_gateway) -> None:
    https = {"X-Forwarded-Proto": "https"}
    form = await ui_gateway.client.get("/admin/login", headers=https)
    assert form.cookies[LOGIN_COOKIE]["secure"] is True
    login_token = re.search(r'name="login_token" value="([^"]+)"', await form.text()).group(1)  # type: ignore[union-attr]
    # The client would keep a Secure cookie off plain HTTP: hand it back as a browser behind TLS would.
    resp = await ui_gateway.client.post("/admin/login", headers=https, allow_redirects=False,
                                        cookies={LOGIN_COOKIE: form.cookies[LOGIN_COOKIE].value},
                                        data={"login_token": login_token, "token": ui_gateway.admin_token})
    assert resp.status == 303
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["secure"] is True and cookie["httponly"] is True and cookie["samesite"] == "Strict"


async def test_the_sign_in_forms_cookie_has_the_same_flags(ui_gateway) -> None:
    resp = await ui_gateway.client.get("/admin/login")
    cookie = resp.cookies[LOGIN_COOKIE]
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict"


async def test_a_post_without_a_csrf_token_is_refused_and_changes_nothing(ui_gateway) -> None:
    await ui_gateway.sign_in()
    resp = await ui_gateway.client.post("/admin/tenants", data={"slug": "forged", "name": "Forged", "plan": "pro"})
    assert resp.status == 403
    assert "did not come from this site" in await resp.text()
    status, _ = await ui_gateway.admin("GET", "/tenants/forged")
    assert status == 404  # (no test creates it)


async def test_a_post_with_a_wrong_csrf_token_is_refused(ui_gateway) -> None:
    await ui_gateway.sign_in()
    resp = await ui_gateway.client.post("/admin/tenants", data={"csrf_token": "x" * 43, "slug": "forged",
                                                                "name": "Forged", "plan": "pro"})
    assert resp.status == 403


async def test_a_post_with_the_sessions_csrf_token_goes_through(ui_gateway) -> None:
    csrf = await ui_gateway.sign_in()
    slug = f"made-{secrets.token_hex(3)}"
    resp = await ui_gateway.client.post("/admin/tenants", allow_redirects=False,
                                        data={"csrf_token": csrf, "slug": slug, "name": "Made", "plan": "pro"})
    assert resp.status == 303
    status, body = await ui_gateway.admin("GET", f"/tenants/{slug}")
    assert status == 200 and body["data"]["name"] == "Made"


async def test_sign_out_ends_the_session_on_the_server(ui_gateway) -> None:
    csrf = await ui_gateway.sign_in()
    session_id = ui_gateway.session_id()
    resp = await ui_gateway.client.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/login?signed_out=1"
    # Replaying the old cookie does not work: the session is gone, not just the cookie.
    resp = await ui_gateway.client.get("/admin", cookies={SESSION_COOKIE: session_id}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/admin/login")


async def test_sessions_expire(ui_gateway) -> None:
    ui_gateway.ui.sessions.ttl = 2.0
    await ui_gateway.sign_in()
    assert (await ui_gateway.client.get("/admin", allow_redirects=False)).status == 200
    await asyncio.sleep(2.1)
    resp = await ui_gateway.client.get("/admin", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/admin/login")


async def test_every_page_sends_the_content_security_policy_and_friends(ui_gateway) -> None:
    await ui_gateway.client.get("/admin/login")
    await ui_gateway.sign_in()
    slug = await ui_gateway.tenant()
    static = re.search(r'href="(/admin/static/admin\.css\?v=\w+)"',
                       await (await ui_gateway.client.get("/admin")).text()).group(1)  # type: ignore[union-attr]
    pages = with_content_origin(CSP, ui_gateway.ui.content_origin)
    assert "form-action 'self' http://localhost:8085;" in pages  # a SCORM preview opens on the content origin
    for path in ("/admin", f"/admin/api-keys?tenant={slug}", "/admin/logout", "/admin/no-such-page", "/admin/login",
                 static):
        resp = await ui_gateway.client.get(path, allow_redirects=False)
        assert resp.headers["Content-Security-Policy"] == (CSP if path == static else pages), path
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], path
        assert resp.headers["X-Frame-Options"] == "DENY", path
        assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Referrer-Policy"] == "same-origin", path
        if path != static:
            assert resp.headers["Cache-Control"] == "no-store", path
    assert "script-src 'self';" in CSP and "'unsafe-inline'" not in CSP


async def test_pages_have_no_inline_script_or_style(ui_gateway) -> None:
    await ui_gateway.sign_in()
    slug = await ui_gateway.tenant()
    for path in ("/admin", f"/admin/api-keys?tenant={slug}", "/admin/login"):
        html = await (await ui_gateway.client.get(path)).text()
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert " style=" not in html and "<style" not in html and " on" + "click=" not in html, path


async def test_hostile_tenant_names_are_shown_as_text(ui_gateway) -> None:
    await ui_gateway.sign_in()
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    slug = await ui_gateway.tenant("evil", hostile)
    html = await (await ui_gateway.client.get(f"/admin/api-keys?tenant={slug}")).text()
    assert hostile not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html


async def test_the_admin_api_still_answers_in_json_beside_the_ui(ui_gateway) -> None:
    await ui_gateway.sign_in()  # a UI session is not an admin API credential
    resp = await ui_gateway.client.get("/admin/api/v1/tenants")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_api_key"
    status, body = await ui_gateway.admin("GET", "/no-such-thing")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_the_plain_key_is_shown_once_and_never_cached(ui_gateway) -> None:
    csrf = await ui_gateway.sign_in()
    slug = await ui_gateway.tenant()
    resp = await ui_gateway.client.post(f"/admin/api-keys?tenant={slug}", data={
        "csrf_token": csrf, "name": "shop", "scopes": "learn:read", "mode": "live"})
    html = await resp.text()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    plain = re.search(r'value="(mc_live_[A-Za-z0-9_-]{40,})"', html).group(1)  # type: ignore[union-attr]
    assert "You will not see it again" in html
    listing = await (await ui_gateway.client.get(f"/admin/api-keys?tenant={slug}")).text()
    assert plain not in listing and plain[:12] in listing


async def test_the_webhook_pages_writes_need_the_csrf_token(ui_gateway) -> None:
    """Create, change, test, rotate and replay on the webhooks pages: refused without the session's token, before
    anything reaches the admin API (this gateway has no webhooks service behind it: a call would answer 503)."""
    await ui_gateway.sign_in()
    slug = await ui_gateway.tenant()
    for path in ("/admin/learn/webhooks", "/admin/learn/webhooks/1", "/admin/learn/webhooks/1/test",
                 "/admin/learn/webhooks/1/rotate-secret", "/admin/learn/webhooks/1/messages/1/replay"):
        for data in ({"url": "https://hooks.example.com/x"}, {"csrf_token": "x" * 43}):
            resp = await ui_gateway.client.post(f"{path}?tenant={slug}", data=data, allow_redirects=False)
            assert resp.status == 403, path
            assert "did not come from this site" in await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
