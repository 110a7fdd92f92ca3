"""The error envelope and the closed set of error codes, each with what it means (CONTRACT.md §4)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(StrEnum):
    """Every ``error.code`` the public API answers with (the meaning of each is in ``ERROR_CODES``)."""

    INVALID_ARGUMENT = "invalid_argument"
    MISSING_FIELD = "missing_field"
    INVALID_API_KEY = "invalid_api_key"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    PLAN_NOT_ELIGIBLE = "plan_not_eligible"
    COURSE_LIMITED_KEY = "course_limited_key"
    NOT_ON_COURSE_TEAM = "not_on_course_team"
    NOT_FOUND = "not_found"
    COURSE_NOT_FOUND = "course_not_found"
    MODULE_NOT_FOUND = "module_not_found"
    LESSON_NOT_FOUND = "lesson_not_found"
    ACTIVITY_NOT_FOUND = "activity_not_found"
    ENROLLMENT_NOT_FOUND = "enrollment_not_found"
    ATTEMPT_NOT_FOUND = "attempt_not_found"
    COHORT_NOT_FOUND = "cohort_not_found"
    CERTIFICATE_NOT_FOUND = "certificate_not_found"
    TEMPLATE_NOT_FOUND = "template_not_found"
    SCORM_PACKAGE_NOT_FOUND = "scorm_package_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    IDEMPOTENCY_KEY_IN_FLIGHT = "idempotency_key_in_flight"
    LAUNCH_ENDED = "launch_ended"
    SCORM_PACKAGE_IN_USE = "scorm_package_in_use"
    SCORM_UPLOAD_NOT_FOUND = "scorm_upload_not_found"
    UPLOAD_OFFSET_MISMATCH = "upload_offset_mismatch"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    SERVICE_UNAVAILABLE = "service_unavailable"
    NOT_YET_CONSISTENT = "not_yet_consistent"


# code -> (HTTP status, meaning). Collected from the services (``grep -rn 'ApiError(' services shared``).
ERROR_CODES: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.INVALID_ARGUMENT: (400, "The payload or query was rejected; the message says why (bad type or "
                                      "enum, unknown field, slug taken, illegal state change, bad cursor ...)."),
    ErrorCode.MISSING_FIELD: (400, "A required field is empty or absent; the message names it."),
    ErrorCode.INVALID_API_KEY: (401, "The API key is missing, malformed, unknown, revoked or expired, its tenant "
                                     "is suspended, or the host names another tenant (also: a bad runtime token)."),
    ErrorCode.INSUFFICIENT_SCOPE: (403, "The API key lacks the scope; the message names it."),
    ErrorCode.PLAN_NOT_ELIGIBLE: (403, "The tenant's plan does not include the public API (Pro, Creator Plus and "
                                       "Sovereign do)."),
    ErrorCode.COURSE_LIMITED_KEY: (403, "The API key is limited to some courses (course_ids) and the route is not "
                                        "about one of them: creating a course, certificate templates, SCORM "
                                        "packages."),
    ErrorCode.NOT_ON_COURSE_TEAM: (403, "A staff author changed a course (or its modules, lessons, activities, "
                                        "lifecycle) whose team they are not on (admin API and UI; ADR 0021)."),
    ErrorCode.NOT_FOUND: (404, "No such route."),
    ErrorCode.COURSE_NOT_FOUND: (404, "No course with this id in the tenant."),
    ErrorCode.MODULE_NOT_FOUND: (404, "No module with this id in the tenant."),
    ErrorCode.LESSON_NOT_FOUND: (404, "No lesson with this id in the tenant."),
    ErrorCode.ACTIVITY_NOT_FOUND: (404, "No activity with this id in the tenant."),
    ErrorCode.ENROLLMENT_NOT_FOUND: (404, "No enrollment with this id in the tenant."),
    ErrorCode.ATTEMPT_NOT_FOUND: (404, "No attempt with this id in the tenant."),
    ErrorCode.COHORT_NOT_FOUND: (404, "No cohort with this id in the tenant."),
    ErrorCode.CERTIFICATE_NOT_FOUND: (404, "No certificate with this id (or verification id) in the tenant."),
    ErrorCode.TEMPLATE_NOT_FOUND: (404, "No certificate template with this id in the tenant."),
    ErrorCode.SCORM_PACKAGE_NOT_FOUND: (404, "No SCORM package with this id in the tenant."),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "The route exists but not with this method; see the Allow header."),
    ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT: (409, "The first request with this Idempotency-Key is still running; "
                                               "retry after Retry-After to get its answer."),
    ErrorCode.SCORM_PACKAGE_IN_USE: (409, "Published courses use this SCORM package, so it cannot be archived; the "
                                          "message names them."),
    ErrorCode.SCORM_UPLOAD_NOT_FOUND: (404, "No resumable upload with this id in the tenant (or it expired)."),
    ErrorCode.UPLOAD_OFFSET_MISMATCH: (409, "The PATCH's Upload-Offset is not the offset the server holds; ask "
                                            "HEAD for it and go on from there."),
    ErrorCode.LAUNCH_ENDED: (410, "The runtime token's launch has ended (finished or superseded)."),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "The request body is over the limit (JSON: 1 MiB; a SCORM upload: "
                                       "LEARN_GATEWAY_MAX_UPLOAD_BYTES)."),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: (415, "A JSON endpoint was sent another media type, or an upload neither a "
                                            "zip nor a multipart form."),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: (422, "This Idempotency-Key was used for another request (method, path or "
                                            "body)."),
    ErrorCode.RATE_LIMITED: (429, "Too many requests for this API key; see Retry-After and RateLimit."),
    ErrorCode.INTERNAL: (500, "A bug; the body has only the code, a generic message and the request id."),
    ErrorCode.SERVICE_UNAVAILABLE: (503, "A backing service is down (502/503; retry after Retry-After) or too "
                                         "slow (504)."),
    ErrorCode.NOT_YET_CONSISTENT: (503, "A write of this tenant has not reached this read yet (read-your-writes "
                                        "bound passed); retry after Retry-After."),
}


class ErrorBody(BaseModel):
    """What went wrong: a stable code, a human message and the request id."""

    model_config = ConfigDict(title="ErrorBody")

    code: ErrorCode
    message: str
    request_id: str = Field(pattern="^req_")


class Error(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "request_id"}}``."""

    model_config = ConfigDict(json_schema_extra={"examples": [  # a real answer (tests/openapi)
        {"error": {"code": "course_not_found", "message": "Course not found.",
                   "request_id": "req_9c1e0f3b5d2a47e8b6f41a07"}}]})

    error: ErrorBody
