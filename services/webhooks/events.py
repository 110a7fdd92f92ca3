"""This service's event builders: ``webhook_endpoint.disabled`` on the bus, and the ``webhook.test`` message an
endpoint's test sends (delivered to that endpoint only, never published)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from shared.bus.envelope import CloudEvent, Origin, build_event
from shared.events.base import EventModel
from shared.events.webhooks import WebhookEndpointDisabled

SERVICE = "webhooks"


class WebhookTest(EventModel):
    """The body of ``POST .../webhook-endpoints/{id}/test``: proves the URL, the TLS setup and the signature."""

    event_type: ClassVar[str] = "webhook.test"

    endpoint_id: int
    sent_at: datetime


def endpoint_disabled(origin: Origin, endpoint_id: int, url: str, reason: str, failing_since: datetime,
                      disabled_at: datetime) -> CloudEvent:
    payload = WebhookEndpointDisabled(endpoint_id=endpoint_id, url=url, reason=reason, failing_since=failing_since,
                                      disabled_at=disabled_at)
    return build_event(origin, payload, service=SERVICE, subject=f"webhook_endpoint/{endpoint_id}")


def test_message(origin: Origin, endpoint_id: int, now: datetime) -> CloudEvent:
    return build_event(origin, WebhookTest(endpoint_id=endpoint_id, sent_at=now), service=SERVICE,
                       subject=f"webhook_endpoint/{endpoint_id}")
