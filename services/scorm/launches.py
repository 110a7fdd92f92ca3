"""Launching an activity: from (enrollment, activity) to a runtime session, a signed token, the first event.

Who may launch (docs/scorm.md): an ``active`` enrollment (not past its ``expires_at``) in normal mode, a
``completed`` one in review mode (``cmi.mode`` review, no credit); ``cancelled`` and ``expired`` ones may not,
nor activities of an archived course. The activity must belong to the course version the learner is enrolled
in. A ``scorm`` activity launches its SCO (``sco_identifier``, or the package's first SCO); the other kinds
launch the built-in page, which speaks SCORM 2004 to the same runtime.

One launch is one attempt: ``attempt_id`` is the session id, and ``runtime.committed`` with ``sequence`` 0 and
status ``not_attempted`` makes the attempt exist at once. When the previous launch of the same activity was
suspended (``exit`` = ``suspend``) or left without finishing, the new one resumes from its data. The learner's
directory name (``user.upserted``) is read once, at launch, and kept with the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.scorm.context import ScormContext
from services.scorm.readmodels import learner_name
from services.scorm.store import (
    course_activities,
    courses,
    enrollments,
    now,
    runtime_sessions,
    scorm_packages,
    scorm_scos,
)
from shared.bus import outbox
from shared.bus.envelope import new_event
from shared.db import Database, TenantScope, as_utc
from shared.events.scorm import RuntimeCommitted
from shared.http import ApiError, RequestContext

log = structlog.get_logger("scorm.launches")

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


async def launch(db: Database, scorm: ScormContext, ctx: RequestContext, enrollment_id: int,
                 activity_id: int) -> dict[str, Any]:
    scope = TenantScope(ctx.tenant_id)
    stamp = now()
    # Whole seconds: the token carries its expiry in seconds, and the answer shows the same instant.
    expires_at = stamp.replace(microsecond=0) + timedelta(seconds=scorm.settings.token_ttl)
    async with db.transaction() as session:
        enrollment = (await session.execute(
            scope.select(enrollments).where(enrollments.c.enrollment_id == enrollment_id))).first()
        if enrollment is None:
            raise ApiError.not_found("enrollment")
        mode = _mode(enrollment, stamp)
        course = (await session.execute(
            scope.select(courses).where(courses.c.course_id == enrollment.course_id))).first()
        if course is not None and course.status == "archived":
            raise ApiError.invalid("The course is archived; its activities can no longer be launched.")
        activity = (await session.execute(scope.select(course_activities).where(
            course_activities.c.course_id == enrollment.course_id,
            course_activities.c.version_number == enrollment.course_version,
            course_activities.c.activity_id == activity_id,
        ))).first()
        if activity is None:
            raise ApiError.not_found("activity")
        target = await _target(session, scope, activity)
        previous = (await session.execute(scope.select(runtime_sessions).where(
            runtime_sessions.c.enrollment_id == enrollment_id, runtime_sessions.c.activity_id == activity_id,
        ).order_by(runtime_sessions.c.id.desc()).limit(1))).first()
        resumed = resumes(previous, target)
        name = await learner_name(session, ctx.tenant_id, enrollment.user_id)
        row = (await session.execute(scope.insert(
            runtime_sessions, tenant_slug=ctx.tenant_slug, enrollment_id=enrollment_id,
            activity_id=activity_id, user_id=enrollment.user_id, learner_name=name,
            course_id=enrollment.course_id, mode=mode,
            **_target_values(target), **_resumed_values(previous if resumed else None),
            sequence=0, reported_session_seconds=0.0, status="not_attempted", started_at=stamp,
            finished_at=None, expires_at=expires_at, request_id=ctx.request_id, updated_at=stamp,
        ).returning(*runtime_sessions.c))).one()
        await outbox.add(session, runtime_event(row, sequence=0, status="not_attempted"))
    token = scorm.tokens.issue(row.id, ctx.tenant_id, expires_at)
    log.info("activity_launched", attempt_id=row.id, enrollment_id=enrollment_id, activity_id=activity_id,
             kind=target.kind, standard=target.standard, mode=mode, resumed=resumed)
    return {
        "launch_url": f"{scorm.settings.common.content_url_for(ctx.tenant_slug)}/learn/player/{token}",
        "runtime_token": token,
        "expires_at": expires_at,
        "attempt_id": row.id,
    }


def _target_values(target: LaunchTarget) -> dict[str, Any]:
    return {
        "kind": target.kind, "package_id": target.package_id, "sco_identifier": target.sco_identifier,
        "standard": target.standard, "launch_path": target.launch_path, "title": target.title,
        "mastery_score": target.mastery_score, "passing_score_scaled": target.passing_score_scaled,
        "completion_threshold": target.completion_threshold, "objective_ids": target.objective_ids,
        "launch_data": target.launch_data,
    }


def _resumed_values(previous: Any | None) -> dict[str, Any]:
    """A resumed launch starts from the previous one's snapshot and total time."""
    if previous is None:
        return {"cmi": {}, "prior_total_seconds": 0.0}
    return {"cmi": dict(previous.cmi), "prior_total_seconds": previous.prior_total_seconds
            + previous.reported_session_seconds}


