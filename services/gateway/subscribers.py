"""Self-service AMQP credentials for a tenant's external subscribers (issue 19; docs/events.md).

``/admin/api/v1/tenants/{slug}/event-subscribers[/{name}[/rotate]]`` creates, lists, deletes and rotates RabbitMQ
users limited to one tenant, through the RabbitMQ management HTTP API (``LEARN_RABBITMQ_MANAGEMENT_URL``).

There is no table of subscribers in the gateway: RabbitMQ's user list is the only record. A subscriber of tenant
``acme`` named ``hr`` is the RabbitMQ user ``learn-sub.acme.hr`` (prefixed by ``LEARN_AMQP_NAMESPACE`` in tests)
tagged ``learn-subscriber``; the list is RabbitMQ's users filtered on that prefix. Its permissions on the vhost of
``LEARN_AMQP_URL``:

- configure and write ``^acme\\..*``: it may declare, bind and delete its own queues named ``acme.…`` only;
- read ``^(acme\\..*|learn\\.events)$``: it may consume its queues and bind them from ``learn.events``;
- topic permissions on ``learn.events``: read and write ``^acme\\.``: it may bind with its tenant's routing keys
  only (``acme.#``, ``acme.certificate.*``); ``#`` or ``globex.#`` is refused with ``ACCESS_REFUSED``.

The password is shown once, in the AMQP URL of the answer. Deleting or rotating closes the user's open
connections (a rotation is what one does after a leak). A tenant whose slug is the first segment of one of the
system's own exchange or queue names (``learn``, ``catalog``, ``webhooks`` ...) cannot have AMQP subscribers:
the ``<slug>.`` patterns would reach the system's own queues.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from services.gateway import handlers
from services.gateway.admin import ADMIN, refusals
from services.gateway.config import GatewaySettings
from shared.bus.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, QUEUES
from shared.db import Database
from shared.http import ApiError, dumps, ok, read_json, request_id_of
from shared.idempotency import store_instead
from shared.uow import UnitOfWork

log = structlog.get_logger("gateway")

TAG = "learn-subscriber"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: first segments of names the system itself uses on the broker, besides the topology's (the gateway's
#: per-replica revocation queues, RabbitMQ's own ``amq.*``)
SYSTEM_SEGMENTS = frozenset({"gateway", "amq", "learn"})
UNAVAILABLE = "amqp_subscribers_unavailable"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SubscriberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63, pattern=NAME_RE.pattern,
                      description="lowercase letters, digits and '-', unique in the tenant")


class Management:
    """The few calls of RabbitMQ's management HTTP API this module needs (one short-lived session per request)."""

    def __init__(self, url: str, timeout: float = 10.0):
        parsed = URL(url)
        self.headers = {"Authorization": aiohttp.encode_basic_auth(parsed.user or "guest", parsed.password or "")}
        self.base = str(parsed.with_user(None).with_password(None)).rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def call(self, method: str, path: str, body: Any = None, ok_missing: bool = False,
                   headers: dict[str, str] | None = None) -> Any:
        """``path`` is already quoted. A 404 answers None when ``ok_missing``; other failures are a 503."""
        try:
            async with aiohttp.ClientSession(headers=self.headers, timeout=self.timeout) as session, \
                    session.request(method, URL(self.base + "/api" + path, encoded=True), json=body,
                                    headers=headers) as resp:
                if resp.status == 404 and ok_missing:
                    return None
                if resp.status >= 300:
                    text = (await resp.text())[:300]
                    log.error("rabbitmq_management_refused", method=method, path=path, status=resp.status,
                              answer=text)
                    raise ApiError(503, "service_unavailable",
                                   f"The RabbitMQ management API answered {resp.status} to {method} {path}.")
                if resp.status == 204 or resp.content_length == 0:
                    return None
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.error("rabbitmq_management_unreachable", error=type(exc).__name__, base=self.base)
            raise ApiError(503, "service_unavailable",
                           "The RabbitMQ management API (LEARN_RABBITMQ_MANAGEMENT_URL) cannot be reached.") \
                from None


def _q(value: str) -> str:
    return quote(value, safe="")


