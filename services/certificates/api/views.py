"""The JSON of a certificate and of a template, as the contract shapes them (from their database rows)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.certificates.domain import verification_url
from shared.db import as_utc


def _number(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value).normalize()


def pdf_url(public_url: str, certificate_id: int) -> str:
    return f"{public_url.rstrip('/')}/api/v1/learn/certificates/{certificate_id}/pdf"


def certificate_resource(row: Any, public_url: str) -> dict[str, Any]:
    """The contract's Certificate object (plus ``pdf.template_version``: the template version it shows)."""
    return {
        "id": row.id,
        "user_id": row.user_id,
        "course_id": row.course_id,
        "enrollment_id": row.enrollment_id,
        "template_id": row.template_id,
        "verification_id": row.verification_id,
        "verification_url": verification_url(public_url, row.verification_id),
        "recipient_name": row.recipient_name,
        "course_title": row.course_title,
        "credit": {"hours": _number(row.credit_hours), "kind": row.credit_kind},
        "issued_at": as_utc(row.issued_at),
        "expires_at": as_utc(row.expires_at),
        "is_revoked": row.revoked_at is not None,
        "revoked_at": as_utc(row.revoked_at),
        "revoked_reason": row.revoked_reason,
        "pdf": {
            "url": pdf_url(public_url, row.id),
            "sha256": row.pdf_sha256,
            "bytes": row.pdf_bytes,
            "version": row.pdf_version,
            "template_version": row.pdf_template_version,
            "generated_at": as_utc(row.pdf_generated_at),
        },
    }


def _asset(size: int | None, sha256: str | None, content_type: str) -> dict[str, Any] | None:
    if size is None or sha256 is None:
        return None
    return {"content_type": content_type, "bytes": size, "sha256": sha256}


def template_resource(row: Any) -> dict[str, Any]:
    """The contract's CertificateTemplate; ``logo`` and ``background_pdf`` are described, not inlined (their
    bytes can be megabytes: lists would balloon). Rows come from ``store.described_template`` and
    ``store.list_templates``: the columns without the asset bytes, plus their sizes."""
    return {
        "id": row.id,
        "name": row.name,
        "is_default": row.is_default,
        "orientation": row.orientation,
        "page_size": row.page_size,
        "title_text": row.title_text,
        "body_text": row.body_text,
        "primary_color": row.primary_color,
        "accent_color": row.accent_color,
        "logo": _asset(row.logo_bytes, row.logo_sha256, "image/png"),
        "background_pdf": _asset(row.background_bytes, row.background_sha256, "application/pdf"),
        "signatory_name": row.signatory_name,
        "signatory_title": row.signatory_title,
        "version": row.version,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }
