"""Pure helpers turning form strings into admin API payloads; a bad value raises :class:`FormError`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from shared.http import positive_int


class FormError(ValueError):
    """A value the operator typed cannot be sent; the message says which field and why."""


def text(form: Mapping[str, str], name: str) -> str | None:
    """The trimmed value, or None when absent or blank."""
    value = form.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def required(form: Mapping[str, str], name: str, label: str) -> str:
    value = text(form, name)
    if value is None:
        raise FormError(f"{label} is required.")
    return value


def integer(form: Mapping[str, str], name: str, label: str, *, minimum: int | None = None) -> int | None:
    value = text(form, name)
    if value is None:
        return None
    digits = value.removeprefix("-")
    number = positive_int(digits) if digits != "0" else 0
    if number is None:  # ASCII digits only: int() would also read other scripts' digits, signs and spaces
        raise FormError(f"{label} must be a whole number.")
    if value.startswith("-"):
        number = -number
    if minimum is not None and number < minimum:
        raise FormError(f"{label} must be at least {minimum}.")
    return number


def number(form: Mapping[str, str], name: str, label: str) -> int | float | None:
    """A decimal number as JSON sends it (an int when it has no fraction)."""
    value = text(form, name)
    if value is None:
        return None
    try:
        if not value.isascii():  # float() would read other scripts' digits
            raise ValueError(value)
        parsed = float(value)
    except ValueError:
        raise FormError(f"{label} must be a number.") from None
    if parsed != parsed or parsed in (float("inf"), float("-inf")):
        raise FormError(f"{label} must be a number.")
    return int(parsed) if parsed.is_integer() and "." not in value else parsed


def checked(form: Mapping[str, str], name: str) -> bool:
    return form.get(name) in ("on", "true", "1", "yes")


def end_of_day_utc(value: str | None, *, today: date | None = None) -> str | None:
    """A date from ``<input type=date>`` as the RFC 3339 instant at the end of that day, UTC."""
    if value is None or not value.strip():
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise FormError("The expiry date must be a date such as 2027-01-31.") from None
    if day < (today or datetime.now(UTC).date()):
        raise FormError("The expiry date must not be in the past.")
    return datetime.combine(day, time(23, 59, 59), UTC).isoformat().replace("+00:00", "Z")


def sco_choice(value: str | None) -> tuple[int, str | None] | None:
    """``"<package id>|<sco identifier>"`` from the SCO picker, or None for no choice; ``"<package id>|"`` is the
    package's first SCO (no identifier: the launch picks it, docs/catalog.md)."""
    if value is None or not value.strip():
        return None
    package, sep, identifier = value.partition("|")
    package_id = positive_int(package)
    if not sep or package_id is None:
        raise FormError("Choose a SCO from the list.")
    return package_id, identifier or None


def changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``wanted`` whose value differs from ``current`` (an update sends only those)."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}
