"""Courses: the list, a course's fields and lifecycle, and its modules, lessons and activities (admin API: catalog).

A refused write re-renders the page with the API's message beside the form that failed and what was typed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.gateway.ui import forms
from services.gateway.ui.client import AdminApiError
from services.gateway.ui.views import Problem, Ui, View
from shared.http import positive_int

COMPLETION_RULES = [("all_required", "All required activities"), ("all_activities", "Every activity"),
                    ("any_activity", "Any one activity")]
ACTIVITY_KINDS = [("scorm", "SCORM"), ("reading", "Reading"), ("video", "Video"), ("link", "Link"),
                  ("assessment", "Assessment")]
LEVELS = {"modules": "module", "lessons": "lesson", "activities": "activity"}
ACTIONS = {"publish": "published", "unpublish": "unpublished (back to draft)", "archive": "archived"}


def refusal(exc: Exception) -> str:
    """The message to show beside a form for an operator's mistake; outages and bugs go to the error page."""
    if isinstance(exc, forms.FormError):
        return str(exc)
    if isinstance(exc, AdminApiError) and 400 <= exc.status < 500 and not exc.no_such_route:
        return exc.message
    raise exc



# --- the list ---------------------------------------------------------------------------------------------


async def courses_page(view: View, *, problem: Problem | None = None, status: int = 200) -> web.StreamResponse:
    reply = await view.api.get(view.tenant_api_path("courses"),
                               {"limit": 50, "cursor": view.request.query.get("cursor")})
    return view.render("courses.html", status=status, problem=problem, courses=reply.data,
                       next_cursor=reply.next_cursor)


async def courses_index(view: View) -> web.StreamResponse:
    return await courses_page(view)


async def create_course(view: View) -> web.StreamResponse:
    form = await view.form()
    try:
        body = {"title": forms.required(form, "title", "Title"), "slug": forms.required(form, "slug", "Slug")}
        course = (await view.api.post(view.tenant_api_path("courses"), body)).data
    except (forms.FormError, AdminApiError) as exc:
        return await courses_page(view, problem=Problem("new-course", refusal(exc), dict(form)), status=400)
    return view.done(view.url(f"/admin/learn/courses/{course['id']}"),
                     f"Course “{course['title']}” created. Add its modules, lessons and activities below.")


# --- one course -------------------------------------------------------------------------------------------


async def course_page(view: View, course_id: int, *, problem: Problem | None = None,
                      status: int = 200) -> web.StreamResponse:
    course = (await view.api.get(view.tenant_api_path(f"courses/{course_id}"))).data
    packages = await view.api.all_pages(view.tenant_api_path("scorm-scos"), most=500)
    try:
        templates = await view.api.all_pages(view.tenant_api_path("cert-templates"), most=500)
    except AdminApiError:
        templates = None  # the certificates service is away: the field falls back to a number
    sco_titles = {f"{p['id']}|{s['identifier']}": f"{p['title']} › {s['title']}" for p in packages for s in p["scos"]}
    sco_titles.update({f"{p['id']}|": f"{p['title']} › its first SCO" for p in packages if p["scos"]})
    launched = launched_items(packages, await _other_packages(view, course, {p["id"] for p in packages}))
    template_options = [("", "The tenant's default")] + [(str(t["id"]), t["name"]) for t in templates or []]
    counts = {"modules": len(course["modules"]),
              "lessons": sum(len(m["lessons"]) for m in course["modules"]),
              "activities": sum(len(le["activities"]) for m in course["modules"] for le in m["lessons"])}
    team = (await view.api.get(view.tenant_api_path(f"courses/{course_id}/team"))).data
    staff = await view.api.all_pages(view.tenant_api_path("staff"), most=500)
    on_team = {t["staff_id"] for t in team}
    candidates = [s for s in staff if s["id"] not in on_team and s["status"] != "suspended"]
    return view.render("course.html", status=status, problem=problem, course=course, packages=packages, team=team,
                       candidates=bool(candidates),
                       candidate_options=[(str(s["id"]), f"{s['name']} <{s['email']}> ({s['role']})")
                                          for s in candidates],
                       can_edit_team=view.role in (None, "owner", "admin"),
                       templates=templates, template_options=template_options, sco_titles=sco_titles, counts=counts,
                       sco_launched=launched,
                       completion_rules=COMPLETION_RULES, activity_kinds=ACTIVITY_KINDS,
                       editable=course["status"] == "draft", switch_path="/admin/learn/courses")


