"""The scorm service's rules and its domain exceptions (pure: no I/O, no HTTP).

**Launches** (docs/scorm.md): an ``active`` enrollment (not past its ``expires_at``) launches in normal mode, a
``completed`` one in review mode (``cmi.mode`` review, no credit); ``cancelled`` and ``expired`` ones may not,
nor activities of an archived course. The activity must belong to the course version the learner is enrolled
in. A ``scorm`` activity launches its SCO (``sco_identifier``, or the package's first SCO); the other kinds
launch the built-in page, which speaks SCORM 2004 to the same runtime. One launch is one attempt; when the
previous launch of the same activity was suspended (``exit`` = ``suspend``) or left without finishing, the new
one resumes from its data.

**Token lifetime** (``ended``): a token works only while its launch is live: not finished, its enrollment
neither cancelled nor expired, its tenant not suspended. Otherwise the player, the content and the runtime
answer ``410 launch_ended``.

The API layer maps every :class:`ScormError` to the error envelope through its one table (``api_errors.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from services.scorm.runtime.cmi import CmiLimits, initial_cmi, player_state
from shared.db import as_utc
from shared.domain_errors import DomainError, not_found_message

# --- exceptions ---------------------------------------------------------------------------------------------


class ScormError(DomainError):
    """A refusal meant for the caller: ``code`` is the contract's error code, ``message`` the text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Invalid(ScormError):
    """The request cannot be done as asked (``400 invalid_argument``)."""


class NotFound(ScormError):
    """``resource`` (snake_case) does not exist in this tenant: ``<resource>_not_found``."""

    def __init__(self, resource: str) -> None:
        super().__init__(not_found_message(resource))
        self.code = f"{resource}_not_found"


class InvalidToken(ScormError):
    """The runtime token is not genuine or has expired (the contract's one credential error)."""

    code = "invalid_api_key"


class LaunchEnded(ScormError):
    """A genuine token whose launch has ended: no longer good for anything."""

    code = "launch_ended"


class UploadTooLarge(ScormError):
    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The package is over the upload limit of {limit:,} bytes.")


class UnsupportedMediaType(ScormError):
    code = "unsupported_media_type"


class InUse(ScormError):
    """A package published courses still use cannot be archived (``409``; the message names the courses)."""

    code = "scorm_package_in_use"


class OffsetMismatch(ScormError):
    """A resumable upload's PATCH does not start where the server's bytes end (``409``; ask HEAD)."""

    code = "upload_offset_mismatch"


class LeaseLost(Exception):
    """Another import worker took the package over (our lease ran out): our result is dropped."""


# --- runtime tokens -----------------------------------------------------------------------------------------


def invalid_token() -> InvalidToken:
    # The contract's one credential error; the message says which credential.
    return InvalidToken("The runtime token is not valid; launch the activity again.")


def expired_token() -> InvalidToken:
    return InvalidToken("The launch has expired; launch the activity again.")


def token_expiry(stamp: datetime, ttl_seconds: int) -> datetime:
    """Whole seconds: the token carries its expiry in seconds, and the answer shows the same instant."""
    return stamp.replace(microsecond=0) + timedelta(seconds=ttl_seconds)


# --- packages -----------------------------------------------------------------------------------------------

UNTITLED = "Untitled package"
MAX_TITLE = 300
UPLOAD_LOST = ("the uploaded file was lost before it could be imported (the server restarted or moved); "
               "upload the package again")
TOO_MANY_ATTEMPTS = "the package could not be imported because of a server error; upload it again"


def package_title(row: Any, manifest_title: str | None) -> str:
    """An uploader's title wins over the manifest's."""
    return str(row.title if row.title_given else (manifest_title or UNTITLED))


def retry_pause(import_attempts: int) -> timedelta:
    """How long a package given back after an unexpected error waits before it is tried again."""
    return timedelta(seconds=min(60.0, 2.0 * import_attempts))


# --- launches -----------------------------------------------------------------------------------------------

#: the built-in page of non-SCORM activities, served from /learn/content/{token}/ like a SCO
BUILTIN_PAGE = "_learn/activity.html"
LAUNCHABLE = ("active", "completed")


@dataclass(frozen=True)
class LaunchTarget:
    """What a launch runs and the rules its attempt is judged by."""

    kind: str
    standard: str  # "1.2" | "2004"
    launch_path: str
    title: str
    package_id: int | None = None
    sco_identifier: str | None = None
    mastery_score: float | None = None
    passing_score_scaled: float | None = None
    completion_threshold: float | None = None
    objective_ids: list[str] = field(default_factory=list)
    launch_data: str | None = None
    time_limit_action: str | None = None
    max_time_allowed: str | None = None
    #: an untracked item: its attempt completes at launch (the activity's ``complete_on_launch``, default true)
    complete_on_launch: bool = True

    @property
    def initial_status(self) -> str:
        """An untracked item is completed on launch, or (``complete_on_launch`` false) opened but incomplete for
        good; anything else starts not attempted."""
        if self.kind == UNTRACKED:
            return "completed" if self.complete_on_launch else "incomplete"
        return "not_attempted"

    def values(self) -> dict[str, Any]:
        """The launch's columns of ``runtime_sessions``."""
        return {
            "kind": self.kind, "package_id": self.package_id, "sco_identifier": self.sco_identifier,
            "standard": self.standard, "launch_path": self.launch_path, "title": self.title,
            "mastery_score": self.mastery_score, "passing_score_scaled": self.passing_score_scaled,
            "completion_threshold": self.completion_threshold, "objective_ids": self.objective_ids,
            "launch_data": self.launch_data,
            "time_limit_action": self.time_limit_action, "max_time_allowed": self.max_time_allowed,
            "complete_on_launch": self.complete_on_launch,
        }


