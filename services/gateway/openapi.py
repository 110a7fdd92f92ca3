"""The OpenAPI 3.1 document of the public API, generated from the route table (so it cannot miss a route) and
the pydantic models of ``shared.api`` (so nullability, ``required`` and every field come from the models the
services answer with).

Served at ``/api/v1/learn/openapi.json``; ``python -m services.gateway.openapi`` prints it (docs/openapi.json).
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.gateway.routes import PASS_THROUGH_ROUTES, PUBLIC_ROUTES, Route
from shared import api
from shared.api.examples import EXAMPLES

VERSION = "1.3.0"
REF = "#/components/schemas/{model}"

REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    api.CourseCreate, api.CourseUpdate, api.EnrollmentCreate, api.CohortGrantCreate, api.LaunchCreate,
    api.CertificateRevoke, api.RuntimeCommit, api.RuntimeFinish,
)


def _strip_titles(node: Any, *, top: bool = False) -> Any:
    """Pydantic titles every property ("Id", "Slug"): noise for readers and generators. Keep component titles."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if not (k == "title" and not top and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _defaults_as_text(schema: dict[str, Any]) -> None:
    """A request field's default goes into its description, not ``default``: generators read ``default`` as
    "always there" (openapi-typescript makes such a field required in the body) or send it on every request;
    and an update's omitted field keeps its value, which no ``default`` can say."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop:
            value = prop.pop("default")
            if value is not None:
                text = f"Default when omitted: `{json.dumps(value)}`."
                prop["description"] = f"{prop['description']} {text}" if "description" in prop else text


@cache
def schemas() -> dict[str, Any]:
    """Every component schema, generated from ``shared.api``."""
    models: list[tuple[type[BaseModel], Any]] = [(m, "serialization") for m in api.ENVELOPES.values()]
    models.append((api.Error, "serialization"))
    models += [(m, "validation") for m in REQUEST_MODELS]
    _, top = models_json_schema(models, ref_template=REF)
    defs = {name: _strip_titles(schema, top=True) for name, schema in top["$defs"].items()}
    for model in REQUEST_MODELS:
        _defaults_as_text(defs[model.__name__])
    for name, enum in api.ENUMS.items():
        if name in defs:  # readable member names in generated clients (ScormVersion.V1_2, not VALUE_0)
            defs[name]["x-enum-varnames"] = [enum(v).name for v in defs[name]["enum"]]
    codes = defs["ErrorCode"]
    codes["description"] = "The error code; stable, for programs (the message is for people).\n\n" + "\n".join(
        f"- `{code.value}` ({status}): {text}" for code, (status, text) in api.ERROR_CODES.items())
    codes["x-enum-descriptions"] = [api.ERROR_CODES[api.ErrorCode(v)][1] for v in codes["enum"]]
    return dict(sorted(defs.items()))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


HEADERS: dict[str, Any] = {
    "X-Request-Id": _header("The request id (`req_...`), also in the body; quote it when reporting a problem.",
                           {"type": "string", "pattern": "^req_"}),
    "RateLimit": _header('Requests left for this key and seconds until the bucket is full (IETF draft), e.g. '
                         '`"per-key";r=99;t=1`.'),
    "RateLimit-Policy": _header('The key\'s limit (IETF draft), e.g. `"per-key";q=100;w=1`.'),
    "Retry-After": _header("Seconds to wait before retrying.", {"type": "integer", "minimum": 0}),
    "WWW-Authenticate": _header("`Bearer`, or `Bearer error=\"insufficient_scope\", scope=\"...\"` on 403."),
    "Allow": _header("The methods the route takes (on 405)."),
    "Idempotent-Replayed": _header("`true` when this is the stored answer of an earlier request with the same "
                                   "Idempotency-Key.", {"type": "string", "enum": ["true"]}),
    "Location": _header("The created resource's URL (path on this host)."),
    "Tus-Resumable": _header("The tus protocol version: `1.0.0`.", {"type": "string", "enum": ["1.0.0"]}),
    "Upload-Offset": _header("Bytes of the upload the server holds.", {"type": "integer", "minimum": 0}),
    "Upload-Length": _header("The upload's total size in bytes.", {"type": "integer", "minimum": 1}),
    "Consistency-Token": _header("Echo it on the next request when talking to several gateway replicas "
                                 "(read-your-writes, docs/decisions/0010-read-your-writes.md)."),
}

CONSISTENCY_PARAMETER_DOC = ("Send back the last `Consistency-Token` response header to read your writes on any "
                             "gateway replica.")

IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$"},
    "description": "Makes a retry safe (IETF httpapi Idempotency-Key draft; docs/idempotency.md): the same key "
                   "with the same request replays the first 2xx answer with `Idempotent-Replayed: true`; keys "
                   "belong to the tenant and expire after 24 hours.",
}


def _h(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


# status -> (description, headers beyond X-Request-Id)
_ERRORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "400": ("invalid_argument or missing_field: the payload or query was rejected.", ()),
    "401": ("invalid_api_key: missing, malformed, unknown, revoked or expired key, or another tenant's host.",
            ("WWW-Authenticate",)),
    "403": ("insufficient_scope (the message names the scope), plan_not_eligible, or course_limited_key (a "
            "per-course key on a route not about one of its courses).", ("WWW-Authenticate",)),
    "404": ("not_found (no such route) or <resource>_not_found.", ()),
    "409": ("idempotency_key_in_flight: the first request with this Idempotency-Key is still running; retry "
            "after Retry-After to get its answer. scorm_package_in_use: published courses use the package (named "
            "in the message). upload_offset_mismatch: a PATCH not at the offset the server holds (ask HEAD).",
            ("Retry-After",)),
    "410": ("launch_ended: the launch of this runtime token has ended.", ()),
    "413": ("payload_too_large.", ()),
    "415": ("unsupported_media_type: a JSON endpoint was sent something else.", ()),
    "422": ("idempotency_key_reused: this Idempotency-Key was used for another request (method, path or body).",
            ()),
    "429": ("rate_limited: see Retry-After and RateLimit.", ("RateLimit", "RateLimit-Policy", "Retry-After")),
    "500": ("internal: a bug; the body has only the code, a generic message and the request id.", ()),
    "502": ("service_unavailable: a backing service gave no usable answer.", ()),
    "503": ("service_unavailable (a backing service is down) or not_yet_consistent (a write has not reached this "
            "read yet): retry after Retry-After.", ("Retry-After",)),
    "504": ("service_unavailable: a backing service was too slow.", ()),
    "default": ("Any other error, in the error envelope.", ()),
}


def _common_headers(route: Route, status: str) -> tuple[str, ...]:
    """Headers of any answer of the route: the request id; past the key check (not on 401/403) the rate limit
    state; and, from the backing service's answer, the Consistency-Token."""
    if route.scope is not None and status in ("401", "403"):
        return ("X-Request-Id",)
    limits = ("RateLimit", "RateLimit-Policy") if route.scope is not None else ()
    return ("X-Request-Id", *limits, "Consistency-Token")


