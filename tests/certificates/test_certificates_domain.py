"""Pure rules of certificates: verification ids, expiry, status, which tenants an event may speak for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.certificates.domain import (
    KnownTenant,
    UnknownTenant,
    add_months,
    expires_at,
    is_verification_id,
    new_verification_id,
    status_of,
    tenant_from_event,
)

ACME = KnownTenant(1, "acme", "Acme Academy")


def test_verification_ids_are_40_url_safe_characters_and_never_repeat():
    vids = {new_verification_id() for _ in range(2000)}
    assert len(vids) == 2000
    assert all(len(v) == 40 and is_verification_id(v) for v in vids)


@pytest.mark.parametrize("value", ["", "x" * 39, "x" * 41, "x" * 39 + "/", "x" * 39 + "=", "<" * 40])
def test_anything_else_is_not_a_verification_id(value):
    assert not is_verification_id(value)


@pytest.mark.parametrize(("start", "months", "expected"), [
    (datetime(2026, 6, 2, 10, tzinfo=UTC), 24, datetime(2028, 6, 2, 10, tzinfo=UTC)),
    (datetime(2026, 1, 31, tzinfo=UTC), 1, datetime(2026, 2, 28, tzinfo=UTC)),
    (datetime(2027, 12, 31, tzinfo=UTC), 2, datetime(2028, 2, 29, tzinfo=UTC)),
    (datetime(2026, 11, 15, tzinfo=UTC), 14, datetime(2028, 1, 15, tzinfo=UTC)),
])
def test_expiry_is_calendar_months_later_clamped_to_the_months_end(start, months, expected):
    assert add_months(start, months) == expected
    assert expires_at(start, months) == expected


@pytest.mark.parametrize("months", [None, 0])
def test_no_expiry_months_means_no_expiry(months):
    assert expires_at(datetime(2026, 6, 2, tzinfo=UTC), months) is None


def test_status_is_revoked_before_expired_before_valid():
    now = datetime(2026, 6, 2, tzinfo=UTC)
    past, future = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    assert status_of(None, None, now) == "valid"
    assert status_of(None, future, now) == "valid"
    assert status_of(None, past, now) == "expired"
    assert status_of(past, past, now) == "revoked"
    assert status_of(past, None, now) == "revoked"
    assert status_of(None, datetime(2026, 1, 1), now) == "expired"  # naive (SQLite) read as UTC


def test_an_event_with_a_slug_and_a_name_introduces_a_tenant():
    assert tenant_from_event(7, "globex", " Globex Corp ", None) == KnownTenant(7, "globex", "Globex Corp")


def test_a_known_tenant_may_come_without_a_name_and_a_new_name_wins():
    assert tenant_from_event(1, "acme", "", ACME) == ACME
    assert tenant_from_event(1, "acme", "Acme University", ACME).name == "Acme University"


@pytest.mark.parametrize(("tenant_id", "slug", "name", "known", "why"), [
    (0, "acme", "Acme", None, "no tenant id"),
    (None, "acme", "Acme", None, "no tenant id"),
    (1, "Not_A_Slug", "Acme", None, "malformed tenant slug"),
    (1, "a", "Acme", None, "malformed tenant slug"),
    (1, "", "Acme", None, "malformed tenant slug"),
    (9, "stranger", "", None, "never seen"),
    (1, "impostor", "Acme", ACME, "not 'impostor'"),
])
def test_events_for_tenants_it_cannot_issue_for_are_rejected_with_a_reason(tenant_id, slug, name, known, why):
    with pytest.raises(UnknownTenant, match=why):
        tenant_from_event(tenant_id, slug, name, known)
