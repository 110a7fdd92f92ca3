"""Every route of the table × every scope set gets the right status: generated from the table itself, so a new
route is covered by construction. Also: unknown routes are 404 not_found, known paths with another method 405."""

from __future__ import annotations

import itertools
import re

from yarl import URL

from services.gateway.routes import API_TABLE, PUBLIC_ROUTES, Route

SCOPES = ("learn:read", "learn:write", "learn:cohorts:grant")
SCOPE_SETS = [frozenset(c) for n in range(1, len(SCOPES) + 1) for c in itertools.combinations(SCOPES, n)]
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def concrete(route: Route) -> str:
    """A real path for a pattern: ids become numbers, the verification id a 40-character string."""
    def fill(m: re.Match[str]) -> str:
        return "v" * 40 if m.group(1) == "vid" else "7"

    return re.sub(r"\{(\w+)\+?\}", fill, route.path)


async def test_every_route_answers_by_the_scopes_of_the_key(gw):
    await gw.tenant()
    keys = {scopes: (await gw.key(scopes=sorted(scopes)))["key"] for scopes in SCOPE_SETS}
    failures = []
    for route in PUBLIC_ROUTES:
        path = concrete(route)
        for scopes, key in keys.items():
            before = len(gw.echoes[route.upstream].seen)
            kw = {"json": {}} if route.method == "POST" else {}
            resp = await gw.api(route.method, path, key, **kw)
            expected = 200 if route.scope in scopes else 403
            reached = len(gw.echoes[route.upstream].seen) - before
            if resp.status != expected or reached != (1 if expected == 200 else 0):
                failures.append((route.method, path, sorted(scopes), resp.status, reached))
            if expected == 403 and route.method != "HEAD":  # a HEAD answer has no body
                body = await resp.json()
                if body["error"]["code"] != "insufficient_scope" or route.scope not in body["error"]["message"]:
                    failures.append((route.method, path, sorted(scopes), body))
            else:
                seen = gw.echoes[route.upstream].seen[-1]
                # (the echo upstream, an aiohttp app behind "*", reports a HEAD as GET)
                allowed = {"HEAD", "GET"} if route.method == "HEAD" else {route.method}
                if seen["path_qs"] != path or seen["method"] not in allowed:
                    failures.append((route.method, path, "forwarded as", seen["method"], seen["path_qs"]))
    assert failures == []


async def test_a_known_path_with_another_method_is_405_with_allow(gw):
    await gw.tenant()
    key = (await gw.key(scopes=list(SCOPES)))["key"]
    checked = 0
    for route in PUBLIC_ROUTES:
        path = concrete(route)
        match = API_TABLE.match(path)
        assert match is not None
        for method in ALL_METHODS:
            if method in match.methods:
                continue
            resp = await gw.api(method, path, key)
            assert resp.status == 405, (method, path, resp.status)
            body = await resp.json()
            assert body["error"]["code"] == "method_not_allowed"
            assert set(resp.headers["Allow"].split(", ")) == set(match.methods)
            checked += 1
    assert checked > len(PUBLIC_ROUTES)


async def test_a_path_not_in_the_table_is_404_not_found(gw):
    await gw.tenant()
    key = (await gw.key(scopes=list(SCOPES)))["key"]
    for path in ("/api/v1/learn/nope", "/api/v1/learn/courses/1/nope", "/api/v1/learn/courses/",
                 "/api/v1/learn//courses", "/api/v1/learn/courses/1/%2e%2e/modules", "/api/v2/learn/courses",
                 "/nothing-here"):
        resp = await gw.api("GET", URL(path, encoded=True), key)
        assert resp.status == 404, path
        body = await resp.json()
        assert body["error"]["code"] == "not_found"
        assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
    assert all(not echo.seen for echo in gw.echoes.values())
