from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from pydantic import Field

from shared.events.base import EventModel, Number


class ScoInfo(EventModel):
    identifier: str
    title: str
    launch_url: str
    parameters: str | None = None
    mastery_score: Number | None = None
    passing_score_scaled: Number | None = None
    position: int
    parent_identifier: str | None = None
    tracked: bool = Field(default=True, description="false: an item whose resource is an asset (no SCORM API "
                                                    "calls), launchable as an untracked activity completed on "
                                                    "launch")


class ScormPackageReady(EventModel):
    """A SCORM package imported successfully; carries its SCO list."""

    event_type: ClassVar[str] = "scorm_package.ready"

    package_id: int
    title: str
    scorm_version: str
    scos: list[ScoInfo]
    version_of: int | None = Field(default=None, description="set when this package is a new version of that one "
                                                             "(POST /scorm-packages/{id}/versions): activities "
                                                             "naming that package now launch this version's SCOs")


class ScormPackageFailed(EventModel):
    event_type: ClassVar[str] = "scorm_package.failed"

    package_id: int
    title: str
    error: str


class ScormPackageArchived(EventModel):
    """A package and its versions were archived (DELETE): they launch nothing, no course may publish with them."""

    event_type: ClassVar[str] = "scorm_package.archived"

    package_id: int = Field(description="the first package of the family (what activities name)")
    package_ids: list[int] = Field(description="every package of the family, versions included, all archived")
    title: str
    archived_at: datetime


class RuntimeCommitted(EventModel):
    """A learner's runtime session committed CMI data (or was launched, or finished).

    ``attempt_id`` is the launch's id: one attempt per launch. ``sequence`` orders the commits of one attempt
    (0 is the launch itself); apply status/score fields only from a higher sequence. ``session_time_delta_seconds``
    is the time added by this commit, so the sum over commits is the attempt's total time whatever order they
    arrive in.
    """

    event_type: ClassVar[str] = "runtime.committed"

    attempt_id: int
    enrollment_id: int
    activity_id: int
    user_id: int
    course_id: int
    sequence: int
    standard: str = Field(description="1.2 | 2004")
    status: str = Field(description="not_attempted | incomplete | completed | passed | failed | browsed")
    completion_status: str | None = None
    success_status: str | None = None
    score_raw: Number | None = None
    score_scaled: Number | None = None
    passed: bool | None = None
    session_time_delta_seconds: Number = Field(default=Decimal(0))
    time_started_at: datetime
    time_ended_at: datetime | None = None
    finished: bool = False
