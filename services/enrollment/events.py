"""The events this service sends, each built by one function here through ``shared.bus.envelope.build_event``.

Each takes the ``Origin`` of the change (the request's tenant and request id, or the incoming event's) and the
rows the change produced; handlers stage the result with ``uow.emit`` (the outbox of their transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.bus.envelope import CloudEvent, Origin, build_event
from shared.db import as_utc
from shared.events.enrollment import (
    AttemptUpdated,
    CohortAccessGranted,
    CompletedCourse,
    CompletedUser,
    EnrollmentCancelled,
    EnrollmentCompleted,
    EnrollmentCreated,
    EnrollmentExpired,
    Progress,
)

if TYPE_CHECKING:
    from services.enrollment import domain

SERVICE = "enrollment"


def _snapshot_fields(row: Any) -> dict[str, Any]:
    return {
        "enrollment_id": row.id,
        "user_id": row.user_id,
        "course_id": row.course_id,
        "course_version": row.course_version,
        "status": row.status,
        "source": row.source,
        "enrolled_at": as_utc(row.enrolled_at),
        "expires_at": as_utc(row.expires_at),
        "completed_at": as_utc(row.completed_at),
        "cancelled_at": as_utc(row.cancelled_at),
        "revision": row.revision,
    }


def enrollment_created(origin: Origin, row: Any) -> CloudEvent:
    payload = EnrollmentCreated(**_snapshot_fields(row))
    return build_event(origin, payload, service=SERVICE, subject=f"enrollment/{row.id}")


def enrollment_cancelled(origin: Origin, row: Any) -> CloudEvent:
    payload = EnrollmentCancelled(**_snapshot_fields(row))
    return build_event(origin, payload, service=SERVICE, subject=f"enrollment/{row.id}")


def enrollment_expired(origin: Origin, row: Any) -> CloudEvent:
    payload = EnrollmentExpired(**_snapshot_fields(row))
    return build_event(origin, payload, service=SERVICE, subject=f"enrollment/{row.id}")


def enrollment_completed(origin: Origin, row: Any, version: domain.PinnedVersion, progress: domain.Progress,
                         names: Any) -> CloudEvent:
    """``enrollment.completed`` carries everything a certificate needs: the learner's and the tenant's names
    (``names``: user_name, user_email, tenant_name) and the completed version's title, credit and template."""
    payload = EnrollmentCompleted(
        **_snapshot_fields(row),
        user=CompletedUser(id=row.user_id, name=names.user_name or "", email=names.user_email or ""),
        course=CompletedCourse(id=row.course_id, title=version.title, version=version.version_number,
                               credit=version.credit, certificate_template_id=version.certificate_template_id),
        progress=Progress(required_total=progress.required_total, required_done=progress.required_done),
        tenant_name=names.tenant_name or "",
    )
    return build_event(origin, payload, service=SERVICE, subject=f"enrollment/{row.id}")


def cohort_access_granted(origin: Origin, cohort_id: int, user_id: int, granted_at: datetime,
                          enrollment_ids: list[int]) -> CloudEvent:
    payload = CohortAccessGranted(cohort_id=cohort_id, user_id=user_id, granted_at=as_utc(granted_at),
                                  enrollment_ids=enrollment_ids)
    return build_event(origin, payload, service=SERVICE, subject=f"cohort/{cohort_id}")


def attempt_updated(origin: Origin, row: Any) -> CloudEvent:
    payload = AttemptUpdated(
        attempt_id=row.id, enrollment_id=row.enrollment_id, activity_id=row.activity_id, user_id=row.user_id,
        course_id=row.course_id, status=row.status, score_raw=row.score_raw, score_scaled=row.score_scaled,
        passed=row.passed, total_time_seconds=row.total_time_seconds, time_started_at=as_utc(row.time_started_at),
        time_ended_at=as_utc(row.time_ended_at), revision=row.revision,
    )
    return build_event(origin, payload, service=SERVICE, subject=f"attempt/{row.id}")