def _mode(enrollment: Any, stamp: datetime) -> str:
    status = enrollment.status
    expires_at = as_utc(enrollment.expires_at)
    if status == "active" and expires_at is not None and expires_at <= stamp:
        status = "expired"  # the sweeper's event may not have arrived yet
    if status not in LAUNCHABLE:
        raise ApiError.invalid(
            f"The enrollment is {status}; only an active enrollment can launch activities.")
    return "review" if status == "completed" else "normal"


async def _target(session: AsyncSession, scope: TenantScope, activity: Any) -> LaunchTarget:
    if activity.kind != "scorm":
        return LaunchTarget(kind=activity.kind, standard="2004", launch_path=BUILTIN_PAGE,
                            title=activity.title, passing_score_scaled=activity.passing_score_scaled)
    if activity.scorm_package_id is None:
        raise ApiError.invalid("The activity has no SCORM package to launch.")
    package = (await session.execute(
        scope.select(scorm_packages).where(scorm_packages.c.id == activity.scorm_package_id))).first()
    if package is None:
        raise ApiError.invalid(f"The activity's SCORM package {activity.scorm_package_id} does not exist.")
    return await _sco_target(session, scope, package, activity.sco_identifier, activity.passing_score_scaled)


async def _sco_target(session: AsyncSession, scope: TenantScope, package: Any, wanted: str | None,
                      passing: float | None) -> LaunchTarget:
    """The SCO ``wanted`` (None: the first) of a ready package; ``passing`` is the course author's score."""
    if package.status != "ready":
        raise ApiError.invalid(f"The SCORM package {package.id} is {package.status}, not ready.")
    scos = (await session.execute(scope.select(scorm_scos).where(scorm_scos.c.package_id == package.id)
                                  .order_by(scorm_scos.c.position))).all()
    sco = next((s for s in scos if wanted is None or s.identifier == wanted), None)
    if sco is None:
        raise ApiError.invalid(f"The SCORM package {package.id} has no SCO "
                               + (f"{wanted!r}." if wanted else "to launch."))
    standard = "1.2" if package.scorm_version == "1.2" else "2004"
    mastery = sco.mastery_score
    if standard == "1.2" and passing is not None:
        mastery = round(passing * 100, 2)  # the course author's passing score wins over the manifest's
    return LaunchTarget(
        kind="scorm", standard=standard, launch_path=sco.launch_url, title=sco.title or package.title,
        package_id=package.id, sco_identifier=sco.identifier, mastery_score=mastery,
        passing_score_scaled=passing if passing is not None else sco.passing_score_scaled,
        completion_threshold=sco.completion_threshold, objective_ids=list(sco.objective_ids or []),
        launch_data=sco.launch_data,
    )


async def preview(db: Database, scorm: ScormContext, ctx: RequestContext, package_id: int,
                  sco_identifier: str | None) -> dict[str, Any]:
    """An admin trying a SCO: a launch in browse mode with no enrollment behind it and no events."""
    scope = TenantScope(ctx.tenant_id)
    stamp = now()
    expires_at = stamp.replace(microsecond=0) + timedelta(seconds=scorm.settings.token_ttl)
    async with db.transaction() as session:
        package = (await session.execute(
            scope.select(scorm_packages).where(scorm_packages.c.id == package_id))).first()
        if package is None:
            raise ApiError.not_found("scorm_package")
        target = await _sco_target(session, scope, package, sco_identifier, None)
        row = (await session.execute(scope.insert(
            runtime_sessions, tenant_slug=ctx.tenant_slug, enrollment_id=0, activity_id=0,
            user_id=ctx.owner_id or 0, learner_name="",  # an admin, not a learner of the directory
            course_id=0, mode="browse", preview=True, **_target_values(target),
            **_resumed_values(None), sequence=0, reported_session_seconds=0.0, status="not_attempted",
            started_at=stamp, finished_at=None, expires_at=expires_at, request_id=ctx.request_id,
            updated_at=stamp,
        ).returning(runtime_sessions.c.id))).one()
    token = scorm.tokens.issue(row.id, ctx.tenant_id, expires_at)
    log.info("sco_previewed", package_id=package_id, sco_identifier=target.sco_identifier)
    return {
        "launch_url": f"{scorm.settings.common.content_url_for(ctx.tenant_slug)}/learn/player/{token}",
        "runtime_token": token,
        "expires_at": expires_at,
    }


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def runtime_event(row: Any, *, sequence: int, status: str, fields: Any = None, delta: float = 0.0,
                  ended_at: datetime | None = None, request_id: str | None = None) -> Any:
    """``runtime.committed`` for one launch (``fields``: the derived AttemptFields, None at launch)."""
    payload = RuntimeCommitted(
        attempt_id=row.id, enrollment_id=row.enrollment_id, activity_id=row.activity_id, user_id=row.user_id,
        course_id=row.course_id, sequence=sequence, standard=row.standard, status=status,
        completion_status=getattr(fields, "completion_status", None),
        success_status=getattr(fields, "success_status", None),
        score_raw=_decimal(getattr(fields, "score_raw", None)),
        score_scaled=_decimal(getattr(fields, "score_scaled", None)),
        passed=getattr(fields, "passed", None),
        session_time_delta_seconds=Decimal(str(round(delta, 2))),
        time_started_at=as_utc(row.started_at), time_ended_at=ended_at, finished=ended_at is not None,
    )
    return new_event("runtime.committed", payload, service="scorm", tenant=row.tenant_slug,
                     tenant_id=row.tenant_id, subject=f"attempt/{row.id}",
                     request_id=request_id or row.request_id)