async def course_index(view: View) -> web.StreamResponse:
    return await course_page(view, view.path_id("cid"))


def _course_fields(form: Any) -> dict[str, Any]:
    """Every course field of the details form (blank optional fields clear)."""
    template = forms.text(form, "certificate_template_id")
    return {
        "title": forms.required(form, "title", "Title"),
        "slug": forms.required(form, "slug", "Slug"),
        "subtitle": forms.text(form, "subtitle"),
        "summary": forms.text(form, "summary"),
        "language": forms.text(form, "language") or "en",
        "completion_rule": forms.required(form, "completion_rule", "Completion rule"),
        "estimated_minutes": forms.integer(form, "estimated_minutes", "Estimated minutes", minimum=0),
        "credit_hours": forms.number(form, "credit_hours", "Credit hours"),
        "credit_kind": forms.text(form, "credit_kind"),
        "credit_expires_after_months": forms.integer(form, "credit_expires_after_months",
                                                     "Credit expires after (months)", minimum=1),
        "certificate_template_id": positive_int(template),
    }


def _current_fields(course: dict[str, Any]) -> dict[str, Any]:
    credit = course["credit"]
    return {**{k: course[k] for k in ("title", "slug", "subtitle", "summary", "language", "completion_rule",
                                      "estimated_minutes", "certificate_template_id")},
            "credit_hours": credit["hours"], "credit_kind": credit["kind"],
            "credit_expires_after_months": credit["expires_after_months"]}


async def update_course(view: View) -> web.StreamResponse:
    course_id = view.path_id("cid")
    form = await view.form()
    path = view.tenant_api_path(f"courses/{course_id}")
    try:
        current = (await view.api.get(path)).data
        changes = forms.changed(_current_fields(current), _course_fields(form))
        if changes:
            await view.api.post(path, changes)
    except (forms.FormError, AdminApiError) as exc:
        return await course_page(view, course_id, problem=Problem("details", refusal(exc), dict(form)),
                                 status=400)
    message = "Course details saved." if changes else "Nothing changed."
    return view.done(view.url(f"/admin/learn/courses/{course_id}") + "#details", message)


async def transition(view: View) -> web.StreamResponse:
    course_id = view.path_id("cid")
    action = view.request.match_info["action"]
    try:
        course = (await view.api.post(view.tenant_api_path(f"courses/{course_id}/{action}"))).data
    except AdminApiError as exc:
        return await course_page(view, course_id, problem=Problem("lifecycle", refusal(exc)), status=400)
    suffix = f" (version {course['version']['number']})" if action == "publish" else ""
    return view.done(view.url(f"/admin/learn/courses/{course_id}"),
                     f"“{course['title']}” is {ACTIONS[action]}{suffix}.")


#: at most this many packages the catalog does not list as ready are looked up for one course page
OTHER_PACKAGES = 20


async def _other_packages(view: View, course: dict[str, Any], ready: set[int]) -> dict[int, dict[str, Any]]:
    """The packages the course's scorm activities name that are not ready (archived, failed, still importing), as
    the SCORM service has them, so the page can say why; a package it cannot show is left out."""
    named = sorted({a["scorm_package_id"] for m in course["modules"] for le in m["lessons"] for a in le["activities"]
                    if a["kind"] == "scorm" and a["scorm_package_id"] is not None} - ready)
    found: dict[int, dict[str, Any]] = {}
    for package_id in named[:OTHER_PACKAGES]:
        try:
            found[package_id] = (await view.api.get(view.tenant_api_path(f"scorm-packages/{package_id}"))).data
        except AdminApiError:
            continue
    return found