def _error_response(route: Route, status: str) -> dict[str, Any]:
    text, headers = _ERRORS[status]
    names = dict.fromkeys((*_common_headers(route, status), *headers))
    return {"description": text, "headers": _h(*names), "content": {"application/json": {"schema": _ref("Error")}}}


def _status_of(route: Route) -> str:
    if route.method == "PATCH":
        return "204"  # tus: the bytes were appended; Upload-Offset says where the upload stands
    if route.upload:
        return "202"  # accepted: the work (an import) goes on in the background
    created = route.method == "POST" and route.path.endswith(("/courses", "/enrollments", "/launches",
                                                              "/scorm-uploads"))
    return "201" if created else "200"


def _success(route: Route) -> dict[str, Any]:
    if route.response == "empty":
        return {"description": "No body: the headers say it (Upload-Offset, Upload-Length, Tus-Resumable)."}
    if route.response == "pdf":
        return {"description": "The PDF.", "content": {"application/pdf": {
            "schema": {"type": "string", "format": "binary"}}}}
    if route.response == "html":
        return {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
    if route.response == "binary":
        return {"description": "A file (its media type is the file's).",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    assert route.schema is not None, route.path
    many = route.response == "list"
    name = f"{route.schema}List" if many else f"{route.schema}Response"
    media: dict[str, Any] = {"schema": _ref(name)}
    example = EXAMPLES.get(route.operation_id)
    if example is not None:
        media["example"] = example
    return {"description": "The " + ("list" if many else "resource") + ".", "content": {"application/json": media}}


#: query parameters that are not lists' paging or integer filters
QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "title": {"schema": {"type": "string", "minLength": 1, "maxLength": 300},
              "description": "The package's title (else the manifest's; docs/scorm-import.md)."},
    "dedupe": {"schema": {"type": "boolean", "default": False},
               "description": "`true`: when this tenant already has a package (not failed) with the same bytes "
                              "(sha256 of the zip), answer `200` with it instead of importing again."},
}

#: tus 1.0.0 request headers of the resumable upload routes
TUS_PARAMETERS: dict[str, dict[str, Any]] = {
    "Upload-Length": {"name": "Upload-Length", "in": "header", "required": True,
                      "schema": {"type": "integer", "minimum": 1},
                      "description": "The package's size in bytes (up to the upload limit; over it: 413)."},
    "Upload-Offset": {"name": "Upload-Offset", "in": "header", "required": True,
                      "schema": {"type": "integer", "minimum": 0},
                      "description": "Where these bytes start: the offset HEAD reported (else 409)."},
    "Upload-Metadata": {"name": "Upload-Metadata", "in": "header", "required": False, "schema": {"type": "string"},
                        "description": "tus metadata: `title <base64>` sets the package's title."},
    "Tus-Resumable": {"name": "Tus-Resumable", "in": "header", "required": False,
                      "schema": {"type": "string", "enum": ["1.0.0"]}},
}

#: the request body of an upload route: the file itself, or a form with a ``file`` part
UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "description": "The SCORM zip, streamed (up to LEARN_GATEWAY_MAX_UPLOAD_BYTES; over it: 413).",
    "content": {
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary", "description": "The zip."},
                "title": {"type": "string", "maxLength": 300, "description": "As the `title` query parameter."},
            }},
            "encoding": {"file": {"contentType": "application/zip, application/octet-stream"}},
        },
    },
}


