"""Typed payloads (the CloudEvent ``data``) of every event on the bus, with their event types.

This package is the one source for publishers, consumers and the AsyncAPI document (docs/asyncapi.yaml).
Payloads are self-contained: a consumer never calls the publisher back. Every snapshot carries a ``revision``
(monotonic per aggregate) so consumers can apply events by version and never go backwards.
"""

from __future__ import annotations

from pydantic import BaseModel

from shared.events.catalog import (
    CourseArchived,
    CourseCreated,
    CoursePublished,
    CourseUnpublished,
    CourseUpdated,
)
from shared.events.certificates import (
    CertificateIssued,
    CertificatePdfRegenerated,
    CertificateRevoked,
    TemplateCreated,
    TemplateUpdated,
)
from shared.events.directory import ApiKeyRevoked, TenantUpdated, UserUpserted
from shared.events.enrollment import (
    AttemptUpdated,
    CohortAccessGranted,
    EnrollmentCancelled,
    EnrollmentCompleted,
    EnrollmentCreated,
    EnrollmentExpired,
)
from shared.events.scorm import RuntimeCommitted, ScormPackageFailed, ScormPackageReady

#: event type (the routing key's suffix) -> payload model
EVENT_MODELS: dict[str, type[BaseModel]] = {
    "user.upserted": UserUpserted,
    "api_key.revoked": ApiKeyRevoked,
    "tenant.updated": TenantUpdated,
    "course.created": CourseCreated,
    "course.updated": CourseUpdated,
    "course.published": CoursePublished,
    "course.unpublished": CourseUnpublished,
    "course.archived": CourseArchived,
    "enrollment.created": EnrollmentCreated,
    "enrollment.cancelled": EnrollmentCancelled,
    "enrollment.expired": EnrollmentExpired,
    "enrollment.completed": EnrollmentCompleted,
    "cohort.access_granted": CohortAccessGranted,
    "attempt.updated": AttemptUpdated,
    "certificate.issued": CertificateIssued,
    "certificate.revoked": CertificateRevoked,
    "certificate.pdf_regenerated": CertificatePdfRegenerated,
    "template.created": TemplateCreated,
    "template.updated": TemplateUpdated,
    "scorm_package.ready": ScormPackageReady,
    "scorm_package.failed": ScormPackageFailed,
    "runtime.committed": RuntimeCommitted,
}

#: which service publishes each event type
PUBLISHERS: dict[str, str] = {
    **dict.fromkeys(["user.upserted", "api_key.revoked", "tenant.updated"], "gateway"),
    **{t: "catalog" for t in EVENT_MODELS if t.startswith("course.")},
    **{t: "enrollment" for t in EVENT_MODELS if t.startswith(("enrollment.", "cohort.", "attempt."))},
    **{t: "certificates" for t in EVENT_MODELS if t.startswith(("certificate.", "template."))},
    **{t: "scorm" for t in EVENT_MODELS if t.startswith(("scorm_package.", "runtime."))},
}


def model_for(event_type: str) -> type[BaseModel]:
    return EVENT_MODELS[event_type]


def event_type_for(model: type[BaseModel]) -> str:
    for event_type, candidate in EVENT_MODELS.items():
        if candidate is model:
            return event_type
    raise KeyError(model.__name__)