def exit_of(standard: str, cmi: dict[str, str]) -> str | None:
    return cmi.get("cmi.core.exit" if standard == "1.2" else "cmi.exit")


def resumes(previous: Any, target: LaunchTarget) -> bool:
    """A new launch continues the previous one's data when that was suspended or left unfinished."""
    if previous is None or (previous.package_id, previous.sco_identifier, previous.standard) != (
        target.package_id, target.sco_identifier, target.standard
    ):
        return False
    cmi = previous.cmi or {}
    return exit_of(previous.standard, cmi) == "suspend" or (previous.finished_at is None and bool(cmi))


def resumed_values(previous: Any | None) -> dict[str, Any]:
    """A resumed launch starts from the previous one's snapshot and total time."""
    if previous is None:
        return {"cmi": {}, "prior_total_seconds": 0.0}
    return {"cmi": dict(previous.cmi), "prior_total_seconds": previous.prior_total_seconds
            + previous.reported_session_seconds}


def launch_mode(enrollment: Any, stamp: datetime) -> str:
    """``normal`` or ``review``; refuses an enrollment that may not launch."""
    status = enrollment.status
    expires_at = as_utc(enrollment.expires_at)
    if status == "active" and expires_at is not None and expires_at <= stamp:
        status = "expired"  # the sweeper's event may not have arrived yet
    if status not in LAUNCHABLE:
        raise Invalid(f"The enrollment is {status}; only an active enrollment can launch activities.")
    return "review" if status == "completed" else "normal"


def check_course_launchable(course: Any | None) -> None:
    if course is not None and course.status == "archived":
        raise Invalid("The course is archived; its activities can no longer be launched.")


def builtin_target(activity: Any) -> LaunchTarget:
    """A non-SCORM activity: the built-in page, speaking SCORM 2004."""
    return LaunchTarget(kind=activity.kind, standard="2004", launch_path=BUILTIN_PAGE,
                        title=activity.title, passing_score_scaled=activity.passing_score_scaled)


def check_activity_package(activity: Any, package: Any | None) -> Any:
    """The SCORM package a ``scorm`` activity launches (the package row, looked up by the caller)."""
    if activity.scorm_package_id is None:
        raise Invalid("The activity has no SCORM package to launch.")
    if package is None:
        raise Invalid(f"The activity's SCORM package {activity.scorm_package_id} does not exist.")
    return package


def check_not_archived(package: Any) -> None:
    if package.archived_at is not None:
        raise Invalid(f"The SCORM package {package.id} is archived.")


def mid_attempt(previous: Any) -> bool:
    """The previous launch is an attempt still going on (suspended, or left unfinished with data): resuming it
    keeps its package version."""
    cmi = previous.cmi or {}
    return exit_of(previous.standard, cmi) == "suspend" or (previous.finished_at is None and bool(cmi))


def in_use_message(package_id: int, courses: list[Any]) -> str:
    named = ", ".join(f"{c.title!r} (id {c.course_id})" if c.title else f"id {c.course_id}" for c in courses)
    return (f"The SCORM package {package_id} is used by published courses: {named}. Unpublish or archive them, "
            "or point their activities at another package, first.")


def missing_scos(in_use: list[Any], identifiers: set[str]) -> str | None:
    """Why a new version cannot replace the package: SCOs published activities launch that it lacks."""
    lacking = [u for u in in_use if u.sco_identifier not in identifiers]
    if not lacking:
        return None
    first = lacking[0]
    more = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
    return (f"the new version has no SCO {first.sco_identifier!r}, which activity {first.activity_id} of course "
            f"{first.course_id} launches{more}: activities keep their SCO by identifier")


def check_package_ready(package: Any) -> None:
    if package.status != "ready":
        raise Invalid(f"The SCORM package {package.id} is {package.status}, not ready.")


#: ``runtime_sessions.kind`` of a launched item whose resource is an asset (no SCORM API calls): untracked
UNTRACKED = "asset"


def untracked_fields(fields: Any, *, complete: bool = True) -> Any:
    """An untracked launch's attempt keeps the status its launch gave it whatever the player commits (an asset
    never reports): completed, or incomplete when its activity does not complete on launch."""
    status = "completed" if complete else "incomplete"
    return replace(fields, status=status, completion_status=status)


