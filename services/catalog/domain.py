"""Pure catalog rules and the catalog's domain errors: the course lifecycle, what publishing needs, the shape of
the module → lesson → activity tree and sibling positions. No I/O here.

Errors subclass :class:`CatalogError` and carry the error code clients see (``code``) and the message; the API
maps each class to an HTTP status in one table (``services/catalog/api.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain_errors import DomainError, not_found_message

# --- errors -------------------------------------------------------------------------------------------------


class CatalogError(DomainError):
    """Base of the catalog's domain errors (``code`` defaults to ``invalid_argument``)."""

    def __init__(self, message: str):
        super().__init__(message)


class InvalidArgument(CatalogError):
    """The request breaks a catalog rule (400 ``invalid_argument``)."""


class MissingField(CatalogError):
    """A field the rule needs is absent, null or blank (400 ``missing_field``)."""

    code = "missing_field"

    def __init__(self, field: str, message: str | None = None):
        super().__init__(message or f"'{field}' is required and must not be empty.")
        self.field = field


class NotFound(CatalogError):
    """No such course/module/lesson/activity in this tenant (404 ``<resource>_not_found``)."""

    def __init__(self, resource: str):
        super().__init__(not_found_message(resource))
        self.resource = resource
        self.code = f"{resource}_not_found"


class SlugTaken(InvalidArgument):
    def __init__(self, slug: str):
        super().__init__(f"'slug': '{slug}' is already taken by another course of this tenant.")


class IllegalTransition(InvalidArgument):
    """A lifecycle action the course's status does not allow (CONTRACT.md §6)."""


class NotPublishable(InvalidArgument):
    def __init__(self, problems: Sequence[str]):
        super().__init__("Cannot publish this course: " + "; ".join(problems) + ".")
        self.problems = list(problems)


class NotEditable(InvalidArgument):
    """The course (or its tree) cannot be changed in its current status."""


class NotOnCourseTeam(CatalogError):
    """A staff author changed a course whose team they are not on (403 ``not_on_course_team``; ADR 0021)."""

    code = "not_on_course_team"

    def __init__(self) -> None:
        super().__init__("You are not on this course's team: an owner or admin can add you to it.")


class StaffRoleRefused(CatalogError):
    """A staff member whose role does not allow this (403 ``insufficient_role``)."""

    code = "insufficient_role"


TEAM_ROLES = ("lead", "editor")
#: staff roles that change any course of the tenant; the others only the courses whose team they are on
ALL_COURSES_ROLES = frozenset({"owner", "admin"})


# --- the tree -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One level of the course tree: what its rows are called, and what they hang under."""

    resource: str  # "module": gives 404 module_not_found
    parent_resource: str
    parent_column: str  # the child's column naming the parent
    child: Level | None = None


ACTIVITIES = Level("activity", "lesson", "lesson_id")
LESSONS = Level("lesson", "module", "module_id", ACTIVITIES)
MODULES = Level("module", "course", "course_id", LESSONS)


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
    """The status ``action`` leads to from ``current``, or :class:`IllegalTransition` saying why not."""
    state = CourseStatus(current)
    target = TRANSITIONS.get((action, state))
    if target is None:
        raise IllegalTransition(f"Cannot {action.value} this course: {_WHY_NOT[(action, state)]}.")
    return target


def require_draft_for_structure(status: str) -> None:
    """Edit-after-publish rule (docs/decisions/0004-catalog-edit-after-publish.md): structure is edited on drafts.

    The published version's tree lives on in the ``course.published`` payload (and ``course_versions``), so
    enrolled learners keep it while the operator unpublishes, edits and publishes a new version.
    """
    if status == CourseStatus.PUBLISHED:
        raise NotEditable(
            "The course is published: its modules, lessons and activities can only be changed on a draft. "
            "Unpublish the course first, make the changes, then publish it again (a new version)."
        )
    if status == CourseStatus.ARCHIVED:
        raise NotEditable("The course is archived: its modules, lessons and activities cannot be changed.")


def require_editable_course(status: str) -> None:
    if status == CourseStatus.ARCHIVED:
        raise NotEditable("The course is archived: archived courses cannot be changed.")


