"""shared/domain_errors.py: each service's one table answers its domain errors exactly as before (status, code,
message, headers), through one middleware; and nothing below a service's API layer knows ``ApiError``."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.catalog import domain as catalog
from services.catalog.api import ERRORS as CATALOG
from services.certificates import domain as certificates
from services.certificates.api.common import ERRORS as CERTIFICATES
from services.enrollment import domain as enrollment
from services.enrollment.api import ERRORS as ENROLLMENT
from services.gateway import domain as directory
from services.gateway.admin import ERRORS as DIRECTORY
from services.gateway.admin import refusals
from services.scorm import domain as scorm
from services.scorm.api_errors import ERRORS as SCORM
from services.webhooks import domain as webhooks
from services.webhooks.api import ERRORS as WEBHOOKS
from shared.domain_errors import Answer, DomainError, ErrorTable, api_error, domain_errors_middleware
from shared.http import ApiError, error_middleware

ROOT = Path(__file__).resolve().parents[2]
RETRY = {"Retry-After": "1"}

CASES = [
    # catalog: code and message are the error's own
    (CATALOG, catalog.NotFound("course"), 404, "course_not_found", "Course not found.", {}),
    (CATALOG, catalog.NotFound("lesson"), 404, "lesson_not_found", "Lesson not found.", {}),
    (CATALOG, catalog.MissingField("title"), 400, "missing_field", "'title' is required and must not be empty.", {}),
    (CATALOG, catalog.SlugTaken("a"), 400, "invalid_argument",
     "'slug': 'a' is already taken by another course of this tenant.", {}),
    (CATALOG, catalog.NotPublishable(["no modules"]), 400, "invalid_argument",
     "Cannot publish this course: no modules.", {}),
    (CATALOG, catalog.CatalogError("x"), 400, "invalid_argument", "x", {}),
    # enrollment: the table gives the code, a subclass answers as its nearest base
    (ENROLLMENT, enrollment.CourseNotFound(), 404, "course_not_found", "Course not found.", {}),
    (ENROLLMENT, enrollment.EnrollmentNotFound(), 404, "enrollment_not_found", "Enrollment not found.", {}),
    (ENROLLMENT, enrollment.CohortNotFound(), 404, "cohort_not_found", "Cohort not found.", {}),
    (ENROLLMENT, enrollment.UnknownUser(7), 400, "invalid_argument",
     "User 7 is not in this tenant's directory; upsert the user first.", {}),
    (ENROLLMENT, enrollment.InvalidExpiry("'expires_at' must be in the future."), 400, "invalid_argument",
     "'expires_at' must be in the future.", {}),
    (ENROLLMENT, enrollment.ConcurrentChange(), 503, "service_unavailable", "Concurrent change; retry.", RETRY),
    # certificates: the message is the class's own text
    (CERTIFICATES, certificates.CertificateNotFound(), 404, "certificate_not_found", "Certificate not found.", {}),
    (CERTIFICATES, certificates.TemplateNotFound(), 404, "template_not_found", "Template not found.", {}),
    (CERTIFICATES, certificates.AlreadyRevoked(), 400, "invalid_argument", "This certificate is already revoked.",
     {}),
    (CERTIFICATES, certificates.RenderUnavailable(), 503, "service_unavailable",
     certificates.RenderUnavailable.message, RETRY),
    (CERTIFICATES, certificates.CertificateBusy(), 503, "service_unavailable", certificates.CertificateBusy.message,
     RETRY),
    # scorm: status from the table, code and message from the error
    (SCORM, scorm.Invalid("bad"), 400, "invalid_argument", "bad", {}),
    (SCORM, scorm.NotFound("package"), 404, "package_not_found", "Package not found.", {}),
    (SCORM, scorm.invalid_token(), 401, "invalid_api_key",
     "The runtime token is not valid; launch the activity again.", {}),
    (SCORM, scorm.LaunchEnded("over"), 410, "launch_ended", "over", {}),
    (SCORM, scorm.UploadTooLarge(1000), 413, "payload_too_large",
     "The package is over the upload limit of 1,000 bytes.", {}),
    (SCORM, scorm.UnsupportedMediaType("zip only"), 415, "unsupported_media_type", "zip only", {}),
    (SCORM, scorm.ScormError("x"), 400, "invalid_argument", "x", {}),
    # webhooks
    (WEBHOOKS, webhooks.EndpointNotFound(), 404, "webhook_endpoint_not_found", "Webhook endpoint not found.", {}),
    (WEBHOOKS, webhooks.MessageNotFound(), 404, "webhook_message_not_found", "Webhook message not found.", {}),
    (WEBHOOKS, webhooks.UnsafeDestination("private"), 400, "invalid_argument", "private", {}),
    (WEBHOOKS, webhooks.InvalidEndpoint("bad url"), 400, "invalid_argument", "bad url", {}),
    # the gateway's directory: fixed messages for the not-found errors
    (DIRECTORY, directory.TenantNotFound("acme"), 404, "tenant_not_found", "Tenant not found.", {}),
    (DIRECTORY, directory.ApiKeyNotFound(12), 404, "api_key_not_found", "Api key not found.", {}),
    (DIRECTORY, directory.UserNotFound(3), 404, "user_not_found", "User not found.", {}),
    (DIRECTORY, directory.SlugTaken("acme"), 400, "invalid_argument", "The slug 'acme' is taken.", {}),
    (DIRECTORY, directory.UnknownCreator(9), 400, "invalid_argument",
     "'created_by': no directory user 9 in this tenant.", {}),
]


@pytest.mark.parametrize(("table", "exc", "status", "code", "message", "headers"), CASES,
                         ids=[f"{type(c[1]).__module__.split('.')[1]}-{type(c[1]).__name__}" for c in CASES])
def test_each_service_table_answers_as_the_contract_says(table: ErrorTable, exc: DomainError, status: int,
                                                         code: str, message: str, headers: dict[str, str]) -> None:
    error = api_error(table, exc)
    assert error is not None
    assert (error.status, error.code, error.message, error.headers) == (status, code, message, headers)


@pytest.mark.parametrize(("table", "exc"), [
    (CERTIFICATES, certificates.ConcurrentChange()),  # retried inside the service, never an answer
    (ENROLLMENT, DomainError("another service's error")),
])
def test_an_error_the_table_does_not_list_is_not_answered(table: ErrorTable, exc: DomainError) -> None:
    assert api_error(table, exc) is None


class Refused(DomainError):
    code = "refused"


class Unlisted(DomainError):
    pass


async def _client(routes: dict[str, Exception]) -> TestClient:
    table: ErrorTable = {Refused: Answer(409, headers={"X-Why": "test"})}
    app = web.Application(middlewares=[error_middleware, domain_errors_middleware(table)])
    for path, exc in routes.items():
        async def route(_request: web.Request, exc: Exception = exc) -> web.Response:
            raise exc
        app.router.add_get(path, route)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_middleware_answers_a_listed_error_in_the_envelope_and_leaves_the_rest() -> None:
    client = await _client({"/refused": Refused("no"), "/unlisted": Unlisted("hm"), "/bug": RuntimeError("boom")})
    try:
        resp = await client.get("/refused")
        body = json.loads(await resp.text())
        assert resp.status == 409 and resp.headers["X-Why"] == "test"
        assert body["error"]["code"] == "refused" and body["error"]["message"] == "no"
        for path in ("/unlisted", "/bug"):
            resp = await client.get(path)
            body = json.loads(await resp.text())
            assert resp.status == 500 and body["error"]["code"] == "internal", path
            assert "hm" not in body["error"]["message"] and "boom" not in body["error"]["message"]
    finally:
        await client.close()


async def test_the_gateway_admin_decorator_answers_through_the_same_table() -> None:
    @refusals
    async def view(slug: str) -> str:
        raise directory.TenantNotFound(slug)

    with pytest.raises(ApiError) as raised:
        await view("acme")
    assert (raised.value.status, raised.value.code, raised.value.message) == (404, "tenant_not_found",
                                                                              "Tenant not found.")


#: the gateway is the edge: its HTTP layer (pipeline, proxy, admin API, content, UI) builds envelopes itself
EDGE_HTTP = {"app.py", "pipeline.py", "proxy.py", "admin.py", "subscribers.py", "staff.py",
             "content.py"}


def _is_api_module(path: Path) -> bool:
    rel = path.relative_to(ROOT / "services")
    if len(rel.parts) == 1:
        return False  # services/__init__.py, services/__main__.py, services/wiring.py
    service, rest = rel.parts[0], rel.parts[1:]
    if rest[0].startswith("api"):
        return True
    return service == "gateway" and (rest[0] in EDGE_HTTP or rest[0] == "ui")


def test_nothing_below_the_api_layer_imports_api_error() -> None:
    offenders = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        if _is_api_module(path):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if "ApiError" in names or any(n.endswith(".ApiError") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_every_service_domain_error_base_is_the_shared_one() -> None:
    for base in (catalog.CatalogError, enrollment.EnrollmentError, certificates.CertificatesError,
                 scorm.ScormError, webhooks.WebhooksError, directory.DirectoryError):
        assert issubclass(base, DomainError), base
