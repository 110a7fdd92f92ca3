"""Typed payloads (the CloudEvent ``data``) of every event on the bus, with their event types.

This package is the one source for publishers, consumers and the AsyncAPI document (docs/asyncapi.yaml).
Payloads are self-contained: a consumer never calls the publisher back. Every snapshot carries a ``revision``
(monotonic per aggregate) so consumers can apply events by version and never go backwards.
"""

from __future__ import annotations

from pydantic import BaseModel

from shared.events.base import EventModel
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
from shared.events.directory import (
    ApiKeyRevoked,
    AuditRecorded,
    StaffInvited,
    StaffUpdated,
    TenantUpdated,
    UserUpserted,
)
from shared.events.enrollment import (
    AttemptUpdated,
    CohortAccessGranted,
    EnrollmentCancelled,
    EnrollmentCompleted,
    EnrollmentCreated,
    EnrollmentExpired,
)
from shared.events.scorm import RuntimeCommitted, ScormPackageArchived, ScormPackageFailed, ScormPackageReady
from shared.events.webhooks import WebhookEndpointDisabled

#: every payload model; each names its own event type (``Model.event_type``)
ALL_MODELS: tuple[type[EventModel], ...] = (
    UserUpserted, ApiKeyRevoked, TenantUpdated, StaffInvited, StaffUpdated, AuditRecorded,
    CourseCreated, CourseUpdated, CoursePublished, CourseUnpublished, CourseArchived,
    EnrollmentCreated, EnrollmentCancelled, EnrollmentExpired, EnrollmentCompleted, CohortAccessGranted,
    AttemptUpdated,
    CertificateIssued, CertificateRevoked, CertificatePdfRegenerated, TemplateCreated, TemplateUpdated,
    ScormPackageReady, ScormPackageFailed, ScormPackageArchived, RuntimeCommitted,
    WebhookEndpointDisabled,
)

#: event type (the routing key's suffix) -> payload model, derived from the models themselves
EVENT_MODELS: dict[str, type[EventModel]] = {model.event_type: model for model in ALL_MODELS}

#: which service publishes each event type
PUBLISHERS: dict[str, str] = {
    **dict.fromkeys(["user.upserted", "api_key.revoked", "tenant.updated", "staff.invited",
                     "staff.updated", "audit.recorded"], "gateway"),
    **{t: "catalog" for t in EVENT_MODELS if t.startswith("course.")},
    **{t: "enrollment" for t in EVENT_MODELS if t.startswith(("enrollment.", "cohort.", "attempt."))},
    **{t: "certificates" for t in EVENT_MODELS if t.startswith(("certificate.", "template."))},
    **{t: "scorm" for t in EVENT_MODELS if t.startswith(("scorm_package.", "runtime."))},
    **{t: "webhooks" for t in EVENT_MODELS if t.startswith("webhook_endpoint.")},
}


def model_for(event_type: str) -> type[BaseModel]:
    return EVENT_MODELS[event_type]


def event_type_for(model: type[BaseModel]) -> str:
    event_type = getattr(model, "event_type", "")
    if event_type in EVENT_MODELS and EVENT_MODELS[event_type] is model:
        return str(event_type)
    raise KeyError(model.__name__)
