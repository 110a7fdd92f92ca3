"""Hostile input through the gateway in front of the real services (issue 15, "Medium and low"): every route.

- A body nested 5,000 deep is ``400 invalid_argument`` on every JSON write route (public, admin, runtime), and
  never a 500 with a traceback.
- Ids, ``limit`` and integer filters take ASCII digits only: a superscript (``²``) or another script's digits
  (``١``) are a missing id on a path (the contract's rule for an id that matches nothing: 404 with the
  resource's code) and ``400 invalid_argument`` in a query.
- What aiohttp's own parser refuses (a request line over 8,190 bytes, a duplicate Host, a bad header) is answered
  in the JSON error envelope, with nothing of the input echoed, by the gateway and by every service.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.catalog.app import create_app as catalog_app
from services.catalog.config import CatalogSettings
from services.certificates.app import create_app as certificates_app
from services.certificates.config import CertificatesSettings
from services.enrollment.app import create_app as enrollment_app
from services.enrollment.config import EnrollmentSettings
from services.gateway.admin import ADMIN
from services.gateway.app import create_app as gateway_app
from services.gateway.config import GatewaySettings
from services.gateway.content import create_content_app
from services.gateway.routes import API_PREFIX, PASS_THROUGH_ROUTES, PUBLIC_ROUTES
from services.scorm.app import create_app as scorm_app
from services.scorm.config import ScormSettings
from shared.http import MAX_JSON_DEPTH
from tests.support.env import TestEnv
from tests.support.infra import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = "hostile-admin-token"
SERVICES: dict[str, tuple[Any, Any]] = {
    "catalog": (CatalogSettings, catalog_app),
    "enrollment": (EnrollmentSettings, enrollment_app),
    "certificates": (CertificatesSettings, certificates_app),
    "scorm": (ScormSettings, scorm_app),
}
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FAKE_TOKEN = "r1.1.1.9999999999.AAAAAAAAAAAAAAAAAAAAAA"
DEEP = b"[" * 5000 + b"]" * 5000
BODILESS_ACTIONS = {"publish", "unpublish", "archive", "regenerate-pdf"}  # refuse any body without parsing it


@dataclass
class System:
    gateway: TestClient
    content: TestClient  # the gateway's content-origin listener (/learn/...)
    services: dict[str, TestServer]
    apps: dict[str, web.Application]
    key: str = ""
    ids: dict[str, int] = field(default_factory=dict)
    runtime_token: str = FAKE_TOKEN  # a genuine launch's, once the world is built (a bad one is refused first)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def call(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> tuple[int, str, Any]:
        client = self.content if path.startswith("/learn/") else self.gateway
        resp = await client.request(method, path, headers=headers, **kw)
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" and text else text  # HEAD: none
        return resp.status, resp.content_type, body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(postgres_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[System]:
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp_path_factory.mktemp("hostile"))
    async with AsyncExitStack() as stack:
        stack.push_async_callback(env.cleanup)
        servers: dict[str, TestServer] = {}
        apps: dict[str, web.Application] = {}
        urls: dict[str, Any] = {}
        for name, (settings_cls, factory) in SERVICES.items():
            app = factory(settings_cls(common=env.common()))
            server = TestServer(app)
            await server.start_server()
            stack.push_async_callback(server.close)
            servers[name], apps[name] = server, app
            urls[f"{name}_url"] = str(server.make_url("")).rstrip("/")
        gateway_settings = GatewaySettings(
            common=env.common(), admin_token=ADMIN_TOKEN, access_log=False, rate_limit_per_second=100000.0,
            rate_limit_burst=100000, **urls)
        gateway = TestClient(TestServer(gateway_app(gateway_settings)))
        await gateway.start_server()
        stack.push_async_callback(gateway.close)
        content = TestClient(TestServer(create_content_app(gateway_settings)))
        await content.start_server()
        stack.push_async_callback(content.close)
        system = System(gateway, content, servers, apps)
        await _world(system)
        yield system


async def _world(s: System) -> None:
    """Tenant ``acme`` with a key, a user and a published course with one reading activity; user 7 enrolled."""
    status, _, body = await s.call("POST", ADMIN + "/tenants", s.admin,
                                   json={"slug": "acme", "name": "Acme", "plan": "pro"})
    assert status == 201, body
    status, _, body = await s.call("POST", ADMIN + "/tenants/acme/api-keys", s.admin, json={
        "name": "all", "scopes": ["learn:read", "learn:write", "learn:cohorts:grant"]})
    assert status == 201, body
    s.key = body["data"]["key"]
    status, _, body = await s.call("PUT", ADMIN + "/tenants/acme/users/7", s.admin,
                                   json={"name": "Ada", "email": "ada@example.com"})
    assert status in (200, 201), body
    status, _, course = await s.call("POST", API_PREFIX + "/courses", s.auth, json={"slug": "c", "title": "C"})
    assert status == 201, course
    cid = course["data"]["id"]
    status, _, module = await s.call("POST", f"{ADMIN}/tenants/acme/courses/{cid}/modules", s.admin,
                                     json={"title": "M"})
    assert status == 201, module
    status, _, lesson = await s.call("POST", f"{ADMIN}/tenants/acme/modules/{module['data']['id']}/lessons",
                                     s.admin, json={"title": "L"})
    assert status == 201, lesson
    status, _, activity = await s.call("POST", f"{ADMIN}/tenants/acme/lessons/{lesson['data']['id']}/activities",
                                       s.admin, json={"title": "Read", "kind": "reading", "required": True})
    assert status == 201, activity
    status, _, body = await s.call("POST", f"{API_PREFIX}/courses/{cid}/publish", s.auth)
    assert status == 200, body

    async def enrolled() -> dict[str, Any] | None:  # the enrollment service hears of the course and user by events
        status, _, body = await s.call("POST", API_PREFIX + "/enrollments", s.auth,
                                       json={"user_id": 7, "course_id": cid})
        return body["data"] if status in (200, 201) else None

    enrollment = await wait_until(enrolled, timeout=30, interval=0.2, message="user 7 enrolled")
    s.ids = {"courses": cid, "modules": module["data"]["id"], "lessons": lesson["data"]["id"],
             "activities": activity["data"]["id"], "enrollments": enrollment["id"]}

    async def launched() -> str | None:  # the scorm service hears of the enrollment by an event
        status, _, body = await s.call("POST", f"{API_PREFIX}/enrollments/{enrollment['id']}/launches", s.auth,
                                       json={"activity_id": activity["data"]["id"]})
        return body["data"]["runtime_token"] if status == 201 else None

    s.runtime_token = await wait_until(launched, timeout=30, interval=0.2, message="the reading launched")


def _concrete(path: str, value: str) -> str:
    return re.sub(r"\{(\w+)\+?\}", lambda m: FAKE_TOKEN if m.group(1) == "token" else value, path)


def _json_write_routes(s: System) -> list[tuple[str, str]]:
    """(method, gateway path) of every route that takes a JSON body: the public table's, the runtime's, the
    gateway's own admin writes, and every service admin write the gateway forwards (read off the services'
    routers, so a route added later is covered without editing this test)."""
    routes = [(r.method, _concrete(r.path, "1").replace(FAKE_TOKEN, s.runtime_token))
              for r in (*PUBLIC_ROUTES, *PASS_THROUGH_ROUTES) if r.body and not r.upload]  # uploads: zip bodies
    routes += [("POST", ADMIN + "/tenants"), ("POST", ADMIN + "/tenants/acme"),
               ("POST", ADMIN + "/tenants/acme/api-keys"), ("PUT", ADMIN + "/tenants/acme/users/7")]
    for app in s.apps.values():
        for route in app.router.routes():
            info = route.resource.canonical if route.resource is not None else ""
            if route.method in ("POST", "PUT", "PATCH") and info.startswith("/admin/v1/"):
                rest = info.removeprefix("/admin/v1/")
                if rest.startswith("scorm-packages") and rest.count("/") == 0:
                    continue  # the upload: a zip body, not JSON
                if rest.rsplit("/", 1)[-1] in BODILESS_ACTIONS:
                    continue
                routes.append((route.method, _concrete(f"{ADMIN}/tenants/acme/{rest}", "1")))
    return sorted(set(routes))


async def test_a_body_nested_5000_deep_is_invalid_argument_on_every_json_write_route(system: System) -> None:
    routes = _json_write_routes(system)
    assert len(routes) >= 23, routes  # the review counted 23 JSON write routes
    answers = {}
    for method, path in routes:
        headers = system.admin if path.startswith(ADMIN) else system.auth
        status, ctype, body = await system.call(method, path, {**headers, "Content-Type": "application/json"},
                                                data=DEEP)
        answers[(method, path)] = (status, body)
        assert status < 500 and ctype == "application/json", (method, path, status, body)
    # The runtime's own reader refuses a body that is not an object at its first byte, before any depth.
    depth_refusals = {k for k, (status, body) in answers.items()
                      if status == 400 and body["error"]["code"] == "invalid_argument"
                      and (f"more than {MAX_JSON_DEPTH} levels" in body["error"]["message"]
                           or (k[1].startswith("/learn/runtime/") and "JSON object" in body["error"]["message"]))}
    assert set(answers) == depth_refusals, {k: v for k, v in answers.items() if k not in depth_refusals}


async def test_nesting_just_past_the_limit_is_refused_and_at_the_limit_it_is_only_validated(system: System) -> None:
    path = API_PREFIX + "/courses"
    headers = {**system.auth, "Content-Type": "application/json"}

    def nested(depth: int) -> bytes:  # the object is level 1, the metadata value's arrays the rest
        return b'{"slug":"n","title":"N","meta":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    status, _, body = await system.call("POST", path, headers, data=nested(MAX_JSON_DEPTH + 1))
    assert status == 400 and "levels" in body["error"]["message"], body
    status, _, body = await system.call("POST", path, headers, data=nested(MAX_JSON_DEPTH))
    assert status == 400 and body["error"]["message"] == "Unknown field 'meta'.", body  # got past the depth check


async def test_unicode_digits_are_not_ids_anywhere_on_a_path(system: System) -> None:
    s = system
    for resource, real in s.ids.items():
        if resource not in ("courses", "enrollments"):
            continue
        status, _, body = await s.call("GET", f"{API_PREFIX}/{resource}/{real}", s.auth)
        assert status == 200, body
        arabic = str(real).translate(ARABIC_INDIC)  # int() reads it as the same number
        status, _, body = await s.call("GET", f"{API_PREFIX}/{resource}/{arabic}", s.auth)
        _, _, missing = await s.call("GET", f"{API_PREFIX}/{resource}/987654321", s.auth)
        assert status == 404 and body["error"]["code"] == missing["error"]["code"], (resource, body)
        assert body["error"]["code"] == f"{resource[:-1]}_not_found"
    for route in PUBLIC_ROUTES:
        if "{id}" not in route.path and "{mid}" not in route.path and "{lid}" not in route.path:
            continue
        for digits in ("١", "²", "１", "1²"):
            path = _concrete(route.path, digits)
            status, ctype, body = await s.call(route.method, path, s.auth,
                                               json={} if route.method == "POST" else None)
            if route.method == "HEAD":  # no body: the status says it
                assert status == 404, (path, status)
                continue
            assert status == 404 and ctype == "application/json", (path, status, body)
            assert body["error"]["code"].endswith("not_found"), (path, body)
    for path in (f"{ADMIN}/tenants/acme/api-keys/١", f"{ADMIN}/tenants/acme/users/٧", f"{ADMIN}/tenants/acme/users/²",
                 f"{ADMIN}/tenants/acme/courses/{str(s.ids['courses']).translate(ARABIC_INDIC)}",
                 f"{ADMIN}/tenants/acme/modules/²"):
        status, _, body = await s.call("GET", path, s.admin)
        assert status == 404 and body["error"]["code"].endswith("not_found"), (path, body)


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A1", "%EF%BC%91", "1%C2%B2", "+5", "%205", "0", "-1", "1e2"])
async def test_limit_and_integer_filters_take_ascii_digits_only(system: System, value: str) -> None:
    s = system
    ids = {name: str(real) for name, real in s.ids.items()}
    paths = [(r, _concrete(r.path, ids["courses"])) for r in PUBLIC_ROUTES]
    paths = [(r, p.replace(f"modules/{ids['courses']}", f"modules/{ids['modules']}")
              .replace(f"lessons/{ids['courses']}", f"lessons/{ids['lessons']}")) for r, p in paths]
    queries = [f"{path}?limit={value}" for r, path in paths if "limit" in r.query]
    queries += [f"{path}?{name}={value}" for r, path in paths for name in r.query
                if name.endswith("_id") and name != "verification_id"]
    queries += [f"{ADMIN}/tenants?limit={value}", f"{ADMIN}/tenants/acme/api-keys?limit={value}",
                f"{ADMIN}/dlq/catalog.scorm_packages?limit={value}"]
    for query in queries:
        status, ctype, body = await s.call("GET", query, s.admin if query.startswith(ADMIN) else s.auth)
        assert status == 400 and ctype == "application/json", (query, status, body)
        assert body["error"]["code"] == "invalid_argument", (query, body)


# --- aiohttp's own parser ------------------------------------------------------------------------------------


async def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)  # the server closes after a protocol error
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


MARK = "ECHOME"
MALFORMED = {
    "request line over 8190 bytes": (f"GET /learn/player/{FAKE_TOKEN}?{MARK}={'A' * 9000} HTTP/1.1\r\n"
                                     "Host: localhost\r\n\r\n").encode(),
    "header over 8190 bytes": f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-{MARK}: {'B' * 9000}\r\n\r\n".encode(),
    "duplicate Host": f"GET /healthz HTTP/1.1\r\nHost: a.{MARK}\r\nHost: b.{MARK}\r\n\r\n".encode(),
    "bad header name": f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad{MARK} Name: x\r\n\r\n".encode(),
    "bad request line": f"GET /{MARK} HTTP/1.1 EXTRA\r\nHost: localhost\r\n\r\n".encode(),
    "bad content length": f"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: {MARK}\r\n\r\n".encode(),
    "control character in header": f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: {MARK}\x01\r\n\r\n".encode(),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_what_the_http_parser_refuses_is_a_json_envelope_without_echo(system: System, case: str) -> None:
    ports = {"gateway": system.gateway.server.port, "gateway content origin": system.content.server.port}
    ports.update({name: server.port for name, server in system.services.items()})
    for name, port in ports.items():
        assert port is not None
        status, headers, body = await _raw(port, MALFORMED[case])
        assert status in (400, 413, 414, 431), (name, case, status, body)
        assert headers["content-type"].startswith("application/json"), (name, case, headers, body)
        error = json.loads(body)["error"]
        assert error["code"] == "invalid_argument" and error["request_id"].startswith("req_"), (name, error)
        assert headers["x-request-id"] == error["request_id"]
        assert MARK.encode() not in body and b"AAAA" not in body and FAKE_TOKEN.encode() not in body, (name, body)
