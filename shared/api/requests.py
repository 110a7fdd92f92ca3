"""Request bodies of the public API. Unknown fields are rejected (``additionalProperties: false``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.api.resources import CompletionRule, Id

_SLUG = "^[a-z0-9]+(-[a-z0-9]+)*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _CourseFields(_Body):
    subtitle: Annotated[str, Field(max_length=500)] | None = None
    summary: Annotated[str, Field(max_length=20_000)] | None = None
    language: Annotated[str, Field(max_length=35, description="BCP 47 language tag.")] | None = "en"
    completion_rule: CompletionRule | None = CompletionRule.ALL_REQUIRED
    estimated_minutes: Annotated[int, Field(ge=0)] | None = None
    credit_hours: Annotated[float, Field(ge=0)] | None = None
    credit_kind: Annotated[str, Field(max_length=64)] | None = None
    credit_expires_after_months: Annotated[int, Field(ge=1, le=1200)] | None = None
    certificate_template_id: Id | None = None


class CourseCreate(_CourseFields):
    slug: Annotated[str, Field(max_length=100, pattern=_SLUG)]
    title: Annotated[str, Field(max_length=300)]


class CourseUpdate(_CourseFields):
    """Any create field; omitted fields keep their value and ``null`` clears an optional one."""

    slug: Annotated[str, Field(max_length=100, pattern=_SLUG)] | None = None
    title: Annotated[str, Field(max_length=300)] | None = None
    language: Annotated[str, Field(max_length=35, description="BCP 47 language tag.")] | None = None
    completion_rule: CompletionRule | None = None


class EnrollmentCreate(_Body):
    user_id: Id
    course_id: Id
    source: Annotated[str, Field(min_length=1, max_length=64)] = "api"
    expires_at: datetime | None = None


class CohortGrantCreate(_Body):
    user_id: Id
    cohort_id: Id
    expires_at: datetime | None = None


class LaunchCreate(_Body):
    activity_id: Id


class CertificateRevoke(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


class RuntimeCommit(_Body):
    cmi: dict[str, str] = Field(description="SCORM 1.2 or 2004 element names and their string values.")


class RuntimeFinish(_Body):
    """Optional: a last snapshot to store with the finish."""

    cmi: dict[str, str] | None = None
