"""Tenant staff, the audit log, and course teams (admin API: staff, audit-log, courses/{id}/team; ADR 0021)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.gateway.domain import STAFF_ROLES, TEAM_ROLES
from services.gateway.ui import forms
from services.gateway.ui.client import AdminApiError
from services.gateway.ui.pages_courses import course_page, refusal
from services.gateway.ui.views import Problem, Ui, View

ROLE_HELP = {
    "owner": "Everything in the tenant, including API keys and the staff.",
    "admin": "Everything but the staff.",
    "author": "Edits only the courses whose team they are on.",
    "viewer": "Reads everything, changes nothing.",
}


async def staff_page(view: View, *, problem: Problem | None = None, status: int = 200,
                     link: dict[str, Any] | None = None, linked: dict[str, Any] | None = None) -> web.StreamResponse:
    reply = await view.api.get(view.tenant_api_path("staff"),
                               {"limit": 100, "cursor": view.request.query.get("cursor")})
    return view.render("staff.html", status=status, problem=problem, members=reply.data,
                       next_cursor=reply.next_cursor, roles=STAFF_ROLES, role_help=ROLE_HELP,
                       role_options=[(r, r.title()) for r in STAFF_ROLES], link=link, linked=linked,
                       can_manage=view.role in (None, "owner"))


async def staff_index(view: View) -> web.StreamResponse:
    return await staff_page(view)


async def invite(view: View) -> web.StreamResponse:
    form = await view.form()
    shown = {"email": form.get("email", ""), "name": form.get("name", ""), "role": form.get("role", "")}
    try:
        body = {"email": forms.required(form, "email", "Email"), "name": forms.required(form, "name", "Name"),
                "role": forms.required(form, "role", "Role")}
        member = (await view.api.post(view.tenant_api_path("staff"), body)).data
    except (forms.FormError, AdminApiError) as exc:
        return await staff_page(view, problem=Problem("invite", refusal(exc), shown), status=400)
    invitation = member["invitation"]
    if invitation.get("mailed"):
        return view.done(view.url("/admin/staff"), f"{member['email']} is invited: the link is on its way by mail.")
    # No mail: the link is shown here, once (never stored in the session or a URL of ours).
    return await staff_page(view, link=invitation, linked=member)


async def update(view: View) -> web.StreamResponse:
    staff_id = view.path_id()
    form = await view.form()
    body = {k: form[k] for k in ("role", "status") if form.get(k)}
    try:
        member = (await view.api.post(view.tenant_api_path(f"staff/{staff_id}"), body)).data
    except AdminApiError as exc:
        return await staff_page(view, problem=Problem(f"member-{staff_id}", refusal(exc)), status=400)
    return view.done(view.url("/admin/staff") + f"#member-{staff_id}",
                     f"{member['email']}: {member['role']}, {member['status']}.")


async def reset(view: View) -> web.StreamResponse:
    staff_id = view.path_id()
    try:
        member = (await view.api.post(view.tenant_api_path(f"staff/{staff_id}/reset-password"))).data
    except AdminApiError as exc:
        return await staff_page(view, problem=Problem(f"member-{staff_id}", refusal(exc)), status=400)
    if member["link"].get("mailed"):
        return view.done(view.url("/admin/staff"), f"A new link is on its way to {member['email']}.")
    return await staff_page(view, link=member["link"], linked=member)


async def audit_index(view: View) -> web.StreamResponse:
    reply = await view.api.get(view.tenant_api_path("audit-log"),
                               {"limit": 100, "cursor": view.request.query.get("cursor")})
    return view.render("audit.html", entries=reply.data, next_cursor=reply.next_cursor)


# --- the course's team (on the course page) ----------------------------------------------------------------


async def put_member(view: View) -> web.StreamResponse:
    course_id = view.path_id("cid")
    form = await view.form()
    try:
        staff_id = forms.required(form, "staff_id", "Staff member")
        role = form.get("role") or "editor"
        if role not in TEAM_ROLES:
            raise forms.FormError("Choose lead or editor.")
        await view.api.put(view.tenant_api_path(f"courses/{course_id}/team/{int(staff_id)}"), {"role": role})
    except (forms.FormError, AdminApiError, ValueError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else refusal(exc)
        return await course_page(view, course_id, problem=Problem("team", message), status=400)
    return view.done(view.url(f"/admin/learn/courses/{course_id}") + "#team", "The team is saved.")


async def remove_member(view: View) -> web.StreamResponse:
    course_id = view.path_id("cid")
    staff_id = view.path_id("sid")
    try:
        await view.api.delete(view.tenant_api_path(f"courses/{course_id}/team/{staff_id}"))
    except AdminApiError as exc:
        return await course_page(view, course_id, problem=Problem("team", refusal(exc)), status=400)
    return view.done(view.url(f"/admin/learn/courses/{course_id}") + "#team", "Removed from the team.")


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    router.add_get("/admin/staff", ui.page(staff_index, tenant=True))
    router.add_post("/admin/staff", ui.page(invite, tenant=True))
    router.add_post("/admin/staff/{id:[0-9]+}", ui.page(update, tenant=True))
    router.add_post("/admin/staff/{id:[0-9]+}/reset", ui.page(reset, tenant=True))
    router.add_get("/admin/audit", ui.page(audit_index, tenant=True))
    router.add_post("/admin/learn/courses/{cid:[0-9]+}/team", ui.page(put_member, tenant=True))
    router.add_post("/admin/learn/courses/{cid:[0-9]+}/team/{sid:[0-9]+}/remove", ui.page(remove_member, tenant=True))