class AdminSubscribers:
    """The routes; ``settings`` decide whether AMQP subscribers exist at all in this deployment."""

    def __init__(self, settings: GatewaySettings, db_of: Callable[[], Database]):
        self.settings = settings
        self._db_of = db_of
        common = settings.common
        self.namespace = common.amqp_namespace
        self.amqp_url = URL(common.amqp_url) if common.amqp_url else None
        self.management = Management(settings.rabbitmq_management_url) \
            if settings.rabbitmq_management_url else None
        self.vhost = "/"
        if self.amqp_url is not None and self.amqp_url.path not in ("", "/"):
            self.vhost = self.amqp_url.path[1:]  # yarl decodes %2F

    # --- rules ------------------------------------------------------------------------------------------

    def _available(self) -> Management:
        if self.amqp_url is None:
            raise ApiError(409, UNAVAILABLE,
                           "AMQP subscribers need RabbitMQ: this deployment runs the embedded in-process bus "
                           "(LEARN_AMQP_URL is not set). Use webhooks instead (webhook-endpoints, "
                           "docs/webhooks.md), or run the system with RabbitMQ.")
        if self.management is None:
            raise ApiError(409, UNAVAILABLE,
                           "AMQP subscribers are managed through RabbitMQ's management HTTP API, which this "
                           "gateway is not given: set LEARN_RABBITMQ_MANAGEMENT_URL (docs/operations.md).")
        return self.management

    def reserved_segments(self) -> set[str]:
        names = [self.namespace + EVENTS_EXCHANGE, self.namespace + DEAD_LETTER_EXCHANGE]
        for spec in QUEUES:
            names += [self.namespace + spec.name, self.namespace + spec.dead_letter_name]
        services = {spec.service for spec in QUEUES}  # reserved with or without a namespace
        return {name.split(".", 1)[0] for name in names} | services | SYSTEM_SEGMENTS

    def prefix(self, slug: str) -> str:
        return f"{self.namespace}learn-sub.{slug}."

    def exchange(self) -> str:
        return self.namespace + EVENTS_EXCHANGE

    def permissions(self, slug: str) -> tuple[dict[str, str], dict[str, str]]:
        own = rf"^{slug}\..*"  # a slug is [a-z0-9-]: nothing to escape
        exchange = re.escape(self.exchange())
        return ({"configure": own, "write": own, "read": rf"^({slug}\..*|{exchange})$"},
                {"exchange": self.exchange(), "write": rf"^{slug}\.", "read": rf"^{slug}\."})

    def url_for(self, username: str, password: str) -> str:
        base = URL(self.settings.rabbitmq_public_url) if self.settings.rabbitmq_public_url else self.amqp_url
        assert base is not None
        scheme = base.scheme or "amqp"
        port = f":{base.explicit_port}" if base.explicit_port else ""
        vhost = "/" + _q(self.vhost) if self.vhost != "/" else "/%2F"
        return f"{scheme}://{_q(username)}:{_q(password)}@{base.host}{port}{vhost}"

    def view(self, slug: str, user: dict[str, Any], connections: int | None = None) -> dict[str, Any]:
        username = user["name"]
        data: dict[str, Any] = {
            "name": username[len(self.prefix(slug)):], "tenant": slug, "username": username,
            "vhost": self.vhost, "exchange": self.exchange(), "queue_prefix": f"{slug}.",
            "binding_keys": f"{slug}.#",
        }
        if connections is not None:
            data["connections"] = connections
        return data

    async def _tenant_slug(self, request: web.Request) -> str:
        """The tenant (404 if unknown), then whether AMQP subscribers are possible for it."""
        tenant = await handlers.tenant(UnitOfWork(self._db_of()), request.match_info["slug"])
        self._available()
        if tenant.slug in self.reserved_segments():
            raise ApiError(409, UNAVAILABLE,
                           f"Tenant '{tenant.slug}' cannot have AMQP subscribers: its queue prefix "
                           f"'{tenant.slug}.' names the system's own exchanges or queues. Use webhooks.")
        return str(tenant.slug)

    async def _user(self, slug: str, name: str) -> dict[str, Any]:
        if not NAME_RE.match(name):
            raise ApiError.not_found("event_subscriber")
        user = await self._available().call("GET", f"/users/{_q(self.prefix(slug) + name)}", ok_missing=True)
        if user is None or TAG not in _tags(user):
            raise ApiError.not_found("event_subscriber")
        return dict(user)

    async def _connections(self, username: str) -> list[dict[str, Any]]:
        rows = await self._available().call("GET", "/connections?columns=name,user")
        return [c for c in rows or [] if c.get("user") == username]

    async def _close_connections(self, username: str, reason: str) -> None:
        """Close every open connection of the user (RabbitMQ's connection tracking: at once, not via statistics)."""
        await self._available().call("DELETE", f"/connections/username/{_q(username)}", ok_missing=True,
                                     headers={"X-Reason": reason})

    # --- routes -----------------------------------------------------------------------------------------

    @refusals
    async def create(self, request: web.Request) -> web.Response:
        slug = await self._tenant_slug(request)
        body = await read_json(request, SubscriberCreate)
        management = self._available()
        username = self.prefix(slug) + body.name
        if await management.call("GET", f"/users/{_q(username)}", ok_missing=True) is not None:
            raise ApiError(409, "event_subscriber_exists",
                           f"Event subscriber '{body.name}' exists already; rotate its password or delete it.")
        password = secrets.token_urlsafe(24)
        permissions, topic = self.permissions(slug)
        # A new user has no permission at all. The topic permissions go first: a user with vhost permissions but
        # none on topics would be allowed every routing key. If a call fails the user is removed again (nobody has
        # its password yet).
        await management.call("PUT", f"/users/{_q(username)}", {"password": password, "tags": TAG})
        try:
            await management.call("PUT", f"/topic-permissions/{_q(self.vhost)}/{_q(username)}", topic)
            await management.call("PUT", f"/permissions/{_q(self.vhost)}/{_q(username)}", permissions)
        except ApiError:
            await management.call("DELETE", f"/users/{_q(username)}", ok_missing=True)
            raise
        log.info("event_subscriber_created", tenant=slug, username=username, request_id=request_id_of(request))
        view = self.view(slug, {"name": username})
        # An Idempotency-Key replay answers without the password: it is shown once (rotate if it was lost).
        store_instead(request, dumps({"data": view, "next_cursor": None, "request_id": request_id_of(request)})
                      .encode())
        view["amqp_url"] = self.url_for(username, password)
        return ok(request, view, status=201)

    @refusals
    async def list_all(self, request: web.Request) -> web.Response:
        slug = await self._tenant_slug(request)
        users = await self._available().call("GET", "/users") or []
        prefix = self.prefix(slug)
        mine = sorted((u for u in users if u["name"].startswith(prefix) and TAG in _tags(u)),
                      key=lambda u: u["name"])
        return ok(request, [self.view(slug, u) for u in mine])

    @refusals
    async def get(self, request: web.Request) -> web.Response:
        slug = await self._tenant_slug(request)
        user = await self._user(slug, request.match_info["name"])
        return ok(request, self.view(slug, user, len(await self._connections(user["name"]))))

    @refusals
    async def delete(self, request: web.Request) -> web.Response:
        slug = await self._tenant_slug(request)
        user = await self._user(slug, request.match_info["name"])
        username = user["name"]
        await self._available().call("DELETE", f"/users/{_q(username)}", ok_missing=True)
        # after the delete: a connection opened meanwhile is closed too, and none can open any more
        await self._close_connections(username, "event subscriber deleted")
        log.info("event_subscriber_deleted", tenant=slug, username=username, request_id=request_id_of(request))
        return ok(request, {**self.view(slug, user), "deleted": True})

    @refusals
    async def rotate(self, request: web.Request) -> web.Response:
        slug = await self._tenant_slug(request)
        user = await self._user(slug, request.match_info["name"])
        username = user["name"]
        password = secrets.token_urlsafe(24)
        await self._available().call("PUT", f"/users/{_q(username)}", {"password": password, "tags": TAG})
        await self._close_connections(username, "event subscriber password rotated")
        log.info("event_subscriber_rotated", tenant=slug, username=username, request_id=request_id_of(request))
        view = self.view(slug, user)
        store_instead(request, dumps({"data": view, "next_cursor": None, "request_id": request_id_of(request)})
                      .encode())
        view["amqp_url"] = self.url_for(username, password)
        return ok(request, view)

    def routes(self) -> list[tuple[str, str, Handler]]:
        base = f"{ADMIN}/tenants/{{slug}}/event-subscribers"
        return [
            ("POST", base, self.create),
            ("GET", base, self.list_all),
            ("GET", base + "/{name}", self.get),
            ("DELETE", base + "/{name}", self.delete),
            ("POST", base + "/{name}/rotate", self.rotate),
        ]


def _tags(user: dict[str, Any]) -> list[str]:
    tags = user.get("tags") or []
    if isinstance(tags, str):  # RabbitMQ before 3.9 answers a comma-separated string
        tags = tags.split(",")
    return [t.strip() for t in tags]


def subscriber_routes(settings: GatewaySettings, db_of: Callable[[], Database]) -> list[tuple[str, str, Handler]]:
    """The routes to register beside the admin API's own (``app.py``)."""
    return AdminSubscribers(settings, db_of).routes()
