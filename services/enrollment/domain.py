"""Pure enrollment rules: completion, progress, the enrollment state machine, timestamps, and the domain
exceptions the handlers raise (the API maps each to the error envelope, ``api.ERRORS``). No I/O here."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.domain_errors import DomainError, not_found_message
from shared.events.base import Credit

# --- domain exceptions ------------------------------------------------------------------------------------------


class EnrollmentError(DomainError):
    """A command this service refuses; the message says why (the API maps each subclass, ``api.ERRORS``)."""


class NotFound(EnrollmentError):
    """The command names something this tenant does not have."""

    resource = ""

    def __init__(self) -> None:
        super().__init__(not_found_message(self.resource))


class CourseNotFound(NotFound):
    resource = "course"


class EnrollmentNotFound(NotFound):
    resource = "enrollment"


class CohortNotFound(NotFound):
    resource = "cohort"


class Rejected(EnrollmentError):
    """The command is not valid as given, or not in the current state of things."""


class InvalidExpiry(Rejected):
    """``expires_at`` is not an RFC 3339 date-time with a time zone, or not in the future."""


class UnknownUser(Rejected):
    def __init__(self, user_id: int):
        super().__init__(f"User {user_id} is not in this tenant's directory; upsert the user first.")


class CourseNotPublished(Rejected):
    def __init__(self, course_id: int, status: str):
        super().__init__(f"Course {course_id} is {status}; only published courses take enrollments.")


class VersionNotArrived(Rejected):
    """The course says published but its tree has not arrived yet."""

    def __init__(self, course_id: int):
        super().__init__(f"Course {course_id} is not published yet; retry shortly.")


class IllegalTransition(Rejected):
    """The requested state change is not allowed from the current status; the message says why."""


class ConcurrentChange(EnrollmentError):
    """A concurrent change got in the way; the same command, sent again, goes through."""

    def __init__(self) -> None:
        super().__init__("Concurrent change; retry.")


class CompletionRule(enum.StrEnum):
    ALL_REQUIRED = "all_required"
    ALL_ACTIVITIES = "all_activities"
    ANY_ACTIVITY = "any_activity"


class EnrollmentStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


#: attempt statuses that make an activity count (subject to its passing score)
DONE_STATUSES = frozenset({"completed", "passed"})
ATTEMPT_STATUSES = frozenset({"not_attempted", "incomplete", "completed", "passed", "failed", "browsed"})


@dataclass(frozen=True)
class Activity:
    """An activity of one published course version, as far as completion cares."""

    activity_id: int
    required: bool
    passing_score_scaled: Decimal | None = None


@dataclass(frozen=True)
class AttemptResult:
    """One attempt's latest status and its best scaled score over all its commits."""

    activity_id: int
    status: str
    best_score_scaled: Decimal | None = None


@dataclass(frozen=True)
class Progress:
    required_total: int
    required_done: int

    @property
    def complete(self) -> bool:
        return self.required_done >= self.required_total


def activity_done(activity: Activity, results: Iterable[AttemptResult]) -> bool:
    """An activity counts when one of its attempts is ``completed`` or ``passed`` and, if it has a passing
    score, the best ``score_scaled`` over its attempts reaches it."""
    mine = [r for r in results if r.activity_id == activity.activity_id]
    if not any(r.status in DONE_STATUSES for r in mine):
        return False
    if activity.passing_score_scaled is None:
        return True
    scores = [r.best_score_scaled for r in mine if r.best_score_scaled is not None]
    return bool(scores) and max(scores) >= activity.passing_score_scaled


def progress_may_move(stored: Progress, *, status_set: str | None, score: Decimal | None,
                       best: Decimal | None) -> bool:
    """Whether one commit to an attempt may have changed a learner's progress, judged from what is known without
    reading the other attempts: ``stored`` (the enrollment's progress, evaluated after every change so far),
    ``status_set`` (the status this commit gave the attempt, None when an older commit left the status alone),
    ``score`` (the commit's ``score_scaled``) and ``best`` (the attempt's best score after the commit).

    Completion looks at whether an attempt is done and at its best score. A commit that set a done status, or
    whose score became the best, may move progress; so may one that set a status not done when something counts
    already (this attempt may have been the done one). Progress that already satisfies the rule (a version with
    nothing to do) is evaluated on every commit. Anything else (``incomplete`` after ``incomplete``) cannot.
    """
    if stored.complete:
        return True
    if score is not None and best == score:
        return True
    if status_set is None:
        return False
    return status_set in DONE_STATUSES or stored.required_done > 0


