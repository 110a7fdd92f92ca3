"""Pure catalog rules: the course lifecycle, what publishing needs, and sibling positions. No I/O here."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.http import ApiError


class CourseStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class Transition(enum.StrEnum):
    PUBLISH = "publish"
    UNPUBLISH = "unpublish"
    ARCHIVE = "archive"


COMPLETION_RULES = ("all_required", "all_activities", "any_activity")
ACTIVITY_KINDS = ("scorm", "video", "reading", "link", "assessment")

#: (action, from) -> to; every other pair is an illegal transition (CONTRACT.md §6)
TRANSITIONS: dict[tuple[Transition, CourseStatus], CourseStatus] = {
    (Transition.PUBLISH, CourseStatus.DRAFT): CourseStatus.PUBLISHED,
    (Transition.UNPUBLISH, CourseStatus.PUBLISHED): CourseStatus.DRAFT,
    (Transition.ARCHIVE, CourseStatus.DRAFT): CourseStatus.ARCHIVED,
    (Transition.ARCHIVE, CourseStatus.PUBLISHED): CourseStatus.ARCHIVED,
}

_WHY_NOT: dict[tuple[Transition, CourseStatus], str] = {
    (Transition.PUBLISH, CourseStatus.PUBLISHED): "it is already published; to publish edits, unpublish it, "
                                                  "change it, and publish again (a new version)",
    (Transition.PUBLISH, CourseStatus.ARCHIVED): "it is archived, and archived courses cannot be published again",
    (Transition.UNPUBLISH, CourseStatus.DRAFT): "it is a draft, not published",
    (Transition.UNPUBLISH, CourseStatus.ARCHIVED): "it is archived",
    (Transition.ARCHIVE, CourseStatus.ARCHIVED): "it is already archived",
}


def next_status(action: Transition, current: str) -> CourseStatus:
    """The status ``action`` leads to from ``current``, or ``400 invalid_argument`` saying why not."""
    state = CourseStatus(current)
    target = TRANSITIONS.get((action, state))
    if target is None:
        raise ApiError.invalid(f"Cannot {action.value} this course: {_WHY_NOT[(action, state)]}.")
    return target


def require_draft_for_structure(status: str) -> None:
    """Edit-after-publish rule (docs/decisions/0004-catalog-edit-after-publish.md): structure is edited on drafts.

    The published version's tree lives on in the ``course.published`` payload (and ``course_versions``), so
    enrolled learners keep it while the operator unpublishes, edits and publishes a new version.
    """
    if status == CourseStatus.PUBLISHED:
        raise ApiError.invalid(
            "The course is published: its modules, lessons and activities can only be changed on a draft. "
            "Unpublish the course first, make the changes, then publish it again (a new version)."
        )
    if status == CourseStatus.ARCHIVED:
        raise ApiError.invalid("The course is archived: its modules, lessons and activities cannot be changed.")


def require_editable_course(status: str) -> None:
    if status == CourseStatus.ARCHIVED:
        raise ApiError.invalid("The course is archived: archived courses cannot be changed.")


# --- publishing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyPackage:
    """What the catalog knows of a SCORM package from ``scorm_package.ready``."""

    package_id: int
    sco_identifiers: frozenset[str]


def publish_problems(
    completion_rule: str, tree: Sequence[Mapping[str, Any]], packages: Mapping[int, ReadyPackage]
) -> list[str]:
    """Why a course with this tree cannot be published (empty when it can).

    ``packages`` holds only packages known to be ready; a scorm activity must name one of them and one of its SCOs.
    """
    problems: list[str] = []
    all_activities = [a for m in tree for lesson in m["lessons"] for a in lesson["activities"]]
    if not all_activities:
        return ["a course needs at least one activity to be published"]
    if completion_rule == "all_required" and not any(a["required"] for a in all_activities):
        problems.append("completion_rule 'all_required' needs at least one required activity")
    for activity in all_activities:
        if activity["kind"] != "scorm":
            continue
        package = packages.get(activity["scorm_package_id"])
        if package is None:
            problems.append(f"activity {activity['id']} references SCORM package {activity['scorm_package_id']}, "
                            "which is not a ready package of this tenant")
        elif activity["sco_identifier"] not in package.sco_identifiers:
            problems.append(f"activity {activity['id']} references SCO '{activity['sco_identifier']}', which "
                            f"SCORM package {activity['scorm_package_id']} does not contain")
    return problems


def scorm_package_ids(tree: Iterable[Mapping[str, Any]]) -> set[int]:
    return {a["scorm_package_id"] for m in tree for lesson in m["lessons"] for a in lesson["activities"]
            if a["kind"] == "scorm" and a["scorm_package_id"] is not None}


# --- positions among siblings (1-based, contiguous) ---------------------------------------------------------


def insert_position(requested: int | None, sibling_count: int) -> int:
    """Where a new child goes: at ``requested`` (clamped into 1..n+1) or, absent, at the end."""
    if requested is None:
        return sibling_count + 1
    return max(1, min(requested, sibling_count + 1))


def move_position(requested: int, sibling_count: int) -> int:
    """Where an existing child moves to among ``sibling_count`` siblings (itself included): clamped to 1..n."""
    return max(1, min(requested, sibling_count))


def reorder_positions(requested_ids: Sequence[int], current_ids: Iterable[int], what: str) -> dict[int, int]:
    """New 1-based positions from a full ordered list of the children's ids (every child exactly once)."""
    current = set(current_ids)
    if len(set(requested_ids)) != len(requested_ids):
        raise ApiError.invalid(f"'ids' lists a {what} more than once.")
    if set(requested_ids) != current:
        missing = sorted(current - set(requested_ids))
        extra = sorted(set(requested_ids) - current)
        parts = []
        if missing:
            parts.append(f"missing {what} ids {missing}")
        if extra:
            parts.append(f"unknown {what} ids {extra}")
        raise ApiError.invalid(f"'ids' must list every {what} of the parent exactly once: {'; '.join(parts)}.")
    return {item: index for index, item in enumerate(requested_ids, start=1)}


# --- activities ---------------------------------------------------------------------------------------------

_SCORM_FIELDS = ("scorm_package_id", "sco_identifier")


def activity_state(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The activity after ``changes``, checked: scorm activities name a package and a SCO, others name neither.

    Moving an activity away from ``scorm`` drops its SCORM reference unless the client sent one explicitly.
    """
    state = {**current, **changes}
    if state.get("kind") != "scorm" and current.get("kind") == "scorm":
        for name in _SCORM_FIELDS:
            if name not in changes:
                state[name] = None
    if state.get("kind") == "scorm":
        for name in _SCORM_FIELDS:
            value = state.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ApiError(400, "missing_field", f"'{name}' is required for scorm activities.")
    else:
        sent = [name for name in _SCORM_FIELDS if state.get(name) is not None]
        if sent:
            raise ApiError.invalid(f"'{sent[0]}' is only for scorm activities (this one is '{state.get('kind')}').")
    return state
