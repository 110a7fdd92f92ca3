"""Pure rules of certificates: verification ids, expiry, status, which tenants an event or a request may speak
for, what a certificate shows (:class:`Facts`), a template row as the renderer sees it, and the domain errors
the handlers raise (the API maps them to the error envelope, in one table)."""

from __future__ import annotations

import calendar
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.certificates.pdf.spec import BUILTIN_DEFAULT_TEMPLATE, TemplateSpec
from shared.db import as_utc
from shared.domain_errors import DomainError
from shared.events.enrollment import EnrollmentCompleted

VERIFICATION_ID_LENGTH = 40
_VERIFICATION_ID = re.compile(r"[A-Za-z0-9_-]{40}")
TENANT_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


def new_verification_id() -> str:
    """40 URL-safe characters from ``secrets``: 30 random bytes, 240 bits (the contract asks for ≥ 160)."""
    vid = secrets.token_urlsafe(30)
    assert len(vid) == VERIFICATION_ID_LENGTH
    return vid


def is_verification_id(value: str) -> bool:
    return bool(_VERIFICATION_ID.fullmatch(value))


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expires_at(issued_at: datetime, expires_after_months: int | None) -> datetime | None:
    if not expires_after_months:
        return None
    return add_months(issued_at, expires_after_months)


def status_of(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> str:
    """``revoked`` wins over ``expired``; a certificate is ``valid`` otherwise."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and as_utc(expires_at) <= now:
        return "expired"
    return "valid"


class UnknownTenant(ValueError):
    """An event names a tenant this service cannot issue for; the message says why."""


@dataclass(frozen=True)
class KnownTenant:
    tenant_id: int
    slug: str
    name: str


def tenant_from_event(tenant_id: int | None, slug: str | None, name: str | None,
                      known: KnownTenant | None) -> KnownTenant:
    """Which tenant an ``enrollment.completed`` speaks for (the service has no directory of its own).

    Accepted: a well-formed slug and a positive tenant id, plus an issuer name either carried by the event or
    remembered from earlier. Rejected: a malformed slug, a missing id, a tenant never seen whose event lacks its
    name, or a known tenant id under another slug (slugs never change, so that is a forged or broken event).
    """
    if not tenant_id or tenant_id < 1:
        raise UnknownTenant("the event carries no tenant id")
    if not slug or not TENANT_SLUG.fullmatch(slug):
        raise UnknownTenant(f"malformed tenant slug {slug!r}")
    if known is not None and known.slug != slug:
        raise UnknownTenant(f"tenant {tenant_id} is {known.slug!r}, not {slug!r}")
    clean = (name or "").strip()
    if clean:
        return KnownTenant(tenant_id, slug, clean[:200])
    if known is None:
        raise UnknownTenant(f"tenant {tenant_id} ({slug}) was never seen and the event carries no tenant_name")
    return known


def tenant_of_request(tenant_id: int, slug: str, forwarded_name: str | None) -> KnownTenant:
    """The caller's tenant as the gateway forwards it (its display name is the issuer on certificates)."""
    name = (forwarded_name or slug).strip()[:200] or slug
    return KnownTenant(tenant_id, slug, name)


class UnusableEvent(ValueError):
    """An ``enrollment.completed`` that cannot become a certificate; the message says why."""


def check_completion(payload: EnrollmentCompleted) -> None:
    if payload.status != "completed":
        raise UnusableEvent(f"enrollment.completed with status {payload.status!r}")
    if not payload.user.name.strip():
        raise UnusableEvent("enrollment.completed without a user name")
    if not payload.course.title.strip():
        raise UnusableEvent("enrollment.completed without a course title")


def verification_url(public_url: str, verification_id: str) -> str:
    return f"{public_url.rstrip('/')}/verify/{verification_id}"


@dataclass(frozen=True)
class Facts:
    """What a certificate shows, as stored (a row) or about to be stored (a new issue)."""

    recipient_name: str
    course_title: str
    credit_hours: Decimal | None
    credit_kind: str | None
    issued_at: datetime
    expires_at: datetime | None
    verification_id: str
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @classmethod
    def of_row(cls, row: Any, **changes: Any) -> Facts:
        values = {
            "recipient_name": row.recipient_name, "course_title": row.course_title,
            "credit_hours": row.credit_hours, "credit_kind": row.credit_kind, "issued_at": as_utc(row.issued_at),
            "expires_at": as_utc(row.expires_at), "verification_id": row.verification_id,
            "revoked_at": as_utc(row.revoked_at), "revoked_reason": row.revoked_reason,
        }
        values.update(changes)
        return cls(**values)


def facts_of_completion(payload: EnrollmentCompleted, directory_name: str | None, now: datetime) -> Facts:
    """A new certificate's facts: the directory's name for the user if we hold one, else the event's."""
    issued_at = payload.completed_at or now  # the day it was earned, even if the message was late
    credit = payload.course.credit
    return Facts(
        recipient_name=((directory_name or "").strip() or payload.user.name.strip())[:200],
        course_title=payload.course.title.strip()[:300],
        credit_hours=credit.hours,
        credit_kind=credit.kind[:64] if credit.kind else None,
        issued_at=issued_at,
        expires_at=expires_at(issued_at, credit.expires_after_months),
        verification_id=new_verification_id(),
    )


# --- templates ---------------------------------------------------------------------------------------------

#: what a new template holds when the request leaves a field out: the built-in look
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "orientation": BUILTIN_DEFAULT_TEMPLATE.orientation,
    "page_size": BUILTIN_DEFAULT_TEMPLATE.page_size,
    "title_text": BUILTIN_DEFAULT_TEMPLATE.title_text,
    "body_text": BUILTIN_DEFAULT_TEMPLATE.body_text,
    "primary_color": BUILTIN_DEFAULT_TEMPLATE.primary_color,
    "accent_color": BUILTIN_DEFAULT_TEMPLATE.accent_color,
    "logo": None,
    "background_pdf": None,
    "signatory_name": None,
    "signatory_title": None,
}


