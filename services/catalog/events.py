"""The catalog's outgoing events, each built with :func:`shared.bus.envelope.build_event` (subject ``course/{id}``).

A course event carries the course's snapshot (``CourseSnapshot``) as the row stands after the change;
``course.published`` adds the whole tree of the version (``modules``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.bus.envelope import CloudEvent, Origin, build_event
from shared.db import as_utc
from shared.events.base import Credit
from shared.events.catalog import (
    ActivityNode,
    CourseArchived,
    CourseCreated,
    CoursePublished,
    CourseSnapshot,
    CourseUnpublished,
    CourseUpdated,
    LessonNode,
    ModuleNode,
)

SERVICE = "catalog"


def _snapshot_fields(row: Any) -> dict[str, Any]:
    return dict(
        course_id=row.id,
        slug=row.slug,
        title=row.title,
        status=row.status,
        version_number=row.version_number,
        completion_rule=row.completion_rule,
        credit=Credit(hours=row.credit_hours, kind=row.credit_kind,
                      expires_after_months=row.credit_expires_after_months),
        certificate_template_id=row.certificate_template_id,
        owner_id=row.owner_id,
        revision=row.revision,
        updated_at=as_utc(row.updated_at),
    )


def _course_event(origin: Origin, payload: CourseSnapshot) -> CloudEvent:
    return build_event(origin, payload, service=SERVICE, subject=f"course/{payload.course_id}")


def course_created(origin: Origin, row: Any) -> CloudEvent:
    return _course_event(origin, CourseCreated(**_snapshot_fields(row)))


def course_updated(origin: Origin, row: Any) -> CloudEvent:
    return _course_event(origin, CourseUpdated(**_snapshot_fields(row)))


def course_published(origin: Origin, row: Any, tree: Sequence[Mapping[str, Any]]) -> CloudEvent:
    """The published version: its data is also the version's snapshot (``course_versions``)."""
    fields = _snapshot_fields(row)
    return _course_event(origin, CoursePublished(**fields, published_at=fields["updated_at"],
                                                 modules=_tree_nodes(tree)))


def course_unpublished(origin: Origin, row: Any) -> CloudEvent:
    return _course_event(origin, CourseUnpublished(**_snapshot_fields(row)))


def course_archived(origin: Origin, row: Any) -> CloudEvent:
    return _course_event(origin, CourseArchived(**_snapshot_fields(row)))


def _tree_nodes(tree: Sequence[Mapping[str, Any]]) -> list[ModuleNode]:
    return [
        ModuleNode(module_id=m["id"], title=m["title"], position=m["position"], lessons=[
            LessonNode(lesson_id=lesson["id"], title=lesson["title"], position=lesson["position"], activities=[
                ActivityNode(activity_id=a["id"], title=a["title"], position=a["position"], kind=a["kind"],
                             required=a["required"], scorm_package_id=a["scorm_package_id"],
                             sco_identifier=a["sco_identifier"], passing_score_scaled=a["passing_score_scaled"],
                             complete_on_launch=a.get("complete_on_launch"))
                for a in lesson["activities"]
            ])
            for lesson in m["lessons"]
        ])
        for m in tree
    ]
