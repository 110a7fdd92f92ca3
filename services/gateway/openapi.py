"""The OpenAPI 3.1 document of the public API, generated from the route table (so it cannot miss a route).

Served at ``/api/v1/learn/openapi.json``; ``python -m services.gateway.openapi`` prints it (docs/openapi.json).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from services.gateway.routes import PASS_THROUGH_ROUTES, PUBLIC_ROUTES, Route

VERSION = "1.3.0"

_ts = {"type": "string", "format": "date-time"}
_ts_null = {"type": ["string", "null"], "format": "date-time"}
_id = {"type": "integer", "minimum": 1}
_id_null = {"type": ["integer", "null"], "minimum": 1}
_str_null = {"type": ["string", "null"]}
_num_null = {"type": ["number", "null"]}


def _obj(props: dict[str, Any], required: list[str] | None = None, closed: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required is not None:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


_COURSE_FIELDS = {
    "slug": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$", "maxLength": 100},
    "title": {"type": "string"},
    "subtitle": _str_null,
    "summary": _str_null,
    "language": {"type": "string", "description": "BCP 47", "default": "en"},
    "completion_rule": {**_enum("all_required", "all_activities", "any_activity"), "default": "all_required"},
    "estimated_minutes": {"type": ["integer", "null"], "minimum": 0},
    "credit_hours": {"type": ["number", "null"], "minimum": 0},
    "credit_kind": _str_null,
    "credit_expires_after_months": {"type": ["integer", "null"], "minimum": 1},
    "certificate_template_id": _id_null,
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"},
                                  "request_id": {"type": "string", "pattern": "^req_"}},
                                 ["code", "message", "request_id"])}, ["error"]),
    "Course": _obj({
        "id": _id, "slug": {"type": "string"}, "title": {"type": "string"}, "subtitle": _str_null,
        "summary": _str_null, "language": {"type": "string"},
        "completion_rule": _enum("all_required", "all_activities", "any_activity"),
        "estimated_minutes": {"type": ["integer", "null"]}, "status": _enum("draft", "published", "archived"),
        "credit": _obj({"hours": _num_null, "kind": _str_null, "expires_after_months": {"type": ["integer", "null"]}}),
        "version": _obj({"number": {"type": "integer"}, "status": {"type": "string"}, "published_at": _ts_null}),
        "owner": {"oneOf": [_obj({"id": _id_null, "name": _str_null}), {"type": "null"}]},
        "certificate_template_id": _id_null, "created_at": _ts, "updated_at": _ts,
    }, ["id", "slug", "title", "status"]),
    "CourseCreate": _obj(_COURSE_FIELDS, ["slug", "title"], closed=True),
    "CourseUpdate": _obj(_COURSE_FIELDS, [], closed=True),
    "Module": _obj({"id": _id, "course_id": _id, "title": {"type": "string"}, "position": {"type": "integer"}},
                   ["id", "course_id", "title", "position"]),
    "Lesson": _obj({"id": _id, "module_id": _id, "title": {"type": "string"}, "position": {"type": "integer"}},
                   ["id", "module_id", "title", "position"]),
    "Activity": _obj({
        "id": _id, "lesson_id": _id, "title": {"type": "string"}, "position": {"type": "integer"},
        "kind": _enum("scorm", "video", "reading", "link", "assessment"), "required": {"type": "boolean"},
        "scorm_package_id": _id_null, "sco_identifier": _str_null,
        "passing_score_scaled": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    }, ["id", "lesson_id", "title", "position", "kind"]),
    "Enrollment": _obj({
        "id": _id, "user_id": _id, "course_id": _id, "status": _enum("active", "completed", "cancelled", "expired"),
        "source": {"type": "string", "maxLength": 64}, "enrolled_at": _ts, "expires_at": _ts_null,
        "completed_at": _ts_null, "cancelled_at": _ts_null,
        "progress": _obj({"required_total": {"type": "integer"}, "required_done": {"type": "integer"}}),
    }, ["id", "user_id", "course_id", "status"]),
    "EnrollmentCreate": _obj({"user_id": _id, "course_id": _id, "source": {"type": "string", "maxLength": 64},
                              "expires_at": _ts_null}, ["user_id", "course_id"], closed=True),
    "CohortGrantCreate": _obj({"user_id": _id, "cohort_id": _id, "expires_at": _ts_null},
                              ["user_id", "cohort_id"], closed=True),
    "CohortGrant": _obj({"cohort_id": _id, "user_id": _id, "granted_at": _ts,
                         "enrollments": {"type": "array", "items": {"$ref": "#/components/schemas/Enrollment"}}},
                        ["cohort_id", "user_id", "enrollments"]),
    "Attempt": _obj({
        "id": _id, "enrollment_id": _id, "activity_id": _id, "user_id": _id, "course_id": _id,
        "status": _enum("not_attempted", "incomplete", "completed", "passed", "failed", "browsed"),
        "score_raw": _num_null, "score_scaled": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
        "passed": {"type": ["boolean", "null"]}, "time_started_at": _ts_null, "time_ended_at": _ts_null,
        "total_time_seconds": {"type": "number"}, "created_at": _ts, "updated_at": _ts,
    }, ["id", "enrollment_id", "activity_id", "status"]),
    "LaunchCreate": _obj({"activity_id": _id}, ["activity_id"], closed=True),
    "RuntimeCommit": _obj({"cmi": {"type": "object", "additionalProperties": {"type": "string"},
                                   "description": "SCORM 1.2 or 2004 element names and string values"}},
                          ["cmi"], closed=True),
    "Launch": _obj({"launch_url": {"type": "string"}, "runtime_token": {"type": "string"}, "expires_at": _ts,
                    "attempt_id": _id}, ["launch_url", "runtime_token", "expires_at", "attempt_id"]),
    "Certificate": _obj({
        "id": _id, "user_id": _id, "course_id": _id, "enrollment_id": _id, "template_id": _id_null,
        "verification_id": {"type": "string", "minLength": 40, "maxLength": 40},
        "verification_url": {"type": "string"}, "recipient_name": {"type": "string"},
        "course_title": {"type": "string"}, "credit": _obj({"hours": _num_null, "kind": _str_null}),
        "issued_at": _ts, "expires_at": _ts_null, "is_revoked": {"type": "boolean"}, "revoked_at": _ts_null,
        "revoked_reason": _str_null,
        "pdf": {"oneOf": [_obj({"url": {"type": "string"}, "sha256": {"type": "string"}, "bytes": {"type": "integer"},
                                "version": {"type": "integer"}, "generated_at": _ts}), {"type": "null"}]},
    }, ["id", "verification_id", "is_revoked"]),
    "CertificateRevoke": _obj({"reason": {"type": "string", "minLength": 1}}, ["reason"], closed=True),
    "CertificateTemplate": _obj({
        "id": _id, "name": {"type": "string"}, "is_default": {"type": "boolean"},
        "orientation": _enum("landscape", "portrait"), "page_size": _enum("A4", "Letter"),
        "title_text": {"type": "string"}, "body_text": {"type": "string"},
        "primary_color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
        "accent_color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
        "signatory_name": _str_null, "signatory_title": _str_null, "version": {"type": "integer"},
        "created_at": _ts, "updated_at": _ts,
    }, ["id", "name", "is_default"]),
    "ScormPackage": _obj({
        "id": _id, "title": {"type": "string"}, "scorm_version": _enum("1.2", "2004-2nd", "2004-3rd", "2004-4th"),
        "status": _enum("processing", "ready", "failed"), "error": _str_null, "bytes": {"type": "integer"},
        "sha256": {"type": "string"}, "organization_identifier": _str_null, "created_at": _ts,
        "scos": {"type": "array", "items": _obj({
            "identifier": {"type": "string"}, "title": {"type": "string"}, "launch_url": {"type": "string"},
            "parameters": _str_null, "mastery_score": _num_null, "position": {"type": "integer"},
            "parent_identifier": _str_null})},
    }, ["id", "title", "status"]),
}

_ERRORS = {
    "400": "invalid_argument or missing_field: the payload or query was rejected.",
    "401": "invalid_api_key: missing, malformed, unknown, revoked or expired key, or another tenant's host.",
    "403": "insufficient_scope (the message names the scope) or plan_not_eligible.",
    "404": "not_found (no such route) or <resource>_not_found.",
    "405": "method_not_allowed.",
    "413": "payload_too_large.",
    "415": "unsupported_media_type: a JSON endpoint was sent something else.",
    "429": "rate_limited: see Retry-After and RateLimit.",
    "503": "service_unavailable: a backing service is down (504 when it is too slow).",
}


def _envelope(schema: str, many: bool) -> dict[str, Any]:
    data = {"$ref": f"#/components/schemas/{schema}"}
    return _obj({
        "data": {"type": "array", "items": data} if many else data,
        "next_cursor": _str_null,
        "request_id": {"type": "string", "pattern": "^req_"},
    }, ["data", "next_cursor", "request_id"])


def _success(route: Route) -> tuple[str, dict[str, Any]]:
    created = route.method == "POST" and route.path.endswith(("/courses", "/enrollments", "/launches"))
    status = "201" if created else "200"
    if route.response == "pdf":
        return status, {"description": "The PDF.",
                        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
    if route.response == "html":
        return status, {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
    if route.response == "binary":
        return status, {"description": "A file.",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    if route.response == "raw" or route.schema is None:
        return status, {"description": "The service's answer.", "content": {"application/json": {"schema": {}}}}
    return status, {"description": "The " + ("list" if route.response == "list" else "resource") + ".",
                    "content": {"application/json": {"schema": _envelope(route.schema, route.response == "list")}}}


def _parameters(route: Route) -> list[dict[str, Any]]:
    params = []
    for seg in route.path.split("/"):
        if seg.startswith("{"):
            name = seg.strip("{}+")
            params.append({"name": name, "in": "path", "required": True,
                           "schema": {"type": "string"} if name in ("vid", "token", "path") else _id})
    for name in route.query:
        schema: dict[str, Any] = {"type": "string"} if name == "cursor" else (
            {"type": "integer", "minimum": 1, "maximum": 100, "default": 50} if name == "limit" else _id)
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    return params


def _error(text: str, html: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    if html:  # pages answer their own errors (a missing certificate) as HTML; the gateway's stay JSON
        content["text/html"] = {"schema": {"type": "string"}}
    return {"description": text, "content": content}


IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$"},
    "description": "Makes a retry safe (IETF httpapi Idempotency-Key draft; docs/idempotency.md): the same key "
                   "with the same request replays the first 2xx answer with `Idempotent-Replayed: true`; keys "
                   "belong to the tenant and expire after 24 hours.",
}
_IDEMPOTENCY_ERRORS = {
    "409": "idempotency_key_in_flight: the first request with this Idempotency-Key is still running; retry "
           "after Retry-After to get its answer.",
    "422": "idempotency_key_reused: this Idempotency-Key was used for another request (method, path or body).",
}
_REPLAYED_HEADER = {"Idempotent-Replayed": {
    "description": "`true` when this is the stored answer of an earlier request with the same Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]}}}


def _operation(route: Route) -> dict[str, Any]:
    status, success = _success(route)
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.upstream],
        "parameters": _parameters(route),
        "responses": {status: success, **{code: _error(text, route.response == "html")
                                          for code, text in _ERRORS.items()}},
        "x-upstream": route.upstream,
    }
    if route.method == "POST" and route.path.endswith(("/enrollments", "/cohorts/grant")):
        # Idempotent creates: 201 when something was created, 200 when the existing resource is returned.
        again = dict(success)
        again["description"] = "Nothing new: the existing resource (an idempotent repeat)."
        op["responses"] = {"200": again, **op["responses"]}
        if status == "200":
            op["responses"]["201"] = dict(success, description="Created.")
    if route.scope is None:
        op["security"] = []
        op["description"] = "No API key: the service checks the token or id in the path."
    else:
        op["security"] = [{"ApiKey": [route.scope]}]
        op["x-required-scope"] = route.scope
        op["description"] = f"Requires the `{route.scope}` scope."
    if route.method == "POST" and route.scope is not None:  # every write of the public API
        op["parameters"].append(IDEMPOTENCY_PARAMETER)
        op["responses"].update({code: _error(text) for code, text in _IDEMPOTENCY_ERRORS.items()})
        for code, response in op["responses"].items():
            if code.startswith("2"):
                op["responses"][code] = {**response, "headers": _REPLAYED_HEADER}
    if route.body:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}}}
    elif route.method == "POST" and route.scope is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": _obj({}, closed=True)}}}
    return op


def build_document(server_url: str = "/") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in (*PUBLIC_ROUTES, *PASS_THROUGH_ROUTES):
        path = route.path.replace("+}", "}")
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mobieusCore API — mobieusLearn",
            "version": VERSION,
            "description": "The Learn surface of the public REST API. Every success is "
                           "`{data, next_cursor, request_id}`; every error is `{error: {code, message, request_id}}`. "
                           "Read-your-writes: after a 2xx write, the tenant's next request on any route sees it; if "
                           "propagation takes longer than the bound, the answer is `503 not_yet_consistent` with "
                           "`Retry-After` (retry it). Behind several gateway replicas, echo the `Consistency-Token` "
                           "response header on the next request (docs/decisions/0010-read-your-writes.md).",
        },
        "servers": [{"url": server_url}],
        "security": [{"ApiKey": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"ApiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "mc_live_...",
                                           "description": "An API key made in the admin API or with learnctl."}},
        },
    }


if __name__ == "__main__":  # pragma: no cover - writes docs/openapi.json
    json.dump(build_document(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
