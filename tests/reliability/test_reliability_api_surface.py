"""No tenant sees another, no input crashes it (issue 9): the isolation sweep over every route of the gateway's
route table, and schemathesis fuzzing of the gateway's OpenAPI document with valid, wrong-scope and
wrong-tenant keys. Both run against one cluster holding a tenant with one of every resource.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import pytest_asyncio
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.domain import RouteTable
from services.gateway.routes import API_PREFIX, PASS_THROUGH_ROUTES, PUBLIC_ROUTES
from tests.support.cluster import Cluster
from tests.support.scorm_packages import FIXTURES


def _load_schemathesis_now() -> None:
    """Import what schemathesis imports lazily, here at collection, before any test ran or started a thread.

    CPython 3.11 keeps the AST constructor's recursion depth per interpreter: a module compiled while another
    thread compiles (or after a thread left that state off) fails with "SystemError: AST constructor recursion
    depth mismatch". Seen twice, both times on the lazy import inside ``from_url`` or hypothesis's compile in a
    worker thread, mid-suite."""
    document = {"openapi": "3.1.0", "info": {"title": "warm-up", "version": "1"}, "paths": {"/x/{id}": {"post": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"description": "ok"}}}}}}
    for result in schemathesis.openapi.from_dict(document).get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            result.ok().as_strategy(generation_mode=mode)


_load_schemathesis_now()

pytestmark = pytest.mark.asyncio(loop_scope="module")

MISSING_ID = 987_654_321
ALL_SCOPES = ("learn:read", "learn:write", "learn:cohorts:grant")


@dataclass
class Tenant:
    slug: str
    key: str
    #: path segment before an id (``courses``, ``verify`` ...) -> an id of this tenant
    ids: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    owner: Tenant  # holds one of every resource
    other: Tenant  # a tenant with its own data, looking at the owner's ids


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(shared_cluster: Cluster) -> World:
    c = shared_cluster
    owner = Tenant("iso-owner", await c.tenant_with_key("iso-owner"))
    other = Tenant("iso-other", await c.tenant_with_key("iso-other"))
    await c.user(owner.slug, 7, "Owner Learner")
    await c.user(other.slug, 8, "Other Learner")
    status, body = await c.admin("POST", f"/tenants/{owner.slug}/cert-templates",
                                 json={"name": "Owner style", "is_default": True})
    assert status == 201, body
    template_id = body["data"]["id"]
    package = await c.upload_scorm(owner.slug, FIXTURES / "golf_scorm12_singlesco.zip")
    assert package["status"] == "ready", package
    course, (golf, reading) = await c.course(owner.key, owner.slug, "owned", [
        {"title": "Golf", "kind": "scorm", "required": True, "scorm_package_id": package["id"],
         "sco_identifier": package["scos"][0]["identifier"]},
        {"title": "Read", "kind": "reading", "required": True},
    ])
    await c.course(other.key, other.slug, "theirs", [{"title": "Read", "kind": "reading"}])
    enrollment = await c.enroll(owner.key, 7, course["id"])
    golf_launch = await c.complete_activity(owner.key, enrollment["id"], golf,
                                            {"cmi.core.lesson_status": "passed"})
    await c.complete_activity(owner.key, enrollment["id"], reading)
    (cert,) = await c.eventually(lambda: c.certificates_of(owner.key, user_id=7), message="the owner's certificate")
    status, modules = await c.api(owner.key, "GET", f"/courses/{course['id']}/modules")
    assert status == 200, modules
    status, body = await c.admin("POST", f"/tenants/{owner.slug}/cohorts",
                                 json={"name": "Owners", "course_ids": [course["id"]]})
    assert status == 201, body
    cohort_id = body["data"]["id"]
    status, upload = await c.request("POST", "/api/v1/learn/scorm-uploads", token=owner.key,
                                     headers={"Upload-Length": "100", "Tus-Resumable": "1.0.0"})
    assert status == 201, upload
    status, keys = await c.admin("GET", f"/tenants/{owner.slug}/api-keys")
    assert status == 200, keys
    owner.ids = {
        "courses": course["id"], "modules": modules["data"][0]["id"], "lessons": golf["lesson_id"],
        "activities": golf["id"], "enrollments": enrollment["id"], "attempts": golf_launch["attempt_id"],
        "certificates": cert["id"], "verify": cert["verification_id"], "cert-templates": template_id,
        "scorm-packages": package["id"], "scorm-uploads": upload["data"]["id"],
        "cohorts": cohort_id, "api-keys": keys["data"][0]["id"], "users": 7,
    }
    return World(owner, other)


def concrete(path: str, ids: dict[str, Any]) -> str:
    """The route's path with each ``{param}`` replaced by the id of the resource named just before it."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if segment.startswith("{"):
            segments[i] = str(ids[segments[i - 1]])
    return "/".join(segments)