def launched_items(packages: list[dict[str, Any]], others: dict[int, dict[str, Any]] | None = None) -> Any:
    """For the course page: what a scorm activity launches (its title) and whether that item tracks progress
    (``tracked``), is an asset (``untracked``), or is not known among the ready packages (``unknown``; ``others``:
    the packages that are not ready, to say why)."""
    by_package = {p["id"]: p for p in packages}

    def launched(activity: dict[str, Any]) -> dict[str, str]:
        package = by_package.get(activity["scorm_package_id"])
        wanted = activity["sco_identifier"]
        if package is None:
            other = (others or {}).get(activity["scorm_package_id"])
            if other is None:
                why, name = "not ready", f"package {activity['scorm_package_id']}"
            else:
                name = other["title"]
                why = ("archived: point the activity at another package" if other.get("archived_at")
                       else str(other["status"]).replace("_", " "))
            return {"label": "SCO", "tracking": "unknown", "title": f"{name} › {wanted or 'its first SCO'} ({why})"}
        scos = sorted(package["scos"], key=lambda s: s["position"])
        if wanted is None:  # the first SCO, else the first item
            item = next((s for s in scos if s.get("tracked", True)), scos[0] if scos else None)
        else:
            item = next((s for s in scos if s["identifier"] == wanted), None)
        if item is None:
            return {"label": "SCO", "tracking": "unknown",
                    "title": f"{package['title']} › {wanted} (not in the package)"}
        tracked = item.get("tracked", True)
        first = " (the package's first)" if wanted is None else ""
        return {"label": "SCO" if tracked else "Untracked item",
                "title": f"{package['title']} › {item['title']}{first}",
                "tracking": "tracked" if tracked else "untracked"}

    return launched


# --- the tree ---------------------------------------------------------------------------------------------


def _activity_fields(form: Any, *, creating: bool) -> dict[str, Any]:
    kind = forms.required(form, "kind", "Kind")
    body: dict[str, Any] = {"title": forms.required(form, "title", "Title"), "kind": kind,
                            "required": forms.checked(form, "required")}
    score = forms.number(form, "passing_score_scaled", "Passing score")
    if score is not None and not 0 <= score <= 1:
        raise forms.FormError("Passing score must be between 0 and 1 (e.g. 0.8 for 80%).")
    if score is not None or not creating:
        body["passing_score_scaled"] = score
    if kind == "scorm":
        choice = forms.sco_choice(form.get("sco"))
        if choice is None:
            raise forms.FormError("A SCORM activity needs a SCO: choose one from the tenant's ready packages.")
        body["scorm_package_id"], body["sco_identifier"] = choice
        # Checked: the default (an untracked item completes when opened); unchecked: opened, never done by opening
        # it. The form never sends true, which the API refuses on an activity that launches a SCO.
        body["complete_on_launch"] = None if forms.checked(form, "complete_on_launch") else False
    return body


async def add_node(view: View) -> web.StreamResponse:
    course_id = view.path_id("cid")
    level = view.request.match_info["level"]
    form = await view.form()
    if level == "modules":
        section, path = "add-module", f"courses/{course_id}/modules"
    elif level == "lessons":
        module_id = view.path_id("pid")
        section, path = f"add-lesson-{module_id}", f"modules/{module_id}/lessons"
    else:
        lesson_id = view.path_id("pid")
        section, path = f"add-activity-{lesson_id}", f"lessons/{lesson_id}/activities"
    try:
        if level == "activities":
            body = _activity_fields(form, creating=True)
        else:
            body = {"title": forms.required(form, "title", "Title")}
        node = (await view.api.post(view.tenant_api_path(path), body)).data
    except (forms.FormError, AdminApiError) as exc:
        return await course_page(view, course_id, problem=Problem(section, refusal(exc), dict(form)), status=400)
    noun = LEVELS[level]
    return view.done(view.url(f"/admin/learn/courses/{course_id}") + f"#{noun}-{node['id']}",
                     f"{noun.capitalize()} “{node['title']}” added.")


async def update_node(view: View) -> web.StreamResponse:
    course_id, node_id = view.path_id("cid"), view.path_id("id")
    level = view.request.match_info["level"]
    noun = LEVELS[level]
    form = await view.form()
    try:
        if level == "activities":
            body = _activity_fields(form, creating=False)
        else:
            body = {"title": forms.required(form, "title", "Title")}
        node = (await view.api.post(view.tenant_api_path(f"{level}/{node_id}"), body)).data
    except (forms.FormError, AdminApiError) as exc:
        return await course_page(view, course_id, problem=Problem(f"{noun}-{node_id}", refusal(exc), dict(form)),
                                 status=400)
    return view.done(view.url(f"/admin/learn/courses/{course_id}") + f"#{noun}-{node_id}",
                     f"{noun.capitalize()} “{node['title']}” saved.")


