"""Certificates tables, portable upserts and the API's resource shapes.

Owned data: ``templates`` (with their logo and background bytes), ``certificates`` (one per enrollment, with the
current PDF's blob key and facts), ``regeneration_jobs`` (one per template version to re-render).
Read models filled from events and forwarded headers: ``tenants`` (slug and display name, the issuer) and
``users`` (directory names for future renders). PDFs live in the blob store (``blobs``/``blob_chunks`` when it
is the database one).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from shared.blobstore import blob_tables
from shared.db import BigId, Timestamp, as_utc, directory_users_table, tenant_names_table

metadata = sa.MetaData()
blob_tables(metadata)

tenants = tenant_names_table(metadata)
users = directory_users_table(metadata)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False),
    sa.Column("orientation", sa.String(16), nullable=False),
    sa.Column("page_size", sa.String(16), nullable=False),
    sa.Column("title_text", sa.String(200), nullable=False),
    sa.Column("body_text", sa.Text, nullable=False),
    sa.Column("primary_color", sa.String(7), nullable=False),
    sa.Column("accent_color", sa.String(7), nullable=False),
    sa.Column("logo", sa.LargeBinary, nullable=True),
    sa.Column("logo_sha256", sa.String(64), nullable=True),
    sa.Column("background_pdf", sa.LargeBinary, nullable=True),
    sa.Column("background_sha256", sa.String(64), nullable=True),
    sa.Column("signatory_name", sa.String(200), nullable=True),
    sa.Column("signatory_title", sa.String(200), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_templates_tenant", "tenant_id", "id"),
    # Exactly one default per tenant, enforced by the database, not only by the handler.
    sa.Index("ux_templates_default", "tenant_id", unique=True,
             postgresql_where=sa.text("is_default"), sqlite_where=sa.text("is_default")),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("enrollment_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("course_version", sa.Integer, nullable=False),
    sa.Column("template_id", sa.BigInteger, nullable=True),  # null: the built-in default template
    sa.Column("verification_id", sa.String(40), nullable=False),
    sa.Column("recipient_name", sa.String(200), nullable=False),
    sa.Column("course_title", sa.String(300), nullable=False),
    sa.Column("credit_hours", sa.Numeric(12, 4), nullable=True),
    sa.Column("credit_kind", sa.String(64), nullable=True),
    sa.Column("issued_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Column("revoked_reason", sa.Text, nullable=True),
    sa.Column("pdf_key", sa.String(300), nullable=False),
    sa.Column("pdf_sha256", sa.String(64), nullable=False),
    sa.Column("pdf_bytes", sa.BigInteger, nullable=False),
    sa.Column("pdf_version", sa.Integer, nullable=False),
    sa.Column("pdf_template_version", sa.Integer, nullable=False),
    sa.Column("pdf_generated_at", Timestamp, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant_id", "enrollment_id", name="ux_certificates_enrollment"),
    sa.UniqueConstraint("verification_id", name="ux_certificates_verification_id"),
    sa.Index("ix_certificates_user", "tenant_id", "user_id", "id"),
    sa.Index("ix_certificates_course", "tenant_id", "course_id", "id"),
    sa.Index("ix_certificates_template", "tenant_id", "template_id", "id"),
)

regeneration_jobs = sa.Table(
    "regeneration_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("template_id", sa.BigInteger, nullable=False),
    sa.Column("template_version", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.UniqueConstraint("tenant_id", "template_id", "template_version", name="ux_regeneration_jobs_version"),
    sa.Index("ix_regeneration_jobs_open", "finished_at", "id"),
)

#: template columns without the asset bytes (lists and gets never need them)
TEMPLATE_FIELDS = tuple(c for c in templates.c if c.name not in ("logo", "background_pdf"))
LOGO_SIZE = sa.func.length(templates.c.logo).label("logo_bytes")
BACKGROUND_SIZE = sa.func.length(templates.c.background_pdf).label("background_bytes")


def _number(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value).normalize()


def pdf_url(public_url: str, certificate_id: int) -> str:
    return f"{public_url.rstrip('/')}/api/v1/learn/certificates/{certificate_id}/pdf"


def verification_url(public_url: str, verification_id: str) -> str:
    return f"{public_url.rstrip('/')}/verify/{verification_id}"


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
    bytes can be megabytes: lists would balloon). Select :data:`TEMPLATE_FIELDS` + the two size labels."""
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
