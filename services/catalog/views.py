"""The JSON of catalog rows, as the API returns them (CONTRACT.md §6), and the course tree built from rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared.db import as_utc


def course_view(row: Any) -> dict[str, Any]:
    """The contract's Course object (CONTRACT.md §6)."""
    return {
        "id": row.id,
        "slug": row.slug,
        "title": row.title,
        "subtitle": row.subtitle,
        "summary": row.summary,
        "language": row.language,
        "completion_rule": row.completion_rule,
        "estimated_minutes": row.estimated_minutes,
        "status": row.status,
        "credit": {
            "hours": row.credit_hours,
            "kind": row.credit_kind,
            "expires_after_months": row.credit_expires_after_months,
        },
        "version": {
            "number": row.version_number,
            "status": row.version_status,
            "published_at": as_utc(row.published_at),
        },
        "owner": {"id": row.owner_id, "name": row.owner_name},
        "certificate_template_id": row.certificate_template_id,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }


def module_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "course_id": row.course_id, "title": row.title, "position": row.position}


def lesson_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "module_id": row.module_id, "title": row.title, "position": row.position}


def activity_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "lesson_id": row.lesson_id,
        "title": row.title,
        "position": row.position,
        "kind": row.kind,
        "required": row.required,
        "scorm_package_id": row.scorm_package_id,
        "sco_identifier": row.sco_identifier,
        "passing_score_scaled": row.passing_score_scaled,
        "complete_on_launch": row.complete_on_launch,
    }


#: a tree level's resource name -> the view of its rows
NODE_VIEWS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "module": module_view, "lesson": lesson_view, "activity": activity_view,
}


def node_view(resource: str, row: Any) -> dict[str, Any]:
    return NODE_VIEWS[resource](row)


def course_tree(modules: Sequence[Any], lessons: Sequence[Any], activities: Sequence[Any]) -> list[dict[str, Any]]:
    """Modules → lessons → activities, from the rows of each level (each already ordered by position)."""
    by_lesson: dict[int, list[dict[str, Any]]] = {}
    for a in activities:
        by_lesson.setdefault(a.lesson_id, []).append(activity_view(a))
    by_module: dict[int, list[dict[str, Any]]] = {}
    for lesson in lessons:
        by_module.setdefault(lesson.module_id, []).append(
            {**lesson_view(lesson), "activities": by_lesson.get(lesson.id, [])}
        )
    return [{**module_view(m), "lessons": by_module.get(m.id, [])} for m in modules]


def scorm_package_view(row: Any) -> dict[str, Any]:
    """A ready SCORM package of the read model, its SCOs in manifest order (the admin UI's picker)."""
    return {"id": row.package_id, "title": row.title, "scorm_version": row.scorm_version,
            "scos": sorted(row.scos, key=lambda s: s["position"])}
