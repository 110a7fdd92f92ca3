"""The OpenAPI document as generated clients read it (issue 17): what each operation declares, checked without a
running system (the answers themselves are checked by tests/openapi/conformance.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.gateway.openapi import build_document
from services.gateway.routes import PASS_THROUGH_ROUTES, PUBLIC_ROUTES
from shared.api import ErrorCode
from tests.openapi.conformance import Checker, Exchange

REPO = Path(__file__).resolve().parents[2]
DOC = build_document()
SCHEMAS = DOC["components"]["schemas"]
ROUTES = (*PUBLIC_ROUTES, *PASS_THROUGH_ROUTES)


def _op(route):
    return DOC["paths"][route.path.replace("+}", "}")][route.method.lower()]


def _nullable(schema: dict) -> bool:
    return schema.get("type") == "null" or any(s.get("type") == "null" for s in schema.get("anyOf", []))


def test_operation_ids_are_readable_and_unique():
    ids = [_op(r)["operationId"] for r in ROUTES]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]+([A-Z][a-z0-9]*)+", i) for i in ids), ids
    assert _op(next(r for r in PUBLIC_ROUTES if r.path.endswith("/courses/{id}") and r.method == "POST"))[
        "operationId"] == "updateCourse"


def test_every_operation_declares_default_and_the_gateways_5xx_and_only_the_errors_it_can_give():
    for route in ROUTES:
        responses = _op(route)["responses"]
        assert {"default", "500", "502", "503", "504"} <= set(responses), route.path
        if route.method == "GET":
            assert not {"413", "415"} & set(responses), route.path
        if route.scope is None:
            assert not {"403", "429"} & set(responses), route.path
            if "{token}" not in route.path:  # the runtime token is a credential (401); the rest needs none
                assert "401" not in responses, route.path
        for status, response in responses.items():
            assert "X-Request-Id" in response["headers"], (route.path, status)
            if status == "429":
                assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(response["headers"])
            if status == "401":
                assert "WWW-Authenticate" in response["headers"]
            if status[0] == "2" and route.scope is not None and route.method == "POST":
                assert "Idempotent-Replayed" in response["headers"]


def test_components_are_named_and_no_schema_is_empty():
    for name in ("CourseResponse", "CourseList", "EnrollmentResponse", "Error", "ErrorBody", "ErrorCode",
                 "RuntimeCommittedResponse", "ScormPackageList", "ScormPackageDetailResponse"):
        assert name in SCHEMAS, name
    assert set(DOC["components"]["headers"]) == {"X-Request-Id", "RateLimit", "RateLimit-Policy", "Retry-After",
                                                "WWW-Authenticate", "Allow", "Idempotent-Replayed",
                                                "Consistency-Token", "Location", "Tus-Resumable",
                                                "Upload-Offset", "Upload-Length"}

    def walk(node, where):
        if isinstance(node, dict):
            if "schema" in node:
                assert node["schema"] != {}, where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(DOC["paths"], "paths")
    for route in ROUTES:
        op = _op(route)
        if route.method == "PATCH":  # tus: the next bytes
            assert list(op["requestBody"]["content"]) == ["application/offset+octet-stream"]
        elif route.upload:  # a file: the zip itself, or a form whose 'file' part is the zip
            content = op["requestBody"]["content"]
            assert content["application/zip"]["schema"] == {"type": "string", "format": "binary"}
            assert content["multipart/form-data"]["schema"]["required"] == ["file"]
        elif "requestBody" in op:  # no empty body classes: a body is a named model with fields
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert SCHEMAS[ref.rsplit("/", 1)[1]]["properties"], route.path
    commit = _op(next(r for r in ROUTES if r.path.endswith("/commit")))
    assert commit["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RuntimeCommittedResponse"}


def test_resources_require_every_field_and_say_which_are_nullable():
    for name in ("Course", "Enrollment", "Attempt", "Certificate", "CertificateTemplate", "ScormPackage",
                 "ScormPackageDetail", "Activity", "Launch", "CohortGrant"):
        schema = SCHEMAS[name]
        assert sorted(schema["required"]) == sorted(schema["properties"]), name
    assert _nullable(SCHEMAS["ScormPackage"]["properties"]["scorm_version"])
    assert not _nullable(SCHEMAS["ScormPackage"]["properties"]["status"])
    assert "course_version" in SCHEMAS["Enrollment"]["required"]
    assert {"logo", "background_pdf"} <= set(SCHEMAS["CertificateTemplate"]["required"])
    assert "template_version" in SCHEMAS["CertificatePdf"]["required"]
    assert not _nullable(SCHEMAS["Certificate"]["properties"]["pdf"])


def test_servers_name_the_tenant_host():
    (tenant_host, _) = DOC["servers"]
    assert "{tenant}" in tenant_host["url"] and "tenant" in tenant_host["variables"]


def test_the_error_codes_are_an_enum_covering_every_code_the_services_answer_with():
    codes = set(SCHEMAS["ErrorCode"]["enum"])
    assert SCHEMAS["ErrorBody"]["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode"}
    assert len(SCHEMAS["ErrorCode"]["x-enum-descriptions"]) == len(codes)
    used: set[str] = set()
    for path in [*REPO.glob("services/**/*.py"), *REPO.glob("shared/**/*.py")]:
        if "/gateway/ui/" in path.as_posix() or "/migrations/" in path.as_posix():
            continue  # the admin UI's own errors are not API answers
        text = path.read_text()
        used |= set(re.findall(r"ApiError\(\s*\d{3},\s*\"([a-z_]+)\"", text))
        used |= {f"{r}_not_found" for r in re.findall(r"not_found\(\"([a-z_]+)\"\)", text)}
        used |= set(re.findall(r"error_response\([^,]+,\s*\d{3},\s*\"([a-z_]+)\"", text))
    # admin API, not this document
    admin_only = {"tenant_not_found", "api_key_not_found", "user_not_found", "invalid_credentials",
                  "event_subscriber_not_found", "event_subscriber_exists"}
    assert used - admin_only - codes == set()
    assert {c.value for c in ErrorCode} == codes


def test_every_json_operation_has_an_example_from_a_real_answer_that_fits_its_schema():
    checker = Checker(DOC)
    for route in ROUTES:
        op = _op(route)
        for status, response in op["responses"].items():
            if status[0] != "2" or "application/json" not in response.get("content", {}):
                continue
            example = response["content"]["application/json"].get("example")
            assert example is not None, (op["operationId"], status)
            path = re.sub(r"\{[a-z]+\+?\}", "1", route.path)
            problems = checker.check(Exchange(route.method, path, int(status), "application/json",
                                              {"X-Request-Id": example["request_id"]}, json.dumps(example).encode()))
            assert problems == [], problems