# --- publishing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyPackage:
    """What the catalog knows of a SCORM package from ``scorm_package.ready`` (and ``.archived``).

    ``sco_identifiers``: every launchable item; ``untracked``: those whose resource is an asset (launched untracked,
    no SCORM calls); ``first``: what an activity naming no item launches (the first SCO, else the first item);
    ``archived``: the package was archived, and a course may no longer be published with it."""

    package_id: int
    sco_identifiers: frozenset[str]
    untracked: frozenset[str] = frozenset()
    first: str | None = None
    archived: bool = False


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
        elif package.archived:
            problems.append(f"activity {activity['id']} references SCORM package {activity['scorm_package_id']}, "
                            "which is archived: point it at another package")
        elif activity["sco_identifier"] is None:
            if not package.sco_identifiers:
                problems.append(f"activity {activity['id']} launches the first SCO of SCORM package "
                                f"{activity['scorm_package_id']}, which has none")
            else:
                problems.extend(_complete_on_launch_problem(activity, package, package.first))
        elif activity["sco_identifier"] not in package.sco_identifiers:
            problems.append(f"activity {activity['id']} references SCO '{activity['sco_identifier']}', which "
                            f"SCORM package {activity['scorm_package_id']} does not contain")
        else:
            problems.extend(_complete_on_launch_problem(activity, package, activity["sco_identifier"]))
    return problems


def _complete_on_launch_problem(activity: Mapping[str, Any], package: ReadyPackage, launched: str | None
                                ) -> list[str]:
    """``complete_on_launch`` true is for untracked items: a SCO reports its own status, so opening one never
    completes it (false says just that, and passes)."""
    if activity.get("complete_on_launch") is not True or launched is None or launched in package.untracked:
        return []
    return [f"activity {activity['id']} sets complete_on_launch, but the item it launches ('{launched}' of SCORM "
            f"package {activity['scorm_package_id']}) is a SCO that reports its own progress: clear the option"]


def require_publishable(completion_rule: str, tree: Sequence[Mapping[str, Any]],
                        packages: Mapping[int, ReadyPackage]) -> None:
    problems = publish_problems(completion_rule, tree, packages)
    if problems:
        raise NotPublishable(problems)


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
        raise InvalidArgument(f"'ids' lists a {what} more than once.")
    if set(requested_ids) != current:
        missing = sorted(current - set(requested_ids))
        extra = sorted(set(requested_ids) - current)
        parts = []
        if missing:
            parts.append(f"missing {what} ids {missing}")
        if extra:
            parts.append(f"unknown {what} ids {extra}")
        raise InvalidArgument(f"'ids' must list every {what} of the parent exactly once: {'; '.join(parts)}.")
    return {item: index for index, item in enumerate(requested_ids, start=1)}


# --- activities ---------------------------------------------------------------------------------------------

_SCORM_FIELDS = ("scorm_package_id", "sco_identifier", "complete_on_launch")


def activity_state(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The activity after ``changes``, checked: scorm activities name a package (and a SCO, or none for the
    package's first), others name neither.

    Moving an activity away from ``scorm`` drops its SCORM reference unless the client sent one explicitly.
    """
    state = {**current, **changes}
    if state.get("kind") != "scorm" and current.get("kind") == "scorm":
        for name in _SCORM_FIELDS:
            if name not in changes:
                state[name] = None
    if state.get("kind") == "scorm":
        if state.get("scorm_package_id") is None:
            raise MissingField("scorm_package_id", "'scorm_package_id' is required for scorm activities.")
        # sco_identifier is optional (docs/catalog.md): none launches the package's first SCO.
        sco = state.setdefault("sco_identifier", None)
        if isinstance(sco, str) and not sco.strip():
            raise InvalidArgument("'sco_identifier' must not be blank; omit it (or send null) to launch the "
                                  "package's first SCO.")
    else:
        sent = [name for name in _SCORM_FIELDS if state.get(name) is not None]
        if sent:
            raise InvalidArgument(f"'{sent[0]}' is only for scorm activities (this one is '{state.get('kind')}').")
    return state