def missing(ids: dict[str, Any]) -> dict[str, Any]:
    return {name: secrets.token_urlsafe(30)[:40] if name == "verify" else MISSING_ID for name in ids}


def error_of(body: Any) -> tuple[str, str]:
    return body["error"]["code"], body["error"]["message"]


# --- isolation sweep ------------------------------------------------------------------------------------------

GET_ROUTES = [r for r in PUBLIC_ROUTES if r.method == "GET" and "{" in r.path]
ADMIN_GETS = ["courses/{id}", "modules/{id}", "lessons/{id}", "activities/{id}", "cohorts/{id}",
              "cert-templates/{id}", "scorm-packages/{id}", "api-keys/{id}", "users/{id}"]


@pytest.mark.parametrize("route", GET_ROUTES, ids=[r.path.removeprefix(API_PREFIX) for r in GET_ROUTES])
async def test_another_tenants_id_answers_exactly_like_a_missing_one(shared_cluster: Cluster, world: World,
                                                                     route: Any) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    owned = concrete(route.path, owner.ids)
    status, body = await c.request("GET", owned, token=owner.key)
    assert status == 200, (owned, body)  # the id is real

    status, body = await c.request("GET", owned, token=other.key)
    missing_status, missing_body = await c.request("GET", concrete(route.path, missing(owner.ids)), token=other.key)
    assert (status, missing_status) == (404, 404), (owned, body, missing_body)
    assert error_of(body) == error_of(missing_body)
    assert error_of(body)[0].endswith("_not_found")


@pytest.mark.parametrize("path", ADMIN_GETS)
async def test_admin_reads_through_another_tenant_answer_like_missing_ids(shared_cluster: Cluster, world: World,
                                                                          path: str) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    resource = path.split("/")[0]
    status, body = await c.admin("GET", f"/tenants/{owner.slug}/{resource}/{owner.ids[resource]}")
    assert status == 200, body
    status, body = await c.admin("GET", f"/tenants/{other.slug}/{resource}/{owner.ids[resource]}")
    missing_status, missing_body = await c.admin("GET", f"/tenants/{other.slug}/{resource}/{MISSING_ID}")
    assert (status, missing_status) == (404, 404), (body, missing_body)
    assert error_of(body) == error_of(missing_body)


