"""Pure rules of certificates: verification ids, expiry, status, which tenants an event may speak for."""

from __future__ import annotations

import calendar
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from shared.db import as_utc

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
