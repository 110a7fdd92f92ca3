"""Cohorts: create one with its courses, and change its name and courses (admin API: enrollment)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.gateway.ui import forms
from services.gateway.ui.client import AdminApiError
from services.gateway.ui.pages_courses import refusal
from services.gateway.ui.views import Problem, Ui, View
from shared.http import positive_int


async def _courses(view: View) -> list[dict[str, Any]]:
    return await view.api.all_pages(view.tenant_api_path("courses"), most=1000)


def _chosen(form: Any) -> list[int]:
    ids = [i for i in (positive_int(v) for v in form.getall("course_ids", [])) if i is not None]
    if not ids:
        raise forms.FormError("Tick at least one course.")
    return list(dict.fromkeys(ids))


async def cohorts_page(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    reply = await view.api.get(view.tenant_api_path("cohorts"),
                               {"limit": 50, "cursor": view.request.query.get("cursor")})
    courses = await _courses(view)
    return view.render("cohorts.html", status=status, problem=problem, cohorts=reply.data,
                       next_cursor=reply.next_cursor, courses=courses,
                       titles={c["id"]: c["title"] for c in courses})


async def cohorts_index(view: View) -> web.StreamResponse:
    return await cohorts_page(view)


async def create_cohort(view: View) -> web.StreamResponse:
    form = await view.form()
    shown = {"name": form.get("name", ""), "course_ids": form.getall("course_ids", [])}
    try:
        body = {"name": forms.required(form, "name", "Name"), "course_ids": _chosen(form)}
        cohort = (await view.api.post(view.tenant_api_path("cohorts"), body)).data
    except (forms.FormError, AdminApiError) as exc:
        return await cohorts_page(view, problem=Problem("new-cohort", refusal(exc), shown), status=400)
    return view.done(view.url("/admin/learn/cohorts") + f"#cohort-{cohort['id']}",
                     f"Cohort “{cohort['name']}” created with {len(cohort['course_ids'])} course(s).")


async def cohort_page(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    cohort = (await view.api.get(view.tenant_api_path(f"cohorts/{view.path_id()}"))).data
    return view.render("cohort.html", status=status, problem=problem, cohort=cohort, courses=await _courses(view),
                       switch_path="/admin/learn/cohorts")


async def cohort_index(view: View) -> web.StreamResponse:
    return await cohort_page(view)


async def update_cohort(view: View) -> web.StreamResponse:
    cohort_id = view.path_id()
    form = await view.form()
    shown = {"name": form.get("name", ""), "course_ids": form.getall("course_ids", [])}
    try:
        body = {"name": forms.required(form, "name", "Name"), "course_ids": _chosen(form)}
        cohort = (await view.api.post(view.tenant_api_path(f"cohorts/{cohort_id}"), body)).data
    except (forms.FormError, AdminApiError) as exc:
        return await cohort_page(view, problem=Problem("cohort", refusal(exc), shown), status=400)
    return view.done(view.url(f"/admin/learn/cohorts/{cohort_id}"),
                     f"Cohort “{cohort['name']}” saved: {len(cohort['course_ids'])} course(s).")


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    base = "/admin/learn/cohorts"
    router.add_get(base, ui.page(cohorts_index, tenant=True))
    router.add_post(base, ui.page(create_cohort, tenant=True))
    router.add_get(base + "/{id:[0-9]+}", ui.page(cohort_index, tenant=True))
    router.add_post(base + "/{id:[0-9]+}", ui.page(update_cohort, tenant=True))