async def test_writes_on_another_tenants_ids_answer_like_missing_ones_and_change_nothing(
        shared_cluster: Cluster, world: World) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    writes = [
        ("POST", "/courses/{id}", {"title": "Hijacked"}), ("POST", "/courses/{id}/archive", None),
        ("POST", "/courses/{id}/unpublish", None), ("POST", "/enrollments/{id}/cancel", None),
        ("POST", "/enrollments/{id}/launches", {"activity_id": owner.ids["activities"]}),
        ("POST", "/certificates/{id}/revoke", {"reason": "mine now"}),
        ("POST", "/certificates/{id}/regenerate-pdf", None),
        ("POST", "/scorm-packages/{id}/versions", None), ("DELETE", "/scorm-packages/{id}", None),
    ]
    for method, pattern, payload in writes:
        path = API_PREFIX + pattern
        status, body = await c.request(method, concrete(path, owner.ids), token=other.key, json=payload)
        missing_status, missing_body = await c.request(method, concrete(path, missing(owner.ids)),
                                                       token=other.key, json=payload)
        assert (status, missing_status) == (404, 404), (pattern, body, missing_body)
        assert error_of(body) == error_of(missing_body), pattern
    status, body = await c.api(other.key, "POST", "/enrollments", json={"user_id": 8,
                                                                        "course_id": owner.ids["courses"]})
    assert status == 404 and body["error"]["code"] == "course_not_found"
    status, body = await c.api(other.key, "POST", "/cohorts/grant", json={"user_id": 8,
                                                                          "cohort_id": owner.ids["cohorts"]})
    assert status == 404 and body["error"]["code"] == "cohort_not_found"
    # An upload of the owner's very bytes with ?dedupe=true is another tenant's own new package, never the owner's
    # (a third tenant: the other one must stay empty for the list sweep).
    third = await c.tenant_with_key(f"iso-dedupe-{secrets.token_hex(3)}")
    golf = (FIXTURES / "golf_scorm12_singlesco.zip").read_bytes()
    status, body = await c.request("POST", API_PREFIX + "/scorm-packages?dedupe=true", token=third, data=golf,
                                   headers={"Content-Type": "application/zip"})
    assert status == 202 and body["data"]["id"] != owner.ids["scorm-packages"], body
    theirs = body["data"]["id"]
    status, body = await c.api(owner.key, "GET", f"/scorm-packages/{theirs}")
    assert status == 404 and body["error"]["code"] == "scorm_package_not_found"

    course = (await c.api(owner.key, "GET", f"/courses/{owner.ids['courses']}"))[1]["data"]
    assert course["title"] != "Hijacked" and course["status"] == "published"
    cert = (await c.api(owner.key, "GET", f"/certificates/{owner.ids['certificates']}"))[1]["data"]
    assert cert["is_revoked"] is False and cert["pdf"]["version"] == 1
    package = (await c.api(owner.key, "GET", f"/scorm-packages/{owner.ids['scorm-packages']}"))[1]["data"]
    assert package["archived_at"] is None and package["status"] == "ready"


async def test_filtered_lists_never_show_another_tenants_rows(shared_cluster: Cluster, world: World) -> None:
    c, owner, other = shared_cluster, world.owner, world.other
    ids = owner.ids
    for path in (f"/enrollments?course_id={ids['courses']}", f"/attempts?enrollment_id={ids['enrollments']}",
                 f"/attempts?activity_id={ids['activities']}", f"/certificates?course_id={ids['courses']}",
                 "/cert-templates", "/scorm-packages", "/certificates", "/attempts"):
        status, body = await c.api(owner.key, "GET", path)
        assert status == 200 and body["data"], (path, body)
        status, body = await c.api(other.key, "GET", path)
        assert status == 200 and body["data"] == [], (path, body)
    status, body = await c.api(other.key, "GET", "/courses")
    assert [course["slug"] for course in body["data"]] == ["theirs"]


# --- fuzzing ----------------------------------------------------------------------------------------------------

POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance]
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


# tus PATCH bodies (ADR 0020) are bytes, like application/octet-stream
schemathesis.serializer("application/offset+octet-stream")(
    lambda ctx, value: {"data": value if isinstance(value, bytes) else str(value).encode()})

@dataclass
class FuzzReport:
    answers: list[tuple[str, str, int, Any]] = field(default_factory=list)  # (method, path, status, json)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (operation, reason) -> example

    def summary(self) -> str:
        return "\n\n".join(f"{op}: {example}" for (op, _), example in list(self.failures.items())[:15])


