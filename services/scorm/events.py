"""The scorm service's events: ``scorm_package.ready`` / ``scorm_package.failed`` and ``runtime.committed``.

Each builder makes the payload model and hands it to ``shared.bus.envelope.build_event``; the origin of a change
is the package's or the launch's tenant and the request that started it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.bus.envelope import CloudEvent, Origin, build_event
from shared.db import as_utc
from shared.events.scorm import (
    RuntimeCommitted,
    ScoInfo,
    ScormPackageArchived,
    ScormPackageFailed,
    ScormPackageReady,
)

SERVICE = "scorm"
_OUTCOME_NAMESPACE = uuid.UUID("5b0f5f2e-3f7a-4d7e-9a55-7c1f3f0b1e21")


def outcome_event_id(tenant_id: int, package_id: int, event_type: str) -> str:
    """The id of a package's one ``ready`` or ``failed`` event, derivable from the package alone.

    A read of the package can then name the event that made its status (read-your-writes, ADR 0010): a client
    that saw ``ready`` here finds the catalog aware of it on its next request.
    """
    return str(uuid.uuid5(_OUTCOME_NAMESPACE, f"{tenant_id}/{package_id}/{event_type}"))


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _package_event(package: Any, payload: ScormPackageReady | ScormPackageFailed | ScormPackageArchived
                   ) -> CloudEvent:
    return build_event(Origin(package.tenant_id, package.tenant_slug, package.request_id), payload,
                       service=SERVICE, subject=f"scorm_package/{package.id}",
                       event_id=outcome_event_id(package.tenant_id, package.id, payload.event_type))


def package_ready(package: Any, *, title: str, scorm_version: str,
                  scos: Sequence[Mapping[str, Any]]) -> CloudEvent:
    """``scorm_package.ready`` for a package row, with its SCO list (``scos``: the ``scorm_scos`` rows to be)."""
    return _package_event(package, ScormPackageReady(
        package_id=package.id, title=title, scorm_version=scorm_version, version_of=package.version_of,
        scos=[ScoInfo(identifier=s["identifier"], title=s["title"], launch_url=s["launch_url"],
                      parameters=s["parameters"], mastery_score=_decimal(s["mastery_score"]),
                      passing_score_scaled=_decimal(s["passing_score_scaled"]), position=s["position"],
                      parent_identifier=s["parent_identifier"], tracked=s.get("tracked", True)) for s in scos],
    ))


def package_failed(package: Any, error: str) -> CloudEvent:
    return _package_event(package, ScormPackageFailed(package_id=package.id, title=package.title, error=error))


def package_archived(root: Any, family: Sequence[Any], archived_at: datetime, request_id: str | None) -> CloudEvent:
    """``scorm_package.archived`` for a family (``root``: the first package's row, ``family``: every version's)."""
    return build_event(Origin(root.tenant_id, root.tenant_slug, request_id),
                       ScormPackageArchived(package_id=root.id, package_ids=sorted(int(p.id) for p in family),
                                            title=root.title, archived_at=as_utc(archived_at)),
                       service=SERVICE, subject=f"scorm_package/{root.id}",
                       event_id=outcome_event_id(root.tenant_id, root.id, ScormPackageArchived.event_type))


def runtime_committed(session: Any, *, sequence: int, status: str, fields: Any = None, delta: float = 0.0,
                      ended_at: datetime | None = None, request_id: str | None = None) -> CloudEvent:
    """``runtime.committed`` for one launch (``session``: its row; ``fields``: the derived AttemptFields, None at
    launch)."""
    payload = RuntimeCommitted(
        attempt_id=session.id, enrollment_id=session.enrollment_id, activity_id=session.activity_id,
        user_id=session.user_id, course_id=session.course_id, sequence=sequence, standard=session.standard,
        status=status,
        completion_status=getattr(fields, "completion_status", None),
        success_status=getattr(fields, "success_status", None),
        score_raw=_decimal(getattr(fields, "score_raw", None)),
        score_scaled=_decimal(getattr(fields, "score_scaled", None)),
        passed=getattr(fields, "passed", None),
        session_time_delta_seconds=Decimal(str(round(delta, 2))),
        time_started_at=as_utc(session.started_at), time_ended_at=ended_at, finished=ended_at is not None,
    )
    return build_event(Origin(session.tenant_id, session.tenant_slug, request_id or session.request_id), payload,
                       service=SERVICE, subject=f"attempt/{session.id}")
