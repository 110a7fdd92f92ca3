"""Webhooks: a tenant's endpoints, and per endpoint its delivery log (every message with every attempt: time,
status, latency, the first bytes of the answer), replay, secret rotation and a test message (admin API:
webhooks, docs/webhooks.md)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from services.gateway.ui import forms
from services.gateway.ui.client import AdminApiError
from services.gateway.ui.pages_courses import refusal
from services.gateway.ui.views import Problem, Ui, View

log = structlog.get_logger("gateway.ui")

BASE = "/admin/learn/webhooks"
MESSAGE_STATUSES = ("pending", "delivered", "failed")


def _event_types(raw: str | None) -> list[str]:
    """``certificate.*, enrollment.completed`` (commas, spaces or lines) as a list; empty: every event."""
    return [t for t in (raw or "").replace(",", " ").split() if t]


async def endpoints_page(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    reply = await view.api.get(view.tenant_api_path("webhook-endpoints"),
                               {"limit": 50, "cursor": view.request.query.get("cursor")})
    return view.render("webhooks.html", status=status, problem=problem, endpoints=reply.data,
                       next_cursor=reply.next_cursor)


async def endpoints_index(view: View) -> web.StreamResponse:
    return await endpoints_page(view)


async def create_endpoint(view: View) -> web.StreamResponse:
    form = await view.form()
    shown = {k: form.get(k, "") for k in ("url", "description", "event_types")}
    try:
        body = {"url": forms.required(form, "url", "URL"), "description": (form.get("description") or "").strip(),
                "event_types": _event_types(form.get("event_types"))}
        endpoint = (await view.api.post(view.tenant_api_path("webhook-endpoints"), body)).data
    except (forms.FormError, AdminApiError) as exc:
        return await endpoints_page(view, problem=Problem("new-endpoint", refusal(exc), shown), status=400)
    log.info("admin_ui_webhook_endpoint_created", tenant=view.slug, endpoint_id=endpoint["id"])
    # The signing secret is shown once, in this answer only: never in the session, never in a URL.
    return view.render("webhook_secret.html", endpoint=endpoint, created=True)


async def endpoint_page(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    endpoint_id = view.path_id()
    path = view.tenant_api_path(f"webhook-endpoints/{endpoint_id}")
    endpoint = (await view.api.get(path)).data
    wanted = view.request.query.get("status")
    params: dict[str, Any] = {"limit": 25, "cursor": view.request.query.get("cursor"),
                              "status": wanted if wanted in MESSAGE_STATUSES else None}
    messages = await view.api.get(path + "/messages", params)
    return view.render("webhook.html", status=status, problem=problem, endpoint=endpoint, messages=messages.data,
                       next_cursor=messages.next_cursor, wanted=params["status"] or "",
                       statuses=MESSAGE_STATUSES, switch_path=BASE)


async def endpoint_index(view: View) -> web.StreamResponse:
    return await endpoint_page(view)


async def update_endpoint(view: View) -> web.StreamResponse:
    endpoint_id = view.path_id()
    form = await view.form()
    shown = {k: form.get(k, "") for k in ("url", "description", "event_types", "status")}
    try:
        body: dict[str, Any] = {"url": forms.required(form, "url", "URL"),
                                "description": (form.get("description") or "").strip(),
                                "event_types": _event_types(form.get("event_types"))}
        if form.get("status") in ("enabled", "disabled"):
            body["status"] = form["status"]
        await view.api.post(view.tenant_api_path(f"webhook-endpoints/{endpoint_id}"), body)
    except (forms.FormError, AdminApiError) as exc:
        return await endpoint_page(view, problem=Problem("endpoint", refusal(exc), shown), status=400)
    return view.done(view.url(f"{BASE}/{endpoint_id}"), "Endpoint saved.")


async def rotate_secret(view: View) -> web.StreamResponse:
    endpoint_id = view.path_id()
    endpoint = (await view.api.post(view.tenant_api_path(f"webhook-endpoints/{endpoint_id}/rotate-secret"))).data
    log.info("admin_ui_webhook_secret_rotated", tenant=view.slug, endpoint_id=endpoint_id)
    return view.render("webhook_secret.html", endpoint=endpoint, created=False)


async def send_test(view: View) -> web.StreamResponse:
    endpoint_id = view.path_id()
    message = (await view.api.post(view.tenant_api_path(f"webhook-endpoints/{endpoint_id}/test"))).data
    return view.done(view.url(f"{BASE}/{endpoint_id}") + f"#message-{message['id']}",
                     f"A webhook.test message ({message['webhook_id']}) is on its way; reload to see its attempts.")


async def replay_message(view: View) -> web.StreamResponse:
    endpoint_id, message_id = view.path_id(), view.path_id("mid")
    message = (await view.api.post(
        view.tenant_api_path(f"webhook-endpoints/{endpoint_id}/messages/{message_id}/replay"))).data
    return view.done(view.url(f"{BASE}/{endpoint_id}") + f"#message-{message_id}",
                     f"Message {message['webhook_id']} ({message['event_type']}) will be delivered again, "
                     "with the same webhook-id.")


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    router.add_get(BASE, ui.page(endpoints_index, tenant=True))
    router.add_post(BASE, ui.page(create_endpoint, tenant=True))
    router.add_get(BASE + "/{id:[0-9]+}", ui.page(endpoint_index, tenant=True))
    router.add_post(BASE + "/{id:[0-9]+}", ui.page(update_endpoint, tenant=True))
    router.add_post(BASE + "/{id:[0-9]+}/rotate-secret", ui.page(rotate_secret, tenant=True))
    router.add_post(BASE + "/{id:[0-9]+}/test", ui.page(send_test, tenant=True))
    router.add_post(BASE + "/{id:[0-9]+}/messages/{mid:[0-9]+}/replay", ui.page(replay_message, tenant=True))