def fuzz(cluster: Cluster, headers: dict[str, str], examples: int, mode: GenerationMode,
         checks: list[Any]) -> FuzzReport:
    """Every operation of the served OpenAPI document, ``examples`` generated cases each. Failed checks are
    collected, one example per operation and reason, so one run reports them all.

    Blocking, and on purpose not in a worker thread: CPython 3.11 keeps the AST constructor's recursion depth per
    interpreter, so hypothesis compiling in one thread while another compiles fails with "SystemError: AST
    constructor recursion depth mismatch". The cluster runs in other processes; nothing here needs the loop."""
    base = cluster.gateway_url
    schema = schemathesis.openapi.from_url(base + "/api/v1/learn/openapi.json", timeout=30)
    report = FuzzReport()
    session = requests.Session()

    def exercise(operation: Any) -> None:
        name = f"{operation.method.upper()} {operation.path}"

        @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                             phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def one_case(case: Any) -> None:
            # The learner routes live on the content origin (the API origin answers them 404).
            origin = cluster.content_url if operation.path.startswith("/learn/") else base
            response = case.call(base_url=origin, session=session, headers=headers, timeout=30)
            try:
                body = response.json()
            except ValueError:
                body = None
            report.answers.append((case.method, case.formatted_path, response.status_code, body))
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as exc:  # a failed check: keep one example per reason
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                report.failures.setdefault((name, reason), f"{case.method} {case.formatted_path} "
                                           f"-> {response.status_code}\n{str(exc)[:1500]}")

        try:
            one_case()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, name  # nothing in this operation can be made invalid

    for result in schema.get_all_operations():
        exercise(result.ok())
    return report


def api_answers(report: FuzzReport) -> list[tuple[str, str, int, Any]]:
    """The API's answers; a HEAD answer's body is empty, so it is given the code its GET twin would carry."""
    return [(m, p, status, body if m != "HEAD" else {"error": {"code": HEAD_CODES.get(status, "")}})
            for m, p, status, body in report.answers if p.startswith(API_PREFIX) and not p.endswith("/openapi.json")]


HEAD_CODES = {401: "invalid_api_key", 403: "insufficient_scope", 404: "not_found"}


@pytest.mark.slow
async def test_fuzzing_with_a_valid_key_never_crashes_and_answers_as_documented(shared_cluster: Cluster,
                                                                                 world: World) -> None:
    headers = {"Authorization": f"Bearer {world.owner.key}"}
    valid = fuzz(shared_cluster, headers, 25, GenerationMode.POSITIVE, POSITIVE_CHECKS)
    invalid = fuzz(shared_cluster, headers, 12, GenerationMode.NEGATIVE, NEGATIVE_CHECKS)
    assert not valid.failures and not invalid.failures, (
        f"valid inputs:\n{valid.summary()}\n\ninvalid inputs:\n{invalid.summary()}")
    assert any(status in (200, 201) for _, _, status, _ in api_answers(valid))
    assert all(status < 500 for _, _, status, _ in invalid.answers)


@pytest.mark.slow
async def test_fuzzing_with_a_wrong_scope_key_is_refused_by_scope(shared_cluster: Cluster, world: World) -> None:
    key = await shared_cluster.tenant_with_key("iso-grant-only", scopes=("learn:cohorts:grant",))
    report = fuzz(shared_cluster, {"Authorization": f"Bearer {key}"}, 6,
                                     GenerationMode.POSITIVE, POSITIVE_CHECKS)
    assert not report.failures, report.summary()
    for method, path, status, body in api_answers(report):
        if RouteTable.unsafe_path(path):
            # dot segments and encoded slashes or backslashes never match a route: no such route, for any key
            assert status == 404 and body["error"]["code"] == "not_found", (method, path, status, body)
        elif path != API_PREFIX + "/cohorts/grant":
            assert status == 403 and body["error"]["code"] == "insufficient_scope", (method, path, status, body)


@pytest.mark.slow
async def test_fuzzing_with_another_tenants_key_on_this_tenants_host_is_unauthorised(shared_cluster: Cluster,
                                                                                      world: World) -> None:
    headers = {"Authorization": f"Bearer {world.other.key}", "Host": f"{world.owner.slug}.localhost"}
    report = fuzz(shared_cluster, headers, 6, GenerationMode.POSITIVE, POSITIVE_CHECKS)
    assert not report.failures, report.summary()
    for method, path, status, body in api_answers(report):
        assert status == 401 and body["error"]["code"] == "invalid_api_key", (method, path, status, body)


