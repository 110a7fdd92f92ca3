"""The success envelope, one named model per resource: ``CourseResponse`` (one object) and ``CourseList``.

``{"data": ..., "next_cursor": null | "...", "request_id": "req_..."}`` on every success (CONTRACT.md §4).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model

from shared.api import resources

RequestId = Annotated[str, Field(pattern="^req_", description="Also in the X-Request-Id header.")]

_ONE = Field(description="Always null for a single object.")
_PAGE = Field(description="Pass as ?cursor= for the next page; null on the last page.")


def _envelope(name: str, data: Any, cursor: Any, doc: str) -> type[BaseModel]:
    model: type[BaseModel] = create_model(name, __doc__=doc, __module__=__name__,
                                          data=(data, ...), next_cursor=(cursor, _ONE if cursor is None else _PAGE),
                                          request_id=(RequestId, ...))
    return model


def _single(resource: type[BaseModel]) -> type[BaseModel]:
    name = resource.__name__
    return _envelope(f"{name}Response", resource, None, f"One {name} in the success envelope.")


def _many(resource: type[BaseModel]) -> type[BaseModel]:
    name = resource.__name__
    return _envelope(f"{name}List", list[resource], str | None,  # type: ignore[valid-type]
                     f"A page of {name} objects, newest first, in the success envelope.")


_SINGLE: tuple[type[BaseModel], ...] = (
    resources.Course, resources.Enrollment, resources.CohortGrant, resources.Attempt, resources.Launch,
    resources.Certificate, resources.CertificateTemplate, resources.ScormPackageDetail, resources.RuntimeCommitted,
    resources.ScormUpload,
)
_LISTED: tuple[type[BaseModel], ...] = (
    resources.Course, resources.Module, resources.Lesson, resources.Activity, resources.Enrollment,
    resources.Attempt, resources.Certificate, resources.CertificateTemplate, resources.ScormPackage,
)

ENVELOPES: dict[str, type[BaseModel]] = {}
for _resource in _SINGLE:
    ENVELOPES[f"{_resource.__name__}Response"] = _single(_resource)
for _resource in _LISTED:
    ENVELOPES[f"{_resource.__name__}List"] = _many(_resource)


def envelope_of(resource: str) -> type[BaseModel]:
    """``CourseResponse`` for ``"Course"``."""
    return ENVELOPES[f"{resource}Response"]


def list_of(resource: str) -> type[BaseModel]:
    """``CourseList`` for ``"Course"``."""
    return ENVELOPES[f"{resource}List"]
