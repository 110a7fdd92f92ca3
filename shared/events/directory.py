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


class StaffChanged(EventModel):
    """A tenant staff member's snapshot (gateway). Consumers keep it by ``staff_id`` and apply only a greater
    ``revision``; a ``suspended`` member keeps no course-team rights (the catalog drops their team places)."""

    event_type: ClassVar[str] = ""

    staff_id: int
    email: str
    name: str
    role: str = Field(description="owner | admin | author | viewer")
    status: str = Field(description="invited | active | suspended")
    revision: int = Field(description="monotonic per staff member")
    updated_at: datetime


class StaffInvited(StaffChanged):
    """A staff member was invited (gateway): the account exists, no password yet (status ``invited``)."""

    event_type: ClassVar[str] = "staff.invited"


class StaffUpdated(StaffChanged):
    """A staff member's role, status or name changed, or they accepted their invitation (gateway)."""

    event_type: ClassVar[str] = "staff.updated"


class AuditRecorded(EventModel):
    """A write through the admin API was recorded in the tenant's audit log (gateway)."""

    event_type: ClassVar[str] = "audit.recorded"

    audit_id: int
    actor: str = Field(description="operator | staff")
    staff_id: int | None = None
    actor_email: str | None = None
    method: str
    path: str = Field(description="the admin API path written to")
    status: int = Field(description="the answer's HTTP status")
    before_digest: str | None = Field(default=None, description="SHA-256 of the resource before, if it had one")
    after_digest: str | None = Field(default=None, description="SHA-256 of the resource after, if it has one")
    at: datetime