# --- the security review's hostile inputs, on every route of the real topology (issue 15) ---------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
DEEP_JSON = b"[" * 5000 + b"]" * 5000
NOT_ASCII_INTEGERS = ("%C2%B2", "%D9%A1", "%EF%BC%91")  # ², ١, １: str.isdigit() is true for each


def hostile_requests(world: World) -> list[tuple[str, str, str, bytes | None]]:
    """(method, path, whose credential, body) for every route of the gateway: the public table, the pass-through
    routes and the admin API, with ids in other scripts' digits, bodies nested 5,000 deep and limits and integer
    filters that are not ASCII digits."""
    owner = world.owner
    admin_base = f"/admin/api/v1/tenants/{owner.slug}"
    cases: list[tuple[str, str, str, bytes | None]] = []
    routes = [(r.method, r.path, "key") for r in PUBLIC_ROUTES]
    routes += [(r.method, r.path, "none") for r in PASS_THROUGH_ROUTES]
    routes += [(m, admin_base + p, "admin") for m, p in (
        ("GET", "/api-keys/{id}"), ("POST", "/api-keys/{id}/revoke"), ("GET", "/users/{id}"), ("PUT", "/users/{id}"),
        ("GET", "/courses/{id}"), ("POST", "/courses/{id}"), ("POST", "/courses/{id}/modules"),
        ("GET", "/modules/{id}"), ("POST", "/modules/{id}"), ("POST", "/modules/{id}/lessons"),
        ("GET", "/lessons/{id}"), ("POST", "/lessons/{id}/activities"), ("GET", "/activities/{id}"),
        ("POST", "/activities/{id}"), ("GET", "/cohorts/{id}"), ("POST", "/cohorts/{id}"),
        ("GET", "/cert-templates/{id}"), ("POST", "/cert-templates/{id}"), ("GET", "/scorm-packages/{id}"),
        ("POST", "/certificates/{id}/revoke"), ("GET", "/staff/{id}"), ("POST", "/staff/{id}"),
        ("POST", "/staff/{id}/reset-password"), ("GET", "/courses/{id}/team"), ("PUT", "/courses/{id}/team/{id}"),
        ("DELETE", "/courses/{id}/team/{id}"),
("GET", "/webhook-endpoints/{id}"), ("POST", "/webhook-endpoints/{id}"),
        ("GET", "/webhook-endpoints/{id}/messages"), ("POST", "/webhook-endpoints/{id}/test"),
        ("GET", "/event-subscribers/{id}"), ("DELETE", "/event-subscribers/{id}"),
        ("POST", "/event-subscribers/{id}/rotate"), ("POST", "/event-subscribers"))]

    for method, pattern, who in routes:
        params = [s for s in pattern.split("/") if s.startswith("{")]
        real = concrete(pattern, owner.ids) if pattern.startswith(API_PREFIX) else None
        for digits in ("١", "²", "１") if params else ():
            path = pattern
            for param in params:
                path = path.replace(param, "r1.1.1.9999999999.AAAAAAAAAAAAAAAAAAAAAA" if "token" in param
                                    else "v" * 40 if param == "{vid}" else digits, 1)
            cases.append((method, path, who, None))
        if real is not None and "{" in pattern and "{vid}" not in pattern:
            cases.append((method, real.translate(ARABIC_INDIC).replace(API_PREFIX.translate(ARABIC_INDIC),
                                                                       API_PREFIX), who, None))
        if method in ("POST", "PUT"):
            body_path = concrete(pattern, owner.ids) if pattern.startswith(API_PREFIX) else \
                pattern.replace("{id}", "1").replace("{token}", "r1.1.1.9999999999.AAAAAAAAAAAAAAAAAAAAAA")
            cases.append((method, body_path, who, DEEP_JSON))
    for route in PUBLIC_ROUTES:
        for name in route.query:
            if name == "limit" or name.endswith("_id"):
                for value in NOT_ASCII_INTEGERS:
                    cases.append(("GET", f"{concrete(route.path, owner.ids)}?{name}={value}", "key", None))
    for value in NOT_ASCII_INTEGERS:
        cases.append(("GET", f"/admin/api/v1/tenants?limit={value}", "admin", None))
        cases.append(("GET", f"{admin_base}/api-keys?limit={value}", "admin", None))
        cases.append(("GET", f"{admin_base}/staff?limit={value}", "admin", None))
        cases.append(("GET", f"{admin_base}/audit-log?limit={value}", "admin", None))
    for path in (f"{admin_base}/staff", f"{admin_base}/sessions", "/admin/api/v1/staff-links/accept",
                 "/admin/api/v1/staff-links/lookup"):
        cases.append(("POST", path, "admin", DEEP_JSON))
    cases.append(("PUT", f"{admin_base}/sso", "admin", DEEP_JSON))
    return sorted(set(cases), key=repr)


