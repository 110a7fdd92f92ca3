"""The public resources as the services answer them (CONTRACT.md §6). Every field is always present: a field
without a default is ``required`` in the document, and ``X | None`` is how a field says it may be ``null``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

Id = Annotated[int, Field(ge=1)]
Timestamp = Annotated[datetime, Field(description="RFC 3339, UTC.")]


class _Resource(BaseModel):
    """Answers may grow fields (an additive change is not breaking), so the document does not forbid extra ones;
    the conformance test (tests/openapi) does: every field a service sends must be declared here."""


class CourseStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class CompletionRule(StrEnum):
    ALL_REQUIRED = "all_required"
    ALL_ACTIVITIES = "all_activities"
    ANY_ACTIVITY = "any_activity"


class ActivityKind(StrEnum):
    SCORM = "scorm"
    VIDEO = "video"
    READING = "reading"
    LINK = "link"
    ASSESSMENT = "assessment"


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class AttemptStatus(StrEnum):
    NOT_ATTEMPTED = "not_attempted"
    INCOMPLETE = "incomplete"
    COMPLETED = "completed"
    PASSED = "passed"
    FAILED = "failed"
    BROWSED = "browsed"


class Orientation(StrEnum):
    LANDSCAPE = "landscape"
    PORTRAIT = "portrait"


class PageSize(StrEnum):
    A4 = "A4"
    LETTER = "Letter"


class ScormVersion(StrEnum):
    V1_2 = "1.2"
    V2004_2ND = "2004-2nd"
    V2004_3RD = "2004-3rd"
    V2004_4TH = "2004-4th"


class ScormPackageStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class CourseCredit(_Resource):
    hours: Annotated[float, Field(ge=0)] | None
    kind: str | None
    expires_after_months: Annotated[int, Field(ge=1)] | None


class CourseVersion(_Resource):
    number: Annotated[int, Field(ge=1)]
    status: CourseStatus
    published_at: Timestamp | None


class CourseOwner(_Resource):
    """The admin user behind the key that created the course (null fields: unknown)."""

    id: int | None
    name: str | None


class Course(_Resource):
    id: Id
    slug: str
    title: str
    subtitle: str | None
    summary: str | None
    language: str = Field(description="BCP 47 language tag.")
    completion_rule: CompletionRule
    estimated_minutes: Annotated[int, Field(ge=0)] | None
    status: CourseStatus
    credit: CourseCredit
    version: CourseVersion
    owner: CourseOwner
    certificate_template_id: Id | None = Field(description="null: the tenant's default template.")
    created_at: Timestamp
    updated_at: Timestamp


class Module(_Resource):
    id: Id
    course_id: Id
    title: str
    position: int


class Lesson(_Resource):
    id: Id
    module_id: Id
    title: str
    position: int


class Activity(_Resource):
    id: Id
    lesson_id: Id
    title: str
    position: int
    kind: ActivityKind
    required: bool
    scorm_package_id: Id | None
    sco_identifier: str | None
    passing_score_scaled: Annotated[float, Field(ge=0, le=1)] | None
    complete_on_launch: bool | None = Field(
        description="scorm activities only: when the item launched is an asset (untracked, no SCORM "
                                  "calls), whether the launch completes the attempt. null (the default) or true: "
                                  "completed at launch; false: the attempt stays incomplete (the activity then "
                                  "never counts as done). A SCO reports its own progress: publishing refuses true on "
                                  "an activity that launches one.")


class EnrollmentProgress(_Resource):
    required_total: Annotated[int, Field(ge=0)]
    required_done: Annotated[int, Field(ge=0)]


class Enrollment(_Resource):
    id: Id
    user_id: Id
    course_id: Id
    course_version: Annotated[int, Field(ge=1, description="The published course version the enrollment follows.")]
    status: EnrollmentStatus
    source: Annotated[str, Field(max_length=64)]
    enrolled_at: Timestamp
    expires_at: Timestamp | None
    completed_at: Timestamp | None
    cancelled_at: Timestamp | None
    progress: EnrollmentProgress


class CohortGrant(_Resource):
    cohort_id: Id
    user_id: Id
    granted_at: Timestamp
    enrollments: list[Enrollment]


class Attempt(_Resource):
    id: Id
    enrollment_id: Id
    activity_id: Id
    user_id: Id
    course_id: Id
    status: AttemptStatus
    score_raw: float | None
    score_scaled: Annotated[float, Field(ge=-1, le=1)] | None
    passed: bool | None
    time_started_at: Timestamp | None
    time_ended_at: Timestamp | None
    total_time_seconds: Annotated[float, Field(ge=0)]
    created_at: Timestamp
    updated_at: Timestamp


class Launch(_Resource):
    launch_url: str = Field(description="The player page, on the content origin.")
    runtime_token: str
    expires_at: Timestamp
    attempt_id: Id


class RuntimeCommitted(_Resource):
    """The runtime's answer to a commit or finish."""

    attempt_id: Id
    sequence: Annotated[int, Field(ge=0)]
    status: AttemptStatus
    finished: bool