def sco_target(package: Any, scos: list[Any], wanted: str | None, passing: float | None) -> LaunchTarget:
    """The SCO ``wanted`` (None: the first tracked one, else the first item) of a ready package; ``passing`` is the
    course author's score. An item whose resource is an asset launches untracked (completed on launch)."""
    if wanted is None:
        scos = sorted(scos, key=lambda s: (not getattr(s, "tracked", True), s.position))
    sco = next((s for s in scos if wanted is None or s.identifier == wanted), None)
    if sco is None:
        raise Invalid(f"The SCORM package {package.id} has no SCO "
                      + (f"{wanted!r}." if wanted else "to launch."))
    standard = "1.2" if package.scorm_version == "1.2" else "2004"
    mastery = sco.mastery_score
    if standard == "1.2" and passing is not None:
        mastery = round(passing * 100, 2)  # the course author's passing score wins over the manifest's
    return LaunchTarget(
        kind="scorm" if getattr(sco, "tracked", True) else UNTRACKED, standard=standard,
        launch_path=sco.launch_url, title=sco.title or package.title,
        package_id=package.id, sco_identifier=sco.identifier, mastery_score=mastery,
        passing_score_scaled=passing if passing is not None else sco.passing_score_scaled,
        completion_threshold=sco.completion_threshold, objective_ids=list(sco.objective_ids or []),
        launch_data=sco.launch_data, time_limit_action=sco.time_limit_action,
        max_time_allowed=sco.max_time_allowed,
    )


# --- the runtime --------------------------------------------------------------------------------------------

FINISHED = "This launch has finished; launch the activity again to continue."
CANCELLED = "The enrollment of this launch was cancelled; the launch has ended."
EXPIRED = "The enrollment of this launch has expired; the launch has ended."
SUSPENDED = "The organisation of this launch is suspended; the launch has ended."


def ended(*, finished_at: datetime | None, preview: bool, enrollment_status: str | None,
          enrollment_expires_at: datetime | None, tenant_status: str | None, stamp: datetime) -> str | None:
    """Why a launch has ended (the message), or None while it is live.

    A ``completed`` enrollment does not end its launches: the launch that completed it still has its finish to
    send, and completed enrollments may play in review mode (ADR 0015, ADR 0013). An enrollment the scorm service
    has not heard of yet is live: the launch itself proved it was launchable.
    """
    if tenant_status == "suspended":
        return SUSPENDED
    if finished_at is not None:
        return FINISHED
    if preview:
        return None
    if enrollment_status == "cancelled":
        return CANCELLED
    expires_at = as_utc(enrollment_expires_at)
    if enrollment_status == "expired" or (expires_at is not None and expires_at <= stamp
                                          and enrollment_status != "completed"):
        return EXPIRED
    return None


def parsed_snapshot(text: str | None) -> dict[str, str]:
    """A stored CMI snapshot (JSON text) as a dict; CPU-bound on a large one."""
    value = json.loads(text) if text else {}
    return dict(value) if isinstance(value, dict) else {}


def session_time_delta(reported: float | None, previously_reported: float) -> float:
    """What the reported session time grew by since the previous commit of this launch (never negative)."""
    return max(0.0, reported - previously_reported) if reported is not None else 0.0


@dataclass(frozen=True)
class Committed:
    attempt_id: int
    sequence: int
    status: str
    finished: bool

    def as_dict(self) -> dict[str, Any]:
        return {"attempt_id": self.attempt_id, "sequence": self.sequence, "status": self.status,
                "finished": self.finished}


def page_state(row: Any, token: str, *, limits: CmiLimits | None = None) -> dict[str, object]:
    """What player.html hands to player.js: the launch values plus this launch's saved snapshot.

    CPU-bound on a large snapshot: call it off the event loop (``asyncio.to_thread``)."""
    if row.finished_at is not None:
        raise LaunchEnded(FINISHED)
    cmi = initial_cmi(
        row.standard,
        learner_id=str(row.user_id),
        learner_name=row.learner_name,  # the full directory name, as of the launch (docs/scorm.md)
        suspend_data=None,
        location=None,
        mastery_score=row.mastery_score,
        scaled_passing_score=row.passing_score_scaled,
        launch_data=row.launch_data,
        time_limit_action=row.time_limit_action,
        max_time_allowed=row.max_time_allowed,
        credit=row.mode == "normal",
        mode=row.mode,
        completion_threshold=row.completion_threshold,
        total_time_seconds=row.prior_total_seconds,
        objective_ids=list(row.objective_ids or []),
        saved=parsed_snapshot(row.cmi_text),
    )
    state = player_state(token=token, standard=row.standard, launch_url=row.launch_path, cmi=cmi,
                         title=row.title)
    if limits is not None:  # player.js refuses to create items past them (SetValue error), as the server does
        state["cmi_limits"] = {"items": limits.max_items, "nested_items": limits.max_nested_items}
    return state