@pytest.mark.slow
async def test_the_reviews_hostile_inputs_never_answer_5xx_on_any_route(shared_cluster: Cluster,
                                                                       world: World) -> None:
    c = shared_cluster
    tokens = {"key": world.owner.key, "admin": c.admin_token, "none": None}
    failures = []
    cases = hostile_requests(world)
    assert len(cases) >= 200, len(cases)
    for method, path, who, body in cases:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, answer = await c.request(method, path, token=tokens[who], data=body, headers=headers,
                                         origin=c.content_url if path.startswith("/learn/") else None)
        enveloped = path.startswith(("/api/", "/admin/", "/learn/runtime/"))
        if status >= 500 or (enveloped and status >= 400 and method != "HEAD"  # a HEAD answer has no body
                             and not (isinstance(answer, dict) and "error" in answer)):
            failures.append((method, path[:120], status, str(answer)[:200]))
        elif body is not None and status == 400:
            assert answer["error"]["code"] == "invalid_argument", (method, path, answer)
    assert not failures, failures[:20]
    logs = "\n".join(svc.log_path.read_text(errors="replace") for svc in c.services.values())
    assert "RecursionError" not in logs and "unhandled_error" not in logs


async def _raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


@pytest.mark.slow
async def test_no_log_line_of_any_process_carries_a_runtime_token(shared_cluster: Cluster, world: World) -> None:
    """Requests carrying a runtime token, well-formed and not (aiohttp's parser used to log the raw request line
    or header, token included, at error level), to the gateway and straight to every service: then every log
    file of the cluster is searched for the token's secret part."""
    c = shared_cluster
    mac = secrets.token_urlsafe(16)[:22].replace("-", "A").replace("_", "B")
    token = f"r1.987654.1.1999999999.{mac}"
    for origin in (c.gateway_url, c.content_url):  # the learner paths are the content origin's; 404 on the other
        for path in (f"/learn/player/{token}", f"/learn/content/{token}/index.html", f"/learn/static/{token}"):
            status, _ = await c.request("GET", path, origin=origin)
            assert status < 500, path
        for action in ("commit", "finish"):
            status, _ = await c.request("POST", f"/learn/runtime/{token}/{action}", data=DEEP_JSON,
                                        headers={"Content-Type": "application/json"}, origin=origin)
            assert status < 500
    malformed = [
        f"GET /learn/player/{token}?{'A' * 9000} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /learn/player/{token}\x01 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nReferer: /learn/player/{token}\x01\r\n\r\n",
        f"GET /learn/runtime/{token}/commit HTTP/1.1 X\r\nHost: localhost\r\n\r\n",
    ]
    listeners = [(svc.name, svc.port) for svc in c.services.values()] + [("content origin", c.content_port)]
    for name, port in listeners:
        for raw in malformed:
            answer = await _raw_exchange(port, raw.encode())
            assert answer.startswith(b"HTTP/1.") and b"application/json" in answer, (name, answer[:300])
            assert mac.encode() not in answer, (name, answer[:300])
    # Each process writes its line before it answers (stderr is line-buffered), so the logs are complete here.
    for svc in c.services.values():
        text = svc.log_path.read_text(errors="replace")
        assert mac not in text, (svc.name, [line[:300] for line in text.splitlines() if mac in line][:3])
    gateway_log = c.services["gateway"].log_path.read_text(errors="replace")
    assert "bad_http_request" in gateway_log  # the refusals were logged, without the token
