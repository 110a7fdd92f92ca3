from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from shared.events.base import EventModel


class CertificateIssued(EventModel):
    """One certificate was issued for one completed enrollment."""

    event_type: ClassVar[str] = "certificate.issued"

    certificate_id: int
    enrollment_id: int
    user_id: int
    course_id: int
    template_id: int | None
    verification_id: str
    verification_url: str
    recipient_name: str
    course_title: str
    issued_at: datetime
    expires_at: datetime | None = None


class CertificateRevoked(EventModel):
    event_type: ClassVar[str] = "certificate.revoked"

    certificate_id: int
    verification_id: str
    revoked_at: datetime
    reason: str


class CertificatePdfRegenerated(EventModel):
    """A certificate got a new PDF (template change or explicit regenerate); its verification id is unchanged."""

    event_type: ClassVar[str] = "certificate.pdf_regenerated"

    certificate_id: int
    verification_id: str
    template_id: int | None
    template_version: int
    pdf_version: int
    sha256: str


class TemplateCreated(EventModel):
    event_type: ClassVar[str] = "template.created"

    template_id: int
    name: str
    version: int
    is_default: bool


class TemplateUpdated(EventModel):
    """A template changed: every non-revoked certificate on it is re-rendered."""

    event_type: ClassVar[str] = "template.updated"

    template_id: int
    name: str
    version: int
    is_default: bool