def _parameters(route: Route) -> list[dict[str, Any]]:
    params = []
    for seg in route.path.split("/"):
        if seg.startswith("{"):
            name = seg.strip("{}+")
            params.append({"name": name, "in": "path", "required": True,
                           "schema": {"type": "string"} if name in ("vid", "token", "path") else
                           {"type": "integer", "minimum": 1}})
    for name in route.query:
        if name in QUERY_PARAMETERS:
            params.append({"name": name, "in": "query", "required": False, **QUERY_PARAMETERS[name]})
            continue
        schema: dict[str, Any] = {"type": "string"} if name == "cursor" else (
            {"type": "integer", "minimum": 1, "maximum": 100, "default": 50} if name == "limit" else
            {"type": "integer", "minimum": 1})
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    return params


def _error_statuses(route: Route) -> list[str]:
    keyed = route.scope is not None
    token = "{token}" in route.path
    codes = ["400"] if keyed or route.body else []
    if keyed or token:
        codes.append("401")  # an API key, or a runtime token (no 403/429 there: no key, no scope, no limit)
    if keyed:
        codes.append("403")
    codes.append("404")
    if keyed and route.method in ("POST", "DELETE", "PATCH"):
        codes.append("409")
    if token:
        codes.append("410")
    if route.method in ("POST", "PATCH"):
        codes += ["413", "415"]
    if keyed and route.method in ("POST", "DELETE"):
        codes.append("422")
    if keyed:
        codes.append("429")
    return [*codes, "500", "502", "503", "504", "default"]


