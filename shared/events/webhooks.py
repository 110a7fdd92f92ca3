from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.base import EventModel


class WebhookEndpointDisabled(EventModel):
    """A webhook endpoint failed every delivery for the configured time (5 days by default) and was disabled
    (webhooks). Its undelivered messages wait; enabling it again resumes them."""

    event_type: ClassVar[str] = "webhook_endpoint.disabled"

    endpoint_id: int
    url: str
    reason: str = Field(description="why, for the tenant's operators")
    failing_since: datetime = Field(description="the first failure of the run that disabled it")
    disabled_at: datetime
