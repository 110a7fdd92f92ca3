"""The content origin (issue 15): the player, package files and runtime on a listener of their own, nothing else
there, and none of them on the API/admin origin. The gateway runs for real (PostgreSQL, RabbitMQ) in front of
echo services that stand for catalog … scorm and answer with ``Set-Cookie``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.config import GatewaySettings
from services.gateway.content import create_content_app, host_pattern
from tests.gateway.conftest import ADMIN_TOKEN, Echo

LEARNER_PATHS = [("GET", "/learn/player/tok123"), ("GET", "/learn/content/tok123/res/index.html?x=1"),
                 ("POST", "/learn/runtime/tok123/commit"), ("POST", "/learn/runtime/tok123/finish"),
                 ("GET", "/learn/static/player.js")]


@pytest.fixture
async def content(test_env, echo_servers) -> AsyncIterator[Any]:
    clients: list[TestClient] = []

    async def make(**common: Any) -> tuple[TestClient, Echo]:
        echo, server = echo_servers["scorm"]
        settings = GatewaySettings(common=test_env.common(public_url="http://admin.learn.test", **common),
                                   admin_token=ADMIN_TOKEN, scorm_url=str(server.make_url("")).rstrip("/"))
        client = TestClient(TestServer(create_content_app(settings)))
        await client.start_server()
        clients.append(client)
        return client, echo

    yield make
    for client in clients:
        await client.close()


async def test_learner_paths_are_refused_on_the_api_and_admin_origin(gw) -> None:
    for method, path in LEARNER_PATHS:
        resp = await gw.client.request(method, path, json={"cmi": {}} if method == "POST" else None)
        assert resp.status == 404, path
        body = await resp.json()
        assert body["error"]["code"] == "not_found" and "content origin" in body["error"]["message"], path
    assert gw.echoes["scorm"].seen == []  # nothing was forwarded


async def test_learner_paths_go_to_scorm_as_they_are_on_the_content_origin(content) -> None:
    client, echo = await content()
    for method, path in LEARNER_PATHS:
        resp = await client.request(method, path, json={"cmi": {}} if method == "POST" else None,
                                    headers={"Cookie": "learn_admin_session=stolen", "Authorization": "Bearer x",
                                             "X-Learn-Tenant-Id": "1", "X-Learn-Content-Tenant": "acme"})
        assert resp.status == 200, path
        seen = (await resp.json())["data"]
        assert (seen["service"], seen["method"], seen["path_qs"]) == ("scorm", method, path)
        # The runtime token in the path is the only credential: no cookie, bearer or identity header gets through.
        assert "Cookie" not in seen["headers"] and "Authorization" not in seen["headers"]
        assert seen["headers"]["X-Learn-Internal"]
        assert not any(h.startswith("X-Learn-Tenant") or h == "X-Learn-Content-Tenant" for h in seen["headers"])
        # No cookie is ever set on the content origin; every answer is nosniff and framed by the admin at most.
        assert "Set-Cookie" not in resp.headers, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "frame-ancestors 'self' http://admin.learn.test"
    assert len(echo.seen) == len(LEARNER_PATHS)


@pytest.mark.parametrize("path", ["/admin", "/admin/login", "/admin/api-keys?tenant=b", "/admin/api/v1/tenants",
                                  "/admin/api/v1/tenants/b/api-keys", "/api/v1/learn/courses",
                                  "/api/v1/learn/openapi.json", "/verify/" + "v" * 40, "/metrics", "/readyz",
                                  "/learn/nowhere/x", "/"])
async def test_nothing_but_learner_paths_is_served_on_the_content_origin(content, path: str) -> None:
    client, echo = await content()
    for method in ("GET", "POST"):
        resp = await client.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert resp.status == 404, (method, path)
        assert (await resp.json())["error"]["code"] == "not_found"
        assert "Set-Cookie" not in resp.headers and resp.headers["X-Content-Type-Options"] == "nosniff"
    assert echo.seen == []


async def test_a_wrong_method_on_a_learner_path_is_a_405_envelope(content) -> None:
    client, _ = await content()
    resp = await client.post("/learn/player/tok123")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_with_one_content_origin_per_tenant_the_host_names_the_tenant(content) -> None:
    client, echo = await content(content_url="https://{tenant}.content.learn.test")
    resp = await client.get("/learn/player/tok123", headers={"Host": "acme.content.learn.test"})
    assert resp.status == 200
    assert (await resp.json())["data"]["headers"]["X-Learn-Content-Tenant"] == "acme"
    for host in ("content.learn.test", "acme.content.learn.test.evil", "a.b.content.learn.test", "admin.learn.test",
                 "-x.content.learn.test"):
        resp = await client.get("/learn/player/tok123", headers={"Host": host})
        assert resp.status == 404, host
    assert len(echo.seen) == 1


def test_the_tenant_host_pattern() -> None:
    pattern = host_pattern("https://{tenant}.content.learn.example.com")
    assert pattern is not None
    found = pattern.fullmatch("acme-2.content.learn.example.com:443")
    assert found is not None and found.group(1) == "acme-2"
    assert pattern.fullmatch("acmeXcontent.learn.example.com") is None  # the dots are literal
    assert host_pattern("https://content.learn.example.com") is None


def test_the_content_origin_must_not_be_the_api_origin() -> None:
    from pydantic import ValidationError

    from shared.config import CommonSettings

    for content_url in ("http://localhost:8080", "HTTP://LOCALHOST:8080/learn", "not a url"):
        with pytest.raises(ValidationError):
            CommonSettings(public_url="http://localhost:8080", content_url=content_url)
    with pytest.raises(ValidationError):
        CommonSettings(content_url="https://content.example.com/{tenant}")  # the tenant goes in the host
