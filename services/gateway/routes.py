"""The route table: one declarative list of every public route (method, path, scope, service), and its tables.

The table drives the request pipeline, the OpenAPI document and the scope-matrix tests, so a route added here
is authorised, documented and tested by construction. This module is data: the matcher (a segment trie) is
``domain.RouteTable``, so a request's route lookup does not cross this file.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.domain import RouteTable

API_PREFIX = "/api/v1/learn"
READ, WRITE, GRANT = "learn:read", "learn:write", "learn:cohorts:grant"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # pattern: ``{name}`` is one segment, ``{name+}`` the rest of the path (one or more segments)
    scope: str | None  # None: no API key (the service checks its own token or serves public data)
    upstream: str  # catalog | enrollment | certificates | scorm | webhooks
    summary: str
    # For the OpenAPI document: the response shape and the request body, by schema name.
    response: str = "object"  # object | list | pdf | html | binary | raw
    body: str | None = None
    schema: str | None = None  # name of the resource schema (Course, Enrollment, ...)
    query: tuple[str, ...] = ()
    op: str = ""  # the operationId (what generated clients name the call: ``updateCourse``)
    # False: the route is not about one of the tenant's courses (creating a course, templates, packages): a
    # per-course API key gets 403 course_limited_key on it (ADR 0019).
    course_scoped: bool = True
    upload: bool = False  # the body is a file, streamed, up to LEARN_GATEWAY_MAX_UPLOAD_BYTES (not the JSON cap)

    @property
    def operation_id(self) -> str:
        if self.op:
            return self.op
        words = [p.strip("{}+").replace("-", "_") for p in self.path.removeprefix(API_PREFIX).split("/") if p]
        return self.method.lower() + "_" + "_".join(words)


def _api(method: str, path: str, scope: str, upstream: str, summary: str, **kw: object) -> Route:
    return Route(method, API_PREFIX + path, scope, upstream, summary, **kw)  # type: ignore[arg-type]


_LIST = ("limit", "cursor")

PUBLIC_ROUTES: tuple[Route, ...] = (
    # courses (catalog)
    _api("GET", "/courses", READ, "catalog", "List courses (cursor-paginated).", response="list",
         schema="Course", query=_LIST, op="listCourses"),
    _api("POST", "/courses", WRITE, "catalog", "Create a course.", schema="Course", body="CourseCreate",
         op="createCourse", course_scoped=False),
    _api("GET", "/courses/{id}", READ, "catalog", "Get a course.", schema="Course", op="getCourse"),
    _api("POST", "/courses/{id}", WRITE, "catalog", "Update a course; omitted fields keep their value.",
         schema="Course", body="CourseUpdate", op="updateCourse"),
    _api("POST", "/courses/{id}/publish", WRITE, "catalog", "Publish a course.", schema="Course", op="publishCourse"),
    _api("POST", "/courses/{id}/unpublish", WRITE, "catalog", "Revert a course to draft.", schema="Course",
         op="unpublishCourse"),
    _api("POST", "/courses/{id}/archive", WRITE, "catalog", "Archive a course.", schema="Course", op="archiveCourse"),
    _api("GET", "/courses/{id}/modules", READ, "catalog", "Modules of a course.", response="list",
         schema="Module", query=_LIST, op="listCourseModules"),
    _api("GET", "/modules/{mid}/lessons", READ, "catalog", "Lessons of a module.", response="list",
         schema="Lesson", query=_LIST, op="listModuleLessons"),
    _api("GET", "/lessons/{lid}/activities", READ, "catalog", "Activities of a lesson.", response="list",
         schema="Activity", query=_LIST, op="listLessonActivities"),
    # enrollments, cohorts, attempts (enrollment)
    _api("GET", "/enrollments", READ, "enrollment", "List enrollments.", response="list", schema="Enrollment",
         query=(*_LIST, "course_id", "user_id"), op="listEnrollments"),
    _api("POST", "/enrollments", WRITE, "enrollment", "Enroll a user.", schema="Enrollment",
         body="EnrollmentCreate", op="createEnrollment"),
    _api("GET", "/enrollments/{id}", READ, "enrollment", "Get an enrollment.", schema="Enrollment", op="getEnrollment"),
    _api("POST", "/enrollments/{id}/cancel", WRITE, "enrollment", "Cancel an enrollment.", schema="Enrollment",
         op="cancelEnrollment"),
    _api("POST", "/enrollments/{id}/launches", WRITE, "scorm", "Launch an activity for the enrolled learner.",
         schema="Launch", body="LaunchCreate", op="launchActivity"),
    _api("POST", "/cohorts/grant", GRANT, "enrollment", "Grant a user access to a cohort.",
         schema="CohortGrant", body="CohortGrantCreate", op="grantCohort"),
    _api("GET", "/attempts", READ, "enrollment", "List attempts.", response="list", schema="Attempt",
         query=(*_LIST, "enrollment_id", "activity_id"), op="listAttempts"),
    _api("GET", "/attempts/{id}", READ, "enrollment", "Get an attempt.", schema="Attempt", op="getAttempt"),
    # certificates and templates (certificates)
    _api("GET", "/certificates", READ, "certificates", "List certificates.", response="list",
         schema="Certificate", query=(*_LIST, "user_id", "course_id"), op="listCertificates"),
    _api("GET", "/certificates/{id}", READ, "certificates", "Get a certificate.", schema="Certificate",
         op="getCertificate"),
    _api("GET", "/certificates/verify/{vid}", READ, "certificates",
         "Look a certificate up by its 40-character verification id.", schema="Certificate", op="verifyCertificate"),
    _api("POST", "/certificates/{id}/revoke", WRITE, "certificates", "Revoke a certificate.",
         schema="Certificate", body="CertificateRevoke", op="revokeCertificate"),
    _api("POST", "/certificates/{id}/regenerate-pdf", WRITE, "certificates",
         "Rebuild the certificate's PDF with the current template.", schema="Certificate",
         op="regenerateCertificatePdf"),
    _api("GET", "/certificates/{id}/pdf", READ, "certificates", "Download the certificate PDF.", response="pdf",
         op="getCertificatePdf"),
    _api("GET", "/cert-templates", READ, "certificates", "List certificate templates.", response="list",
         schema="CertificateTemplate", query=_LIST, op="listCertificateTemplates", course_scoped=False),
    _api("GET", "/cert-templates/{id}", READ, "certificates", "Get a certificate template.",
         schema="CertificateTemplate", op="getCertificateTemplate", course_scoped=False),
    # SCORM packages (scorm)
    _api("GET", "/scorm-packages", READ, "scorm", "List SCORM packages (any status).", response="list",
         schema="ScormPackage", query=_LIST, op="listScormPackages", course_scoped=False),
    _api("POST", "/scorm-packages", WRITE, "scorm",
         "Upload a SCORM package: the zip as the body (application/zip) or the 'file' part of a "
         "multipart/form-data body. Answers 202 with the package processing; the import runs in the background.",
         schema="ScormPackageDetail", body="ScormPackageUpload", query=("title", "dedupe"), upload=True,
         op="createScormPackage", course_scoped=False),
    _api("GET", "/scorm-packages/{id}", READ, "scorm", "Get a SCORM package with its SCO list.",
         schema="ScormPackageDetail", op="getScormPackage", course_scoped=False),
    _api("POST", "/scorm-packages/{id}/versions", WRITE, "scorm",
         "Upload a new version of a package (as the upload). Activities keep their SCO by identifier; launches "
         "in progress stay on their version, new launches get the newest ready one.",
         schema="ScormPackageDetail", body="ScormPackageUpload", query=("title",), upload=True,
         op="createScormPackageVersion", course_scoped=False),
    # resumable uploads (tus 1.0.0 core + creation; ADR 0020)
    _api("POST", "/scorm-uploads", WRITE, "scorm",
         "Start a resumable upload of a SCORM package (tus 1.0.0 creation): Upload-Length says its size.",
         schema="ScormUpload", op="createScormUpload", course_scoped=False),
    _api("GET", "/scorm-uploads/{id}", READ, "scorm",
         "A resumable upload: bytes received, and the package it became once complete.",
         schema="ScormUpload", op="getScormUpload", course_scoped=False),
    _api("HEAD", "/scorm-uploads/{id}", WRITE, "scorm",
         "The offset the server holds (Upload-Offset): where the next PATCH starts (tus 1.0.0).",
         response="empty", op="getScormUploadOffset", course_scoped=False),
    _api("PATCH", "/scorm-uploads/{id}", WRITE, "scorm",
         "Append bytes at Upload-Offset (application/offset+octet-stream); the last byte starts the import.",
         response="empty", upload=True, op="patchScormUpload", course_scoped=False),
    _api("DELETE", "/scorm-packages/{id}", WRITE, "scorm",
         "Archive a package and its versions; 409 scorm_package_in_use (naming the courses) while a published "
         "course uses it.", schema="ScormPackageDetail", op="archiveScormPackage", course_scoped=False),
)

# Reached without an API key and forwarded as they are: the service resolves the tenant from the vid / token.
# The verification page is served on the API origin (LEARN_PUBLIC_URL) ...
VERIFY_ROUTES: tuple[Route, ...] = (
    Route("GET", "/verify/{vid}", None, "certificates", "Public certificate verification page.", response="html",
          op="verifyCertificatePage"),
)
# ... the learner's player, package files and runtime on the content origin (LEARN_CONTENT_URL) and only there:
# package JavaScript runs on that origin, which holds no authority (docs/security.md).
CONTENT_ROUTES: tuple[Route, ...] = (
    Route("GET", "/learn/player/{token}", None, "scorm", "Learner player page (content origin).", response="html",
          op="getPlayerPage"),
    Route("GET", "/learn/content/{token}/{path+}", None, "scorm", "Files of the launched SCO (content origin).",
          response="binary", op="getContentFile"),
    Route("POST", "/learn/runtime/{token}/commit", None, "scorm", "Commit SCORM CMI data (content origin).",
          response="raw", schema="RuntimeCommitted", body="RuntimeCommit",
          op="commitRuntime"),
    Route("POST", "/learn/runtime/{token}/finish", None, "scorm", "End the runtime session (content origin).",
          response="raw", schema="RuntimeCommitted", body="RuntimeFinish",
          op="finishRuntime"),
    Route("GET", "/learn/static/{path+}", None, "scorm", "Player assets (content origin).", response="binary",
          op="getPlayerAsset"),
)
PASS_THROUGH_ROUTES: tuple[Route, ...] = VERIFY_ROUTES + CONTENT_ROUTES

# Admin writes and reads owned by a service: the first segment after /admin/api/v1/tenants/{slug}/ decides.
ADMIN_PREFIXES: dict[str, str] = {
    "courses": "catalog",
    "modules": "catalog",
    "lessons": "catalog",
    "activities": "catalog",
    "scorm-scos": "catalog",
    "cohorts": "enrollment",
    "cert-templates": "certificates",
    "certificates": "certificates",
    "scorm-packages": "scorm",
    "webhook-endpoints": "webhooks",
}
UPLOAD_PREFIXES = frozenset({"scorm-packages"})  # zip bodies, streamed, LEARN_GATEWAY_MAX_UPLOAD_BYTES


API_TABLE = RouteTable(PUBLIC_ROUTES)
VERIFY_TABLE = RouteTable(VERIFY_ROUTES)
CONTENT_TABLE = RouteTable(CONTENT_ROUTES)