class CertificateCredit(_Resource):
    hours: Annotated[float, Field(ge=0)] | None
    kind: str | None


class CertificatePdf(_Resource):
    url: str
    sha256: str
    bytes: Annotated[int, Field(ge=0)]
    version: Annotated[int, Field(ge=1)]
    template_version: Annotated[int, Field(description="The template version the PDF shows (0: built-in).")]
    generated_at: Timestamp


class Certificate(_Resource):
    id: Id
    user_id: Id
    course_id: Id
    enrollment_id: Id
    template_id: Id | None = Field(description="null: the built-in default template.")
    verification_id: Annotated[str, Field(min_length=40, max_length=40)]
    verification_url: str
    recipient_name: str
    course_title: str
    credit: CertificateCredit
    issued_at: Timestamp
    expires_at: Timestamp | None
    is_revoked: bool
    revoked_at: Timestamp | None
    revoked_reason: str | None
    pdf: CertificatePdf


class TemplateAsset(_Resource):
    """An uploaded file of a template, described (its bytes are not inlined)."""

    content_type: str
    bytes: Annotated[int, Field(ge=0)]
    sha256: str


Color = Annotated[str, Field(pattern="^#[0-9a-fA-F]{6}$")]


class CertificateTemplate(_Resource):
    id: Id
    name: str
    is_default: bool
    orientation: Orientation
    page_size: PageSize
    title_text: str
    body_text: str
    primary_color: Color
    accent_color: Color
    logo: TemplateAsset | None = Field(description="The PNG logo (image/png), or null.")
    background_pdf: TemplateAsset | None = Field(description="The one-page background PDF, or null.")
    signatory_name: str | None
    signatory_title: str | None
    version: int
    created_at: Timestamp
    updated_at: Timestamp


class ScormPackage(_Resource):
    id: Id
    title: str
    scorm_version: ScormVersion | None = Field(description="null while the package is processing or when it "
                                                           "failed.")
    status: ScormPackageStatus
    error: str | None = Field(description="Why the import failed (status failed), else null.")
    bytes: Annotated[int, Field(ge=0)]
    sha256: str
    organization_identifier: str | None
    created_at: Timestamp
    warnings: list[str] = Field(description="What the import found worth telling the author (files the manifest "
                                            "names but the zip lacks, no launchable SCO, ...); empty while "
                                            "processing. Repeated findings are summarised in one line.")
    version: Annotated[int, Field(ge=1)] = Field(description="1 for an upload; n for the n-th version uploaded "
                                                             "with POST /scorm-packages/{id}/versions.")
    version_of: Id | None = Field(description="The package this is a new version of (activities name that one "
                                              "and launch its newest ready version); null for a first upload.")
    archived_at: Timestamp | None = Field(description="When the package was archived (DELETE), else null.")


class Sco(_Resource):
    identifier: str
    title: str
    launch_url: str
    parameters: str | None
    mastery_score: float | None
    position: int
    parent_identifier: str | None


class ScormPackageDetail(ScormPackage):
    """A package with its SCOs (the get, not the list)."""

    scos: list[Sco]
    assets: list[Sco] = Field(description="Items whose resource is an asset (no SCORM calls): an activity may "
                                          "launch one by its identifier as an untracked activity, completed on "
                                          "launch. A package with assets and no SCO is still usable.")


class ScormUpload(_Resource):
    """A resumable upload of a SCORM package (tus 1.0.0): ``offset`` of ``length`` bytes arrived; once complete,
    ``package_id`` names the package being imported."""

    id: Id
    length: Annotated[int, Field(ge=1)]
    offset: Annotated[int, Field(ge=0)]
    package_id: Id | None = Field(description="The package the complete upload became, else null.")
    created_at: Timestamp
    expires_at: Timestamp = Field(description="An unfinished upload is forgotten after this.")
