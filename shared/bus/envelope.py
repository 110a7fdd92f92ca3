"""The CloudEvents 1.0 envelope (structured JSON mode) every event travels in (CONTRACT.md §7)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TYPE_PREFIX = "io.mobieus.learn."
TYPE_SUFFIX = ".v1"


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    # extensions
    tenant: str
    tenantid: int
    requestid: str | None = None

    @property
    def event_type(self) -> str:
        """``io.mobieus.learn.enrollment.completed.v1`` → ``enrollment.completed``."""
        return event_type_of(self.type)

    @property
    def routing_key(self) -> str:
        return f"{self.tenant}.{self.event_type}"

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> CloudEvent:
        return cls.model_validate(json.loads(body))


def type_of(event_type: str) -> str:
    return f"{TYPE_PREFIX}{event_type}{TYPE_SUFFIX}"


def event_type_of(type_: str) -> str:
    if not (type_.startswith(TYPE_PREFIX) and type_.endswith(TYPE_SUFFIX)):
        raise ValueError(f"not a mobieusLearn event type: {type_!r}")
    return type_[len(TYPE_PREFIX) : -len(TYPE_SUFFIX)]


def new_event(
    event_type: str,
    data: BaseModel | dict[str, Any],
    *,
    service: str,
    tenant: str,
    tenant_id: int,
    subject: str | None = None,
    request_id: str | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=f"/learn/{service}",
        type=type_of(event_type),
        time=datetime.now(UTC),
        subject=subject,
        data=payload,
        tenant=tenant,
        tenantid=tenant_id,
        requestid=request_id,
    )


@dataclass(frozen=True)
class Origin:
    """Who caused a change: the tenant (events are routed by its slug) and the request (or event) behind it.

    The one type for this in every service: built from the gateway's headers (:meth:`of_request`) for commands,
    and from the incoming CloudEvent (:meth:`of_event`) for event handlers, so a chain of events keeps the
    request id of the call that started it.
    """

    tenant_id: int
    tenant_slug: str
    request_id: str | None = None
    #: a per-course API key's courses (``shared.http.RequestContext.course_ids``); None: no course limit.
    #: ``shared.db.TenantScope.of(origin)`` turns it into query filters (ADR 0019). Events never carry it.
    course_ids: frozenset[int] | None = None

    @classmethod
    def of_request(cls, ctx: Any) -> Origin:
        """From a ``shared.http.RequestContext`` (anything with tenant_id, tenant_slug and request_id)."""
        return cls(ctx.tenant_id, ctx.tenant_slug, ctx.request_id, getattr(ctx, "course_ids", None))

    @classmethod
    def of_event(cls, event: CloudEvent) -> Origin:
        return cls(event.tenantid, event.tenant, event.requestid)


def build_event(origin: Origin, payload: BaseModel, *, service: str, subject: str | None = None,
                event_id: str | None = None) -> CloudEvent:
    """The one way to build an outgoing event: the payload model names its own type (``Model.event_type``)."""
    event_type = getattr(type(payload), "event_type", "")
    if not event_type:
        raise TypeError(f"{type(payload).__name__} is not an event payload (it has no event_type)")
    return new_event(event_type, payload, service=service, tenant=origin.tenant_slug, tenant_id=origin.tenant_id,
                     subject=subject, request_id=origin.request_id, event_id=event_id)