def spec_of(row: Any | None, issuer_name: str) -> TemplateSpec:
    """The renderer's view of a template row (a full row, with its asset bytes); None is the built-in default."""
    if row is None:
        return replace(BUILTIN_DEFAULT_TEMPLATE, issuer_name=issuer_name)
    return TemplateSpec(
        id=row.id, version=row.version, name=row.name, orientation=row.orientation, page_size=row.page_size,
        title_text=row.title_text, body_text=row.body_text, primary_color=row.primary_color,
        accent_color=row.accent_color, logo_png=row.logo, signatory_name=row.signatory_name,
        signatory_title=row.signatory_title, background_pdf=row.background_pdf, issuer_name=issuer_name,
    )


def preview_spec(values: dict[str, Any], issuer_name: str) -> TemplateSpec:
    """A template being edited (``values``: every column of :data:`TEMPLATE_DEFAULTS` plus ``name``)."""
    return TemplateSpec(
        id=-1, version=1, name=values["name"], orientation=values["orientation"], page_size=values["page_size"],
        title_text=values["title_text"], body_text=values["body_text"], primary_color=values["primary_color"],
        accent_color=values["accent_color"], logo_png=values["logo"], signatory_name=values["signatory_name"],
        signatory_title=values["signatory_title"], background_pdf=values["background_pdf"],
        issuer_name=issuer_name,
    )


# --- errors ------------------------------------------------------------------------------------------------


class CertificatesError(DomainError):
    """A domain error of the certificates service; ``message`` is what the caller is told."""


class CertificateNotFound(CertificatesError):
    message = "Certificate not found."


class TemplateNotFound(CertificatesError):
    message = "Template not found."


class AlreadyRevoked(CertificatesError):
    message = "This certificate is already revoked."


class RenderUnavailable(CertificatesError):
    """A render failed (its worker died twice, or no worker runs): nothing was written; retry."""

    message = "The certificate's PDF could not be rendered just now; nothing was changed. Retry shortly."


class CertificateBusy(CertificatesError):
    """A regeneration batch changed the certificate while it rendered, twice: nothing was written; retry."""

    message = ("The certificate was being re-rendered by a template update; nothing was changed. "
               "Retry shortly.")


class ConcurrentChange(CertificatesError):
    """A certificate changed between being read and being written (its PDF version moved): redo the work."""
