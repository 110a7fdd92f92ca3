from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.base import Credit, EventModel, Number


class EnrollmentSnapshot(EventModel):
    enrollment_id: int
    user_id: int
    course_id: int
    course_version: int = Field(description="the published course version the learner is enrolled in")
    status: str = Field(description="active | completed | cancelled | expired")
    source: str
    enrolled_at: datetime
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    revision: int = Field(description="monotonic per enrollment")


class EnrollmentCreated(EnrollmentSnapshot):
    """A user was enrolled in a course."""

    event_type: ClassVar[str] = "enrollment.created"


class EnrollmentCancelled(EnrollmentSnapshot):
    """An active enrollment was cancelled."""

    event_type: ClassVar[str] = "enrollment.cancelled"


class EnrollmentExpired(EnrollmentSnapshot):
    """An active enrollment passed its expires_at."""

    event_type: ClassVar[str] = "enrollment.expired"


class CompletedUser(EventModel):
    id: int
    name: str
    email: str


class CompletedCourse(EventModel):
    id: int
    title: str
    version: int
    credit: Credit
    certificate_template_id: int | None = Field(default=None, description="null: the tenant's default template")


class Progress(EventModel):
    required_total: int
    required_done: int


class EnrollmentCompleted(EnrollmentSnapshot):
    """A learner completed a course: carries everything a certificate needs."""

    event_type: ClassVar[str] = "enrollment.completed"

    user: CompletedUser
    course: CompletedCourse
    progress: Progress
    tenant_name: str = Field(default="", description="the issuer's display name")


class CohortAccessGranted(EventModel):
    """A user was granted a cohort: membership plus one enrollment per published course."""

    event_type: ClassVar[str] = "cohort.access_granted"

    cohort_id: int
    user_id: int
    granted_at: datetime
    enrollment_ids: list[int]


class AttemptUpdated(EventModel):
    """An attempt changed after a runtime commit."""

    event_type: ClassVar[str] = "attempt.updated"

    attempt_id: int
    enrollment_id: int
    activity_id: int
    user_id: int
    course_id: int
    status: str
    score_raw: Number | None = None
    score_scaled: Number | None = None
    passed: bool | None = None
    total_time_seconds: Number
    time_started_at: datetime | None = None
    time_ended_at: datetime | None = None
    revision: int
