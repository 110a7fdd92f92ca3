from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.base import Credit, EventModel, Number


class CourseSnapshot(EventModel):
    course_id: int
    slug: str
    title: str
    status: str = Field(description="draft | published | archived")
    version_number: int = Field(description="the course's version.number (bumped on each publish)")
    completion_rule: str
    credit: Credit
    certificate_template_id: int | None = None
    owner_id: int | None = None
    revision: int = Field(description="monotonic per course, bumped by every change: apply by revision")
    updated_at: datetime


class ActivityNode(EventModel):
    activity_id: int
    title: str
    position: int
    kind: str
    required: bool
    scorm_package_id: int | None = None
    sco_identifier: str | None = None
    passing_score_scaled: Number | None = None
    complete_on_launch: bool | None = Field(default=None, description="scorm activities that launch an untracked "
                                                                      "item (an asset): false keeps the attempt "
                                                                      "incomplete at launch; null or true completes "
                                                                      "it")


class LessonNode(EventModel):
    lesson_id: int
    title: str
    position: int
    activities: list[ActivityNode]


class ModuleNode(EventModel):
    module_id: int
    title: str
    position: int
    lessons: list[LessonNode]


class CourseCreated(CourseSnapshot):
    """A course was created (as a draft)."""

    event_type: ClassVar[str] = "course.created"


class CourseUpdated(CourseSnapshot):
    """A course's fields changed."""

    event_type: ClassVar[str] = "course.updated"


class CoursePublished(CourseSnapshot):
    """A course version was published; carries the whole module/lesson/activity tree of that version."""

    event_type: ClassVar[str] = "course.published"

    published_at: datetime
    modules: list[ModuleNode]


class CourseUnpublished(CourseSnapshot):
    """A published course went back to draft: no new enrollments."""

    event_type: ClassVar[str] = "course.unpublished"


class CourseArchived(CourseSnapshot):
    """A course was archived: hidden from learners, enrollments kept, no new enrollments."""

    event_type: ClassVar[str] = "course.archived"