async def move_node(view: View) -> web.StreamResponse:
    course_id, node_id = view.path_id("cid"), view.path_id("id")
    level = view.request.match_info["level"]
    noun = LEVELS[level]
    form = await view.form()
    try:
        position = forms.integer(form, "position", "Position", minimum=1)
        if position is None:
            raise forms.FormError("The position is missing.")
        target = position - 1 if form.get("direction") == "up" else position + 1
        node = (await view.api.post(view.tenant_api_path(f"{level}/{node_id}"), {"position": max(target, 1)})).data
    except (forms.FormError, AdminApiError) as exc:
        return await course_page(view, course_id, problem=Problem(f"{noun}-{node_id}", refusal(exc)), status=400)
    return view.done(view.url(f"/admin/learn/courses/{course_id}") + f"#{noun}-{node_id}",
                     f"{noun.capitalize()} “{node['title']}” moved to position {node['position']}.")


async def delete_form(view: View) -> web.StreamResponse:
    course_id, node_id = view.path_id("cid"), view.path_id("id")
    level = view.request.match_info["level"]
    course = (await view.api.get(view.tenant_api_path(f"courses/{course_id}"))).data
    node, below = _find(course, level, node_id)
    if node is None:
        raise web.HTTPNotFound(reason=f"This course has no such {LEVELS[level]}.")
    return view.render("confirm_delete.html", course=course, node=node, noun=LEVELS[level], below=below,
                       action=view.url(f"/admin/learn/courses/{course_id}/{level}/{node_id}/delete"),
                       back=view.url(f"/admin/learn/courses/{course_id}") + f"#{LEVELS[level]}-{node_id}",
                       switch_path="/admin/learn/courses")


def _find(course: dict[str, Any], level: str, node_id: int) -> tuple[dict[str, Any] | None, str]:
    """The node and a sentence on what goes with it."""
    for module in course["modules"]:
        if level == "modules" and module["id"] == node_id:
            acts = sum(len(le["activities"]) for le in module["lessons"])
            return module, f"its {len(module['lessons'])} lesson(s) and {acts} activity(ies) go with it"
        for lesson in module["lessons"]:
            if level == "lessons" and lesson["id"] == node_id:
                return lesson, f"its {len(lesson['activities'])} activity(ies) go with it"
            for activity in lesson["activities"]:
                if level == "activities" and activity["id"] == node_id:
                    return activity, "learners' attempts on published versions are kept"
    return None, ""


async def delete_node(view: View) -> web.StreamResponse:
    course_id, node_id = view.path_id("cid"), view.path_id("id")
    level = view.request.match_info["level"]
    noun = LEVELS[level]
    try:
        node = (await view.api.delete(view.tenant_api_path(f"{level}/{node_id}"))).data
    except AdminApiError as exc:
        return await course_page(view, course_id, problem=Problem(f"{noun}-{node_id}", refusal(exc)), status=400)
    return view.done(view.url(f"/admin/learn/courses/{course_id}") + "#structure",
                     f"{noun.capitalize()} “{node['title']}” deleted.")


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    base = "/admin/learn/courses"
    levels = "{level:modules|lessons|activities}"
    router.add_get(base, ui.page(courses_index, tenant=True))
    router.add_post(base, ui.page(create_course, tenant=True))
    router.add_get(base + "/{cid}", ui.page(course_index, tenant=True))
    router.add_post(base + "/{cid}", ui.page(update_course, tenant=True))
    router.add_post(base + "/{cid}/{action:publish|unpublish|archive}", ui.page(transition, tenant=True))
    router.add_post(base + "/{cid}/{level:modules}", ui.page(add_node, tenant=True))
    router.add_post(base + "/{cid}/modules/{pid}/{level:lessons}", ui.page(add_node, tenant=True))
    router.add_post(base + "/{cid}/lessons/{pid}/{level:activities}", ui.page(add_node, tenant=True))
    router.add_post(base + "/{cid}/" + levels + "/{id}", ui.page(update_node, tenant=True))
    router.add_post(base + "/{cid}/" + levels + "/{id}/move", ui.page(move_node, tenant=True))
    router.add_get(base + "/{cid}/" + levels + "/{id}/delete", ui.page(delete_form, tenant=True))
    router.add_post(base + "/{cid}/" + levels + "/{id}/delete", ui.page(delete_node, tenant=True))
