"""What a certificate render takes and how its values are spelled: the template (:class:`TemplateSpec`), one
certificate's facts (:class:`CertificateData`), the built-in default template, placeholders, dates and hours.

Plain data and text, no reportlab: the renderer (render.py), the page layout (layout.py), the service and the
verification page all read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

PLACEHOLDERS = ("recipient_name", "course_title", "credit_hours", "credit_kind", "issued_on", "expires_on")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class TemplateSpec:
    id: int
    version: int
    name: str
    orientation: str  # "landscape" | "portrait"
    page_size: str  # "A4" | "Letter"
    title_text: str
    body_text: str  # placeholders: see PLACEHOLDERS
    primary_color: str  # "#rrggbb"
    accent_color: str
    logo_png: bytes | None
    signatory_name: str | None
    signatory_title: str | None
    background_pdf: bytes | None
    issuer_name: str = ""  # the tenant's display name (the issuer)


@dataclass(frozen=True)
class CertificateData:
    recipient_name: str
    course_title: str
    credit_hours: Decimal | float | None
    credit_kind: str | None
    issued_at: datetime
    expires_at: datetime | None
    verification_id: str
    verification_url: str
    revoked: bool = False
    revoked_at: datetime | None = None
    revoked_reason: str | None = None


BUILTIN_DEFAULT_TEMPLATE = TemplateSpec(
    id=0,
    version=1,
    name="Classic",
    orientation="landscape",
    page_size="A4",
    title_text="Certificate of Completion",
    body_text="has successfully completed the course",
    primary_color="#1f3a5f",
    accent_color="#b08d57",
    logo_png=None,
    signatory_name=None,
    signatory_title=None,
    background_pdf=None,
)


def fill_placeholders(text: str, cert: CertificateData) -> str:
    """Replace the known ``{name}`` placeholders; anything else (``{x}``, ``{a.b}``) stays verbatim.

    A plain substitution, never ``str.format``: template text is tenant input.
    """
    values = placeholder_values(cert)
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def placeholder_values(cert: CertificateData) -> dict[str, str]:
    return {
        "recipient_name": cert.recipient_name,
        "course_title": cert.course_title,
        "credit_hours": format_hours(cert.credit_hours),
        "credit_kind": cert.credit_kind or "",
        "issued_on": format_date(cert.issued_at),
        "expires_on": format_date(cert.expires_at) if cert.expires_at else "",
    }


def format_date(moment: datetime) -> str:
    """``2 June 2026``: the UTC calendar date, spelled the same on every machine (no locale)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def format_hours(hours: Decimal | float | None) -> str:
    if hours is None:
        return ""
    try:
        value = Decimal(str(hours)).normalize()
    except InvalidOperation:
        return str(hours)
    return format(value, "f") if value.is_finite() else str(hours)
