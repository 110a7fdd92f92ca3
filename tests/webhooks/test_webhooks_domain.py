"""The webhooks rules without I/O: Standard Webhooks signatures (against the spec's vector and the official
``standardwebhooks`` package), filters, refused destinations, the retry schedule; and the sender's connect-time
refusal of a name that resolves to loopback."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address, ip_network

import pytest
from standardwebhooks.webhooks import Webhook

from services.webhooks import domain
from services.webhooks.config import WebhooksSettings
from services.webhooks.sender import Sender, refused_name


def test_the_signature_matches_the_specs_test_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = domain.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_official_package_verifies_both_signatures_of_a_rotation() -> None:
    old, new = domain.new_secret(), domain.new_secret()
    now = datetime.now(UTC)
    body = b'{"id":"e1","type":"io.mobieus.learn.certificate.issued.v1"}'
    timestamp = int(now.timestamp())
    active = domain.active_secrets(new, old, now + timedelta(hours=1), now)
    headers = {"webhook-id": "e1", "webhook-timestamp": str(timestamp),
               "webhook-signature": domain.signature_header(active, "e1", timestamp, body)}
    assert Webhook(new).verify(body, headers)["id"] == "e1"
    assert Webhook(old).verify(body, headers)["id"] == "e1"
    assert Webhook(new).sign("e1", now, body.decode()) == domain.sign(new, "e1", timestamp, body)
    assert domain.active_secrets(new, old, now - timedelta(seconds=1), now) == [new]


def test_filters_take_exact_types_and_families() -> None:
    known = ["enrollment.completed", "enrollment.created", "certificate.issued"]
    assert domain.normalize_filters(["certificate.*", "enrollment.completed"], known) == [
        "certificate.*", "enrollment.completed"]
    with pytest.raises(domain.InvalidEndpoint):
        domain.normalize_filters(["nope.*"], known)
    assert domain.matches([], "anything.at_all")
    assert domain.matches(["certificate.*"], "certificate.issued")
    assert not domain.matches(["certificate.*"], "enrollment.completed")
    assert domain.matches(["enrollment.completed"], "enrollment.completed")


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.0.0.1", "192.168.1.1", "172.16.0.1",
                                     "::1", "fe80::1", "fc00::1", "0.0.0.0", "::ffff:127.0.0.1", "100.64.0.1"])
def test_private_loopback_and_link_local_addresses_are_refused(address: str) -> None:
    assert domain.refused(ip_address(address), []) is not None
    assert domain.refused(ip_address("93.184.216.34"), []) is None
    assert domain.refused(ip_address("127.0.0.2"), [ip_network("127.0.0.2/32")]) is None


def test_urls_must_be_https_without_credentials_unless_allowed() -> None:
    with pytest.raises(domain.UnsafeDestination):
        domain.check_url("http://example.com/x", allow_http=False, networks=[])
    assert domain.check_url("http://example.com/x", allow_http=True, networks=[]) == "http://example.com/x"
    with pytest.raises(domain.UnsafeDestination):
        domain.check_url("https://a:b@example.com/", allow_http=False, networks=[])
    with pytest.raises(domain.UnsafeDestination):
        domain.check_url("https://[::1]:8443/", allow_http=False, networks=[])


def test_retries_back_off_with_jitter_then_stop() -> None:
    schedule = (5.0, 300.0, 1800.0)
    rng = random.Random(7)
    delays = [domain.retry_delay(n, schedule, 0.2, rng) for n in (1, 2, 3)]
    assert all(d is not None and 0.8 * base <= d <= 1.2 * base for d, base in zip(delays, schedule, strict=True))
    assert domain.retry_delay(4, schedule, 0.2, rng) is None
    assert sum(WebhooksSettings().retries) / 86400 == pytest.approx(3.0, abs=0.25)  # about 3 days in all


def test_disabled_after_the_configured_time_of_failures() -> None:
    now = datetime.now(UTC)
    assert domain.should_disable(now - timedelta(days=5), now, 5 * 86400)
    assert not domain.should_disable(now - timedelta(days=4), now, 5 * 86400)
    assert not domain.should_disable(None, now, 5 * 86400)


async def test_a_name_resolving_to_loopback_is_refused_when_saved_and_when_sent() -> None:
    assert await refused_name("https://localhost/hook", []) is not None
    sender = Sender(WebhooksSettings(timeout=2))
    await sender.start()
    try:
        status, error, _ = await sender.post("https://localhost:9/hook", {}, b"{}")
    finally:
        await sender.close()
    assert status is None and error is not None and error.startswith("refused: localhost resolves to")
