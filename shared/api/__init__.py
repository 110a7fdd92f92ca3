"""The public API's resources, request bodies, envelopes and errors as pydantic models.

The single source of the OpenAPI document (``services/gateway/openapi.py`` generates its schemas from these
models, so nullability and ``required`` come from the models): a field a service answers with must be declared
here. Services may validate requests and build answers with the same models.
"""

from enum import StrEnum

from shared.api import errors, resources
from shared.api.envelopes import ENVELOPES, envelope_of, list_of
from shared.api.errors import ERROR_CODES, Error, ErrorBody, ErrorCode
from shared.api.requests import (
    CertificateRevoke,
    CohortGrantCreate,
    CourseCreate,
    CourseUpdate,
    EnrollmentCreate,
    LaunchCreate,
    RuntimeCommit,
    RuntimeFinish,
)
from shared.api.resources import (
    Activity,
    Attempt,
    Certificate,
    CertificateTemplate,
    CohortGrant,
    Course,
    Enrollment,
    Launch,
    Lesson,
    Module,
    RuntimeCommitted,
    ScormPackage,
    ScormPackageDetail,
    ScormUpload,
)

# Every enum of the API by name (the document gives each member's name as x-enum-varnames).
ENUMS: dict[str, type[StrEnum]] = {
    name: value for module in (resources, errors) for name, value in vars(module).items()
    if isinstance(value, type) and issubclass(value, StrEnum) and value is not StrEnum
}

__all__ = [
    "ENUMS", "ENVELOPES", "ERROR_CODES", "Activity", "Attempt", "Certificate", "CertificateRevoke",
    "CertificateTemplate",
    "CohortGrant", "CohortGrantCreate", "Course", "CourseCreate", "CourseUpdate", "Enrollment", "EnrollmentCreate",
    "Error", "ErrorBody", "ErrorCode", "Launch", "LaunchCreate", "Lesson", "Module", "RuntimeCommit",
    "RuntimeCommitted", "RuntimeFinish", "ScormPackage", "ScormPackageDetail", "ScormUpload", "envelope_of", "list_of",
]
