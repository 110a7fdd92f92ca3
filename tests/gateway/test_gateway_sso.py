"""Staff single sign-on per tenant (ADR 0021): OIDC authorization code + PKCE against a local provider stub.

The stub publishes discovery metadata and its keys, answers the authorization request for whoever
``stub.user`` is, checks the PKCE verifier at the token endpoint (S256) and signs an RS256 ID token.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.gateway.test_gateway_staff import accept, invite, member

ADMIN = "/admin/api/v1"
HOST = {"Host": "acme.localhost"}


class Provider:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.user = "ada@acme.test"
        self.codes: dict[str, dict[str, Any]] = {}
        self.issuer = ""
        self.tamper: str | None = None

    async def discovery(self, _r: web.Request) -> web.Response:
        return web.json_response({"issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
                                  "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks"})

    async def jwks(self, _r: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        assert q["response_type"] == "code" and q["code_challenge_method"] == "S256" and "openid" in q["scope"]
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"], "redirect_uri": q["redirect_uri"],
                            "client_id": q["client_id"]}
        return web.Response(status=302, headers={"Location": q["redirect_uri"] + "?" + urlencode(
            {"code": code, "state": q["state"]})})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self.codes.pop(str(form["code"]), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if grant is None or challenge != grant["challenge"] or form["redirect_uri"] != grant["redirect_uri"] \
                or form["client_secret"] != "s3cret":
            return web.json_response({"error": "invalid_grant"}, status=400)
        claims = {"iss": self.issuer, "aud": grant["client_id"], "sub": "u-" + self.user, "email": self.user,
                  "email_verified": True, "nonce": grant["nonce"], "iat": int(time.time()),
                  "exp": int(time.time()) + 300}
        if self.tamper == "nonce":
            claims["nonce"] = "another"
        if self.tamper == "aud":
            claims["aud"] = "someone-else"
        signing = self.key if self.tamper != "key" else RSAKey.generate_key(2048, parameters={"kid": "k1"})
        return web.json_response({"access_token": "x", "token_type": "Bearer", "id_token": jwt.encode(
            {"alg": "RS256", "kid": "k1"}, claims, signing)})


@pytest.fixture
async def provider():
    stub = Provider()
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", stub.discovery)
    app.router.add_get("/jwks", stub.jwks)
    app.router.add_get("/authorize", stub.authorize)
    app.router.add_post("/token", stub.token)
    server = TestServer(app)
    await server.start_server()
    stub.issuer = str(server.make_url("")).rstrip("/")
    yield stub
    await server.close()


async def sso_sign_in(gw: Any, http: aiohttp.ClientSession) -> aiohttp.ClientResponse:
    """Start on the tenant host, follow the provider, come back: the callback's answer."""
    base = str(gw.client.make_url("")).rstrip("/")
    resp = await http.get(base + "/admin/sso/start", headers=HOST, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    resp = await http.get(resp.headers["Location"], allow_redirects=False)
    assert resp.status == 302
    back = urlsplit(resp.headers["Location"])
    assert back.netloc == "acme.localhost"  # the redirect URI is on the tenant host
    return await http.get(f"{base}{back.path}?{back.query}", headers=HOST, allow_redirects=False)


async def test_a_staff_member_signs_in_with_the_tenants_provider(gw, provider):
    await gw.tenant("acme")
    owner = await member(gw, "acme", "olga@acme.test", "owner")
    invited = await invite(gw, "acme", "ada@acme.test", "author", owner)
    assert (await accept(gw, invited["invitation"]["url"])).status == 200
    # Only an owner configures it; the secret is never shown again.
    body = {"issuer": provider.issuer, "client_id": "learn-acme", "client_secret": "s3cret"}
    admin = await member(gw, "acme", "adam@acme.test", "admin", owner)
    assert (await gw.client.put(f"{ADMIN}/tenants/acme/sso", json=body, headers=admin)).status == 403
    resp = await gw.client.put(f"{ADMIN}/tenants/acme/sso", json=body, headers=owner)
    assert resp.status == 200
    assert (await resp.json())["data"]["sso"] == {"issuer": provider.issuer, "client_id": "learn-acme",
                                                  "has_client_secret": True}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page = await (await http.get(str(gw.client.make_url("/admin/login")), headers=HOST)).text()
        assert "Sign in with single sign-on" in page
        resp = await sso_sign_in(gw, http)
        assert resp.status == 303 and resp.headers["Location"] == "/admin/learn/courses", await resp.text()
        staff = await http.get(str(gw.client.make_url("/admin/staff")), headers=HOST, allow_redirects=False)
        assert staff.status == 200 and "ada@acme.test" in await staff.text()
        assert ">author<" in await staff.text()


@pytest.mark.parametrize("tamper", ["nonce", "aud", "key", "state", "unknown-user", "no-cookie"])
async def test_a_forged_or_foreign_answer_signs_in_nobody(gw, provider, tamper):
    await gw.tenant("acme")
    invited = await invite(gw, "acme", "ada@acme.test", "owner")
    assert (await accept(gw, invited["invitation"]["url"])).status == 200
    resp = await gw.client.put(f"{ADMIN}/tenants/acme/sso", headers=gw.admin(), json={
        "issuer": provider.issuer, "client_id": "learn-acme", "client_secret": "s3cret"})
    assert resp.status == 200
    provider.tamper = tamper
    if tamper == "unknown-user":
        provider.user = "mallory@acme.test"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        base = str(gw.client.make_url("")).rstrip("/")
        resp = await http.get(base + "/admin/sso/start", headers=HOST, allow_redirects=False)
        resp = await http.get(resp.headers["Location"], allow_redirects=False)
        back = urlsplit(resp.headers["Location"])
        query = parse_qs(back.query)
        if tamper == "state":
            query["state"] = ["forged"]
        if tamper == "no-cookie":
            http.cookie_jar.clear()
        resp = await http.get(f"{base}{back.path}?{urlencode({k: v[0] for k, v in query.items()})}",
                              headers=HOST, allow_redirects=False)
        assert resp.status in (400, 401, 403), (tamper, resp.status)
        after = await http.get(base + "/admin/staff", headers=HOST, allow_redirects=False)
        assert after.status == 303 and after.headers["Location"].startswith("/admin/login")


async def test_without_configuration_there_is_no_sso(gw):
    await gw.tenant("acme")
    resp = await gw.client.get("/admin/sso/start", headers=HOST, allow_redirects=False)
    assert resp.status == 404
    page = await (await gw.client.get("/admin/login", headers=HOST)).text()
    assert "single sign-on" not in page
    resp = await gw.client.put(f"{ADMIN}/tenants/acme/sso", headers=gw.admin(),
                               json={"issuer": "ftp://x", "client_id": "c"})
    assert resp.status == 400
