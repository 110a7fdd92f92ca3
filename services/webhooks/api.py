"""The admin API of webhook endpoints (HTTP only): ``/admin/v1/webhook-endpoints...``, reached through the gateway
as ``/admin/api/v1/tenants/{slug}/webhook-endpoints...`` with the forwarded scope ``admin``.

Each view parses the request, calls one handler and renders the result; domain errors become the error envelope
through :data:`ERRORS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.webhooks import domain, handlers
from services.webhooks.handlers import EndpointChanges, NewEndpoint
from shared.bus.envelope import Origin
from shared.db import as_utc
from shared.domain_errors import Answer, ErrorTable
from shared.http import ApiError, admin_only, context_of, next_cursor, ok, page_request, path_id, read_json
from shared.service import CURSOR_KEY, DB_KEY, SETTINGS_KEY
from shared.uow import UnitOfWork

ADMIN = "/admin/v1/webhook-endpoints"
MESSAGE_STATUSES = ("pending", "delivered", "failed")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: domain error -> answer (shared/domain_errors.py); the message is the exception's
ERRORS: ErrorTable = {
    domain.EndpointNotFound: Answer(404, "webhook_endpoint_not_found"),
    domain.MessageNotFound: Answer(404, "webhook_message_not_found"),
    domain.UnsafeDestination: Answer(400, "invalid_argument"),
    domain.InvalidEndpoint: Answer(400, "invalid_argument"),
}


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(default_factory=list, description="exact types or families ('enrollment.*')")
    status: str = "enabled"


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = None
    status: str | None = None


class ReplaySince(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime


#: every route here is the admin API's: the shared admin scope guard
admin_view = admin_only


def _uow(request: web.Request) -> UnitOfWork:
    return UnitOfWork(request.app[DB_KEY], deps=handlers.Deps(request.app[SETTINGS_KEY]))  # type: ignore[arg-type]


def _origin(request: web.Request) -> Origin:
    return Origin.of_request(context_of(request))


def _ts(value: datetime | None) -> datetime | None:
    return as_utc(value)


def endpoint_view(row: Any, secret: str | None = None) -> dict[str, Any]:
    view = {
        "id": row.id, "url": row.url, "description": row.description, "event_types": list(row.event_types),
        "status": row.status, "disabled_reason": row.disabled_reason, "failing_since": _ts(row.failing_since),
        "previous_secret_expires_at": _ts(row.previous_secret_until) if row.previous_secret else None,
        "created_at": _ts(row.created_at), "updated_at": _ts(row.updated_at),
    }
    if secret is not None:
        view["secret"] = secret
    return view


def attempt_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "attempted_at": _ts(row.attempted_at), "status_code": row.status_code,
            "error": row.error, "latency_ms": row.latency_ms, "response": row.response}


def message_view(row: Any, tries: list[Any] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id, "webhook_id": row.webhook_id, "event_type": row.event_type, "status": row.status,
        "attempts": row.attempts, "failures": row.failures, "next_attempt_at": _ts(row.next_attempt_at),
        "created_at": _ts(row.created_at), "last_attempt_at": _ts(row.last_attempt_at),
        "delivered_at": _ts(row.delivered_at),
    }
    if tries is not None:
        view["attempt_log"] = [attempt_view(t) for t in tries]
    return view


# --- endpoints ----------------------------------------------------------------------------------------------


async def create_endpoint(request: web.Request) -> web.Response:
    body = await read_json(request, EndpointCreate)
    row, secret = await handlers.create_endpoint(_uow(request), _origin(request), NewEndpoint(**body.model_dump()))
    return ok(request, endpoint_view(row, secret), status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    ctx = context_of(request)
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "webhook_endpoints", ctx.tenant_id, {})
    rows = await handlers.list_endpoints(_uow(request), _origin(request), page.limit, page.after_id)
    cursor = next_cursor(codec, rows, page, "webhook_endpoints", ctx.tenant_id, {}, id_of=lambda r: r.id)
    return ok(request, [endpoint_view(r) for r in rows], cursor)


async def get_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    return ok(request, endpoint_view(await handlers.get_endpoint(_uow(request), _origin(request), endpoint_id)))


async def update_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    body = await read_json(request, EndpointUpdate)
    row = await handlers.update_endpoint(_uow(request), _origin(request), endpoint_id,
                                         EndpointChanges(**body.model_dump()))
    return ok(request, endpoint_view(row))


async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    await handlers.delete_endpoint(_uow(request), _origin(request), endpoint_id)
    return ok(request, {"id": endpoint_id, "deleted": True})


async def rotate_secret(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    row, secret = await handlers.rotate_secret(_uow(request), _origin(request), endpoint_id)
    return ok(request, endpoint_view(row, secret))


async def send_test(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    row = await handlers.send_test(_uow(request), _origin(request), endpoint_id)
    return ok(request, message_view(row), status=202)


# --- messages and the delivery log --------------------------------------------------------------------------


async def list_messages(request: web.Request) -> web.Response:
    ctx = context_of(request)
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    status = request.query.get("status")
    if status is not None and status not in MESSAGE_STATUSES:
        raise ApiError.invalid(f"'status' must be one of {', '.join(MESSAGE_STATUSES)}.")
    filters = {"endpoint": endpoint_id, "status": status}
    codec = request.app[CURSOR_KEY]
    page = page_request(request, codec, "webhook_messages", ctx.tenant_id, filters)
    rows, tries = await handlers.list_messages(_uow(request), _origin(request), endpoint_id, page.limit,
                                               page.after_id, status)
    cursor = next_cursor(codec, rows, page, "webhook_messages", ctx.tenant_id, filters, id_of=lambda r: r.id)
    return ok(request, [message_view(r, tries[r.id]) for r in rows], cursor)


async def get_message(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    message_id = path_id(request, "mid", "webhook_message")
    row, tries = await handlers.get_message(_uow(request), _origin(request), endpoint_id, message_id)
    view = message_view(row, tries)
    view["body"] = row.body
    return ok(request, view)


async def replay_message(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    message_id = path_id(request, "mid", "webhook_message")
    row = await handlers.replay_message(_uow(request), _origin(request), endpoint_id, message_id)
    return ok(request, message_view(row), status=202)


async def replay_since(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "id", "webhook_endpoint")
    body = await read_json(request, ReplaySince)
    since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
    count = await handlers.replay_since(_uow(request), _origin(request), endpoint_id, since)
    return ok(request, {"replayed": count}, status=202)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(ADMIN, admin_view(list_endpoints))
    r.add_post(ADMIN, admin_view(create_endpoint))
    r.add_get(ADMIN + "/{id}", admin_view(get_endpoint))
    r.add_post(ADMIN + "/{id}", admin_view(update_endpoint))
    r.add_patch(ADMIN + "/{id}", admin_view(update_endpoint))
    r.add_delete(ADMIN + "/{id}", admin_view(delete_endpoint))
    r.add_post(ADMIN + "/{id}/rotate-secret", admin_view(rotate_secret))
    r.add_post(ADMIN + "/{id}/test", admin_view(send_test))
    r.add_post(ADMIN + "/{id}/replay", admin_view(replay_since))
    r.add_get(ADMIN + "/{id}/messages", admin_view(list_messages))
    r.add_get(ADMIN + "/{id}/messages/{mid}", admin_view(get_message))
    r.add_post(ADMIN + "/{id}/messages/{mid}/replay", admin_view(replay_message))
