"""The events this service emits, built with ``shared.bus.envelope.build_event`` (the one way to build one).

Certificate events have the subject ``certificate/<id>``; template events ``template/<id>``. The caller stages
them in its transaction's outbox (``uow.emit``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.certificates.domain import Facts
from shared.bus.envelope import CloudEvent, Origin, build_event
from shared.events.certificates import (
    CertificateIssued,
    CertificatePdfRegenerated,
    CertificateRevoked,
    TemplateCreated,
    TemplateUpdated,
)
from shared.events.enrollment import EnrollmentCompleted

SERVICE = "certificates"


def _certificate_event(origin: Origin, payload: Any, certificate_id: int) -> CloudEvent:
    return build_event(origin, payload, service=SERVICE, subject=f"certificate/{certificate_id}")


def certificate_issued(origin: Origin, certificate_id: int, completion: EnrollmentCompleted, template_id: int | None,
                       facts: Facts, verification_url: str) -> CloudEvent:
    return _certificate_event(origin, CertificateIssued(
        certificate_id=certificate_id, enrollment_id=completion.enrollment_id, user_id=completion.user.id,
        course_id=completion.course.id, template_id=template_id, verification_id=facts.verification_id,
        verification_url=verification_url, recipient_name=facts.recipient_name, course_title=facts.course_title,
        issued_at=facts.issued_at, expires_at=facts.expires_at), certificate_id)


def certificate_revoked(origin: Origin, row: Any, revoked_at: datetime, reason: str) -> CloudEvent:
    return _certificate_event(origin, CertificateRevoked(
        certificate_id=row.id, verification_id=row.verification_id, revoked_at=revoked_at, reason=reason), row.id)


def pdf_regenerated(origin: Origin, row: Any, template_id: int | None, template_version: int, pdf_version: int,
                    sha256: str) -> CloudEvent:
    return _certificate_event(origin, CertificatePdfRegenerated(
        certificate_id=row.id, verification_id=row.verification_id, template_id=template_id,
        template_version=template_version, pdf_version=pdf_version, sha256=sha256), row.id)


def template_created(origin: Origin, row: Any) -> CloudEvent:
    return build_event(origin, TemplateCreated(template_id=row.id, name=row.name, version=row.version,
                                               is_default=row.is_default),
                       service=SERVICE, subject=f"template/{row.id}")


def template_updated(origin: Origin, row: Any) -> CloudEvent:
    return build_event(origin, TemplateUpdated(template_id=row.id, name=row.name, version=row.version,
                                               is_default=row.is_default),
                       service=SERVICE, subject=f"template/{row.id}")
