"""Pure webhook rules: secrets and Standard Webhooks signatures, event-type filters, endpoint URL safety, the retry
schedule and when an endpoint is disabled. No I/O here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import urlsplit

from shared.domain_errors import DomainError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every signing secret, not one
STATUSES = ("enabled", "disabled")
MAX_FILTERS = 50
TEST_EVENT_TYPE = "webhook.test"

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class WebhooksError(DomainError):
    """Base of this service's domain errors; ``code`` is the stable error code of the API's envelope."""

    def __init__(self, message: str):
        super().__init__(message)


class EndpointNotFound(WebhooksError):
    code = "webhook_endpoint_not_found"

    def __init__(self) -> None:
        super().__init__("Webhook endpoint not found.")


class MessageNotFound(WebhooksError):
    code = "webhook_message_not_found"

    def __init__(self) -> None:
        super().__init__("Webhook message not found.")


class InvalidEndpoint(WebhooksError):
    """The URL, the filter or the status of an endpoint is not acceptable (the message says which and why)."""


class UnsafeDestination(InvalidEndpoint):
    """The endpoint's URL is not one this service may call (scheme, private address ...)."""


# --- secrets and signatures (https://www.standardwebhooks.com) ----------------------------------------------


def new_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes: the HMAC key is the decoded bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(active: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Every active secret signs (the new and, during a rotation's overlap, the previous): space separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in active)


def active_secrets(secret: str, previous: str | None, previous_until: datetime | None, now: datetime) -> list[str]:
    if previous and previous_until is not None and previous_until > now:
        return [secret, previous]
    return [secret]


# --- filters ------------------------------------------------------------------------------------------------


def normalize_filters(filters: Sequence[str], known: Iterable[str]) -> list[str]:
    """Exact event types (``enrollment.completed``) or a family (``enrollment.*``); empty means every event."""
    known = set(known)
    families = {t.split(".", 1)[0] for t in known}
    result: set[str] = set()
    if len(filters) > MAX_FILTERS:
        raise InvalidEndpoint(f"'event_types' takes at most {MAX_FILTERS} entries.")
    for raw in filters:
        value = raw.strip()
        if value.endswith(".*") and value[:-2] in families:
            result.add(value)
        elif value in known:
            result.add(value)
        else:
            raise InvalidEndpoint(f"'event_types': {raw!r} is no event type (use e.g. 'enrollment.completed' or "
                                  "'enrollment.*').")
    return sorted(result)


def matches(filters: Sequence[str], event_type: str) -> bool:
    if not filters:
        return True
    family = event_type.split(".", 1)[0] + ".*"
    return event_type in filters or family in filters


# --- destinations (SSRF) ------------------------------------------------------------------------------------


def check_url(url: str, *, allow_http: bool, networks: Sequence[IPNetwork]) -> str:
    """The URL as stored, or :class:`UnsafeDestination`. A literal address is checked here; a name is checked
    each time it is resolved (at send time, against DNS rebinding)."""
    if len(url) > 2000:
        raise InvalidEndpoint("'url' is longer than 2000 characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InvalidEndpoint("'url' is not a valid URL.") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeDestination("'url' must use https." if not allow_http else "'url' must use https or http.")
    if not parts.hostname:
        raise InvalidEndpoint("'url' has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination("'url' must not carry credentials.")
    if port == 0:
        raise InvalidEndpoint("'url' has no valid port.")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url.strip()
    reason = refused(address, networks)
    if reason:
        raise UnsafeDestination(f"'url' points at {reason} address {address}, which this service does not call.")
    return url.strip()


def refused(address: IPAddress, networks: Sequence[IPNetwork]) -> str | None:
    """Why an address may not be called (``"a loopback"`` ...), or None. ``networks`` are allowed anyway."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in networks):
        return None
    if address.is_loopback:
        return "a loopback"
    if address.is_link_local:
        return "a link-local"
    if address.is_private or address.is_reserved or address.is_unspecified or address.is_multicast:
        return "a private or reserved"
    if not address.is_global:
        return "a non-public"
    return None


# --- retries ------------------------------------------------------------------------------------------------


def retry_delay(failures: int, schedule: Sequence[float], jitter: float, rng: random.Random | None = None
                ) -> float | None:
    """Seconds before the next try after ``failures`` failed tries, with +-``jitter`` spread; None: give up."""
    if failures < 1 or failures > len(schedule):
        return None
    base = schedule[failures - 1]
    spread = (rng or random).uniform(-jitter, jitter)
    return max(0.0, base * (1 + spread))


def should_disable(failing_since: datetime | None, now: datetime, disable_after: float) -> bool:
    return failing_since is not None and now - failing_since >= timedelta(seconds=disable_after)


def delivered(status: int | None) -> bool:
    return status is not None and 200 <= status < 300