def counted_activities(rule: CompletionRule, activities: Sequence[Activity]) -> list[Activity]:
    """The activities a rule looks at. With ``all_required`` and nothing marked required, every activity is
    required: otherwise the course would complete on the first commit of anything, even an incomplete one."""
    if rule is CompletionRule.ALL_REQUIRED:
        required = [a for a in activities if a.required]
        return required or list(activities)
    return list(activities)


def evaluate(rule: CompletionRule, activities: Sequence[Activity], results: Sequence[AttemptResult]) -> Progress:
    """Progress of one learner in one course version; ``Progress.complete`` says if the rule is satisfied.

    ``all_required``: every required activity done; ``all_activities``: every activity done;
    ``any_activity``: one activity done (``required_total`` is 1).
    """
    counted = counted_activities(rule, activities)
    done = sum(1 for a in counted if activity_done(a, results))
    if rule is CompletionRule.ANY_ACTIVITY:
        return Progress(required_total=1 if counted else 0, required_done=min(done, 1))
    return Progress(required_total=len(counted), required_done=done)


def completion_rule(value: str) -> CompletionRule:
    """The catalog validates rules; an unknown one (a newer catalog) falls back to the contract's default."""
    try:
        return CompletionRule(value)
    except ValueError:
        return CompletionRule.ALL_REQUIRED


def activities_of(modules: Sequence[Mapping[str, Any]]) -> list[Activity]:
    """Flatten a published tree (``modules[].lessons[].activities[]``) into the activities completion needs."""
    found: list[Activity] = []
    for module in modules:
        for lesson in module.get("lessons", []):
            for node in lesson.get("activities", []):
                score = node.get("passing_score_scaled")
                found.append(Activity(
                    activity_id=int(node["activity_id"]),
                    required=bool(node.get("required", False)),
                    passing_score_scaled=None if score is None else Decimal(str(score)),
                ))
    return found


@dataclass(frozen=True)
class PinnedVersion:
    """One published course version, as far as enrolling and completing care (ADR 0014: a learner follows the
    version they enrolled in)."""

    version_number: int
    title: str
    rule: CompletionRule
    activities: tuple[Activity, ...]
    credit: Credit
    certificate_template_id: int | None

    @classmethod
    def of(cls, row: Any) -> PinnedVersion:
        """From a ``course_versions`` row."""
        return cls(version_number=row.version_number, title=row.title, rule=completion_rule(row.completion_rule),
                   activities=tuple(activities_of(row.modules)), credit=Credit.model_validate(row.credit),
                   certificate_template_id=row.certificate_template_id)

    def progress(self, results: list[AttemptResult]) -> Progress:
        return evaluate(self.rule, self.activities, results)


# --- enrollment state machine ---------------------------------------------------------------------------------


def cancel(status: str) -> bool:
    """Whether cancelling changes anything: ``active`` → ``cancelled`` (True); ``cancelled`` stays (False);
    ``completed`` and ``expired`` cannot be cancelled."""
    if status == EnrollmentStatus.ACTIVE:
        return True
    if status == EnrollmentStatus.CANCELLED:
        return False
    raise IllegalTransition(f"A {status} enrollment cannot be cancelled.")


def is_overdue(status: str, expires_at: datetime | None, now: datetime) -> bool:
    return status == EnrollmentStatus.ACTIVE and expires_at is not None and expires_at <= now


# --- timestamps ------------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)  # [0-9], not \d: in a str pattern \d matches every script's digits


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 date-time with an explicit offset, as UTC; anything else is a ValueError."""
    if not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. 2026-06-02T10:00:00Z")
    text = value.replace("z", "Z").replace("t", "T")
    main, _, rest = text.partition(".")
    if rest:  # Python accepts at most microseconds
        digits = re.match(r"[0-9]+", rest)
        assert digits is not None
        text = f"{main}.{digits.group()[:6].ljust(6, '0')}{rest[len(digits.group()):]}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def future_expiry(value: str | None, now: datetime) -> datetime | None:
    """``expires_at`` of a command: RFC 3339 with a time zone, and later than now."""
    if value is None:
        return None
    try:
        expires_at = parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidExpiry(f"'expires_at': {exc}.") from None
    if expires_at <= now:
        raise InvalidExpiry("'expires_at' must be in the future.")
    return expires_at
