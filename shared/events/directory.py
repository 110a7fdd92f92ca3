from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.base import EventModel


class UserUpserted(EventModel):
    """A directory user was created or changed (gateway). Consumers keep a read model keyed by user_id."""

    event_type: ClassVar[str] = "user.upserted"

    user_id: int = Field(description="the tenant-scoped user id (chosen by the API consumer)")
    name: str
    email: str
    revision: int = Field(description="monotonic per user: apply only if greater than what you hold")
    updated_at: datetime


class ApiKeyRevoked(EventModel):
    """An API key was revoked; every gateway replica drops it from its cache."""

    event_type: ClassVar[str] = "api_key.revoked"

    key_id: int
    prefix: str
    revoked_at: datetime


class TenantUpdated(EventModel):
    """A tenant's status changed (gateway): a suspended tenant's learners lose their open launches at once."""

    event_type: ClassVar[str] = "tenant.updated"

    status: str = Field(description="active | suspended")
    updated_at: datetime = Field(description="when it changed: apply only if later than what you hold")