def _operation(route: Route) -> dict[str, Any]:
    keyed = route.scope is not None
    status = _status_of(route)
    success = _success(route)
    ok_headers = list(_common_headers(route, status))
    if keyed and route.method in ("POST", "DELETE"):
        ok_headers.append("Idempotent-Replayed")
    success["headers"] = _h(*ok_headers)
    responses: dict[str, Any] = {status: success}
    if route.method == "HEAD":
        success["headers"] = _h(*ok_headers, "Tus-Resumable", "Upload-Offset", "Upload-Length")
    elif route.method == "PATCH":
        success["headers"] = _h(*ok_headers, "Tus-Resumable", "Upload-Offset", "Location")
        success["description"] = ("Appended. When Upload-Offset reaches the length, the import started: Location "
                                  "names the package (processing).")
        responses = {"204": success}
    elif route.path.endswith("/scorm-uploads"):
        success["headers"] = _h(*ok_headers, "Tus-Resumable", "Upload-Offset", "Location")
    elif route.upload:
        success["headers"] = _h(*ok_headers, "Location")
        again = {**success, "description": "With `dedupe=true`: the tenant's package with the same bytes."}
        accepted = {**success, "description": "Accepted: the package, `processing`; poll its `Location` (or "
                                              "listen for scorm_package.ready / .failed)."}
        responses = {"200": again, "202": accepted} if "dedupe" in route.query else {"202": accepted}
    elif route.method == "POST" and route.path.endswith(("/enrollments", "/cohorts/grant")):
        # Idempotent creates: 201 when something was created, 200 when the existing resource is returned.
        again = {**success, "description": "Nothing new: the existing resource (an idempotent repeat)."}
        if status == "200":
            responses = {"200": again, "201": {**success, "description": "Created."}}
        else:
            responses = {"200": again, status: success}
    for code in _error_statuses(route):
        responses[code] = _error_response(route, code)
        if route.method == "HEAD":  # an answer to HEAD has no body (the status says it)
            responses[code].pop("content", None)
        if route.response == "html" and code in ("404", "410"):
            # pages answer their own errors (a missing certificate, an ended launch) as HTML
            responses[code]["content"]["text/html"] = {"schema": {"type": "string"}}
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.upstream],
        "parameters": _parameters(route),
        "responses": responses,
        "x-upstream": route.upstream,
    }
    if not keyed:
        op["security"] = []
        op["description"] = "No API key: the service checks the token or id in the path."
    else:
        op["security"] = [{"ApiKey": [route.scope]}]
        op["x-required-scope"] = route.scope
        op["description"] = (f"Requires the `{route.scope}` scope. " + _course_limit_doc(route) + " "
                             + CONSISTENCY_PARAMETER_DOC)
        op["x-course-scoped"] = route.course_scoped
    if route.method in ("POST", "DELETE") and keyed:  # every write of the public API honours Idempotency-Key
        op["parameters"].append(IDEMPOTENCY_PARAMETER)
    if route.method == "PATCH":
        op["requestBody"] = {"required": True, "description": "The next bytes of the zip, from Upload-Offset.",
                             "content": {"application/offset+octet-stream": {
                                 "schema": {"type": "string", "format": "binary"}}}}
        op["parameters"] += [TUS_PARAMETERS["Upload-Offset"], TUS_PARAMETERS["Tus-Resumable"]]
    elif route.path.endswith("/scorm-uploads") and route.method == "POST":
        op["parameters"] += [TUS_PARAMETERS["Upload-Length"], TUS_PARAMETERS["Upload-Metadata"],
                             TUS_PARAMETERS["Tus-Resumable"]]
    elif route.method == "HEAD":
        op["parameters"].append(TUS_PARAMETERS["Tus-Resumable"])
    if route.upload and route.method != "PATCH":
        op["requestBody"] = UPLOAD_BODY
    elif route.body:
        op["requestBody"] = {"required": route.body != "RuntimeFinish", "content": {
            "application/json": {"schema": _ref(route.body)}}}
    return op


def _course_limit_doc(route: Route) -> str:
    """What a per-course API key (``course_ids``, ADR 0019) may do on this route."""
    if not route.course_scoped:
        return "A per-course API key gets `403 course_limited_key` here."
    if route.response == "list":
        return "A per-course API key lists only its courses' rows."
    return ("A per-course API key reaches only its courses and what hangs under them; another course's id "
            "answers `404` exactly like a missing id.")


def build_document(server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in (*PUBLIC_ROUTES, *PASS_THROUGH_ROUTES):
        path = route.path.replace("+}", "}")
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    servers: list[dict[str, Any]] = [{
        "url": "https://{tenant}.{domain}",
        "description": "Your tenant's API host (the API key decides the tenant; a host of another tenant is 401).",
        "variables": {"tenant": {"default": "acme", "description": "Your tenant's slug."},
                      "domain": {"default": "learn.example.com", "description": "LEARN_BASE_DOMAIN of the install."}},
    }]
    servers.append({"url": server_url or "/", "description": "This server."})
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
                           "response header on the next request (docs/decisions/0010-read-your-writes.md). "
                           "Generating a client: docs/clients.md.",
        },
        "servers": servers,
        "security": [{"ApiKey": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "headers": HEADERS,
            "securitySchemes": {"ApiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "mc_live_...",
                                           "description": "An API key made in the admin API or with learnctl. "
                                                          "A key made with `course_ids` reads and writes only "
                                                          "those courses and their modules, lessons, activities, "
                                                          "enrollments, attempts, certificates and cohort grants "
                                                          "(docs/gateway.md)."}},
        },
    }


if __name__ == "__main__":  # pragma: no cover - writes docs/openapi.json
    json.dump(build_document(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
