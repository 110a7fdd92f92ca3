"""The directory's events (CONTRACT §7): each built by :func:`shared.bus.envelope.build_event`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.bus.envelope import CloudEvent, Origin, build_event
from shared.events.directory import (
    ApiKeyRevoked,
    AuditRecorded,
    StaffInvited,
    StaffUpdated,
    TenantUpdated,
    UserUpserted,
)

SERVICE = "gateway"


def tenant_updated(origin: Origin, tenant: Any, updated_at: datetime) -> CloudEvent:
    return build_event(origin, TenantUpdated(status=tenant.status, updated_at=updated_at), service=SERVICE,
                       subject=f"tenant/{tenant.id}")


def api_key_revoked(origin: Origin, key: Any, revoked_at: datetime) -> CloudEvent:
    return build_event(origin, ApiKeyRevoked(key_id=key.id, prefix=key.prefix, revoked_at=revoked_at),
                       service=SERVICE, subject=f"api_key/{key.id}")


def user_upserted(origin: Origin, user: Any, updated_at: datetime) -> CloudEvent:
    payload = UserUpserted(user_id=user.user_id, name=user.name, email=user.email, revision=user.revision,
                           updated_at=updated_at)
    return build_event(origin, payload, service=SERVICE, subject=f"user/{user.user_id}")


def staff_changed(origin: Origin, member: Any, *, invited: bool = False) -> CloudEvent:
    model = StaffInvited if invited else StaffUpdated
    payload = model(staff_id=member.id, email=member.email, name=member.name, role=member.role,
                    status=member.status, revision=member.revision, updated_at=member.updated_at)
    return build_event(origin, payload, service=SERVICE, subject=f"staff/{member.id}")


def audit_recorded(origin: Origin, row: Any) -> CloudEvent:
    payload = AuditRecorded(audit_id=row.id, actor=row.actor, staff_id=row.staff_id, actor_email=row.actor_email,
                            method=row.method, path=row.path, status=row.status, before_digest=row.before_digest,
                            after_digest=row.after_digest, at=row.at)
    return build_event(origin, payload, service=SERVICE, subject=f"audit/{row.id}")
