"""Certificate templates: list, create, edit with a live preview, and the PDF regeneration a save sets off.

The form is multipart (logo and background files). The preview posts the same form (CSRF token in a header) and
gets the certificates service's rendering of a sample certificate back; without script, a "Preview" button
re-renders the page with the image inline.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
from aiohttp import web

from services.gateway.ui import forms
from services.gateway.ui.client import AdminApiError
from services.gateway.ui.pages_courses import refusal
from services.gateway.ui.views import Problem, Ui, View
from shared.http import positive_int

TEXT_FIELDS = ("name", "orientation", "page_size", "title_text", "body_text", "primary_color", "accent_color",
               "signatory_name", "signatory_title")
OPTIONAL = ("signatory_name", "signatory_title", "body_text")
FILES = {"logo": ("image/png", 1024 * 1024, "The logo"), "background_pdf": ("application/pdf", 4 * 1024 * 1024,
                                                                            "The background")}
NEW_TEMPLATE = {"name": "", "is_default": False, "orientation": "landscape", "page_size": "A4",
                "title_text": "Certificate of Completion", "body_text": "has successfully completed {course_title}",
                "primary_color": "#1f3a5f", "accent_color": "#b08d57", "signatory_name": None,
                "signatory_title": None, "logo": None, "background_pdf": None}
PLACEHOLDERS = ("recipient_name", "course_title", "credit_hours", "credit_kind", "issued_on", "expires_on")
MAX_FORM = 6 * 1024 * 1024
CHUNK = 64 * 1024


class TemplateForm:
    """What the multipart template form sent: text fields, checkboxes and the two optional files."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.files: dict[str, bytes] = {}

    @classmethod
    async def read(cls, reader: aiohttp.MultipartReader) -> TemplateForm:
        form = cls()
        total = 0
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
                continue
            data = bytearray()
            while chunk := await part.read_chunk(CHUNK):
                data += chunk
                total += len(chunk)
                if total > MAX_FORM:
                    raise forms.FormError("The form is too large: the logo may be 1 MiB, the background 4 MiB.")
            if part.name in FILES:
                if part.filename and data:
                    form.files[part.name] = bytes(data)
            else:
                form.fields[part.name] = data.decode("utf-8", errors="replace")
        return form

    def payload(self, *, preview: bool = False) -> dict[str, Any]:
        """Every field as the admin API takes it (files as base64; a ticked "remove" clears one)."""
        f = self.fields
        body: dict[str, Any] = {
            "name": (forms.text(f, "name") or "Preview") if preview else forms.required(f, "name", "Name"),
            "title_text": forms.required(f, "title_text", "Title"),
            "orientation": f.get("orientation") or "landscape",
            "page_size": f.get("page_size") or "A4",
            "body_text": f.get("body_text", "").strip(),
            "primary_color": (f.get("primary_color") or "").strip(),
            "accent_color": (f.get("accent_color") or "").strip(),
            "signatory_name": forms.text(f, "signatory_name"),
            "signatory_title": forms.text(f, "signatory_title"),
            "is_default": forms.checked(f, "is_default"),
        }
        for name, (ctype, limit, label) in FILES.items():
            if name in self.files:
                if len(self.files[name]) > limit:
                    raise forms.FormError(f"{label} is over {limit // (1024 * 1024)} MiB.")
                body[name] = f"data:{ctype};base64," + base64.b64encode(self.files[name]).decode()
            elif forms.checked(f, f"remove_{name}"):
                body[name] = None
        return body

    def shown(self) -> dict[str, Any]:
        """What to put back into the form when it is shown again (files cannot be)."""
        return {**self.fields, "is_default": "on" if forms.checked(self.fields, "is_default") else ""}



def _update(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """Only what changed; the files (described, not echoed, by the API) go whenever they were sent."""
    changes = {k: v for k, v in wanted.items() if k not in FILES and current.get(k) != v}
    changes.update({k: v for k, v in wanted.items() if k in FILES})
    return changes


# --- pages ------------------------------------------------------------------------------------------------


async def templates_index(view: View) -> web.StreamResponse:
    reply = await view.api.get(view.tenant_api_path("cert-templates"),
                               {"limit": 50, "cursor": view.request.query.get("cursor")})
    return view.render("cert_templates.html", templates=reply.data, next_cursor=reply.next_cursor)


async def template_page(view: View, template: dict[str, Any] | None, *, problem: Problem | None = None,
                        status: int = 200, preview_uri: str | None = None) -> web.StreamResponse:
    return view.render("cert_template.html", status=status, problem=problem, template=template,
                       values=template or NEW_TEMPLATE, placeholders=PLACEHOLDERS, preview_uri=preview_uri,
                       switch_path="/admin/learn/cert-templates")


async def new_template(view: View) -> web.StreamResponse:
    return await template_page(view, None)


async def edit_template(view: View) -> web.StreamResponse:
    template = (await view.api.get(view.tenant_api_path(f"cert-templates/{view.path_id()}"))).data
    return await template_page(view, template)


async def save_template(view: View) -> web.StreamResponse:
    template_id = view.path_id() if "id" in view.request.match_info else None
    template: dict[str, Any] | None = None
    form = TemplateForm()
    try:
        if template_id is not None:
            template = (await view.api.get(view.tenant_api_path(f"cert-templates/{template_id}"))).data
        form = await TemplateForm.read(await view.multipart_reader())
        previewing = form.fields.get("intent") == "preview"  # the no-script preview
        body = form.payload(preview=previewing)
        if previewing:
            document = await _render_preview(view, body, template_id)
            uri = f"data:{document[0]};base64," + base64.b64encode(document[1]).decode()
            return await template_page(view, template, problem=Problem("template", "", form.shown()),
                                       preview_uri=uri)
        if template is None:
            saved = (await view.api.post(view.tenant_api_path("cert-templates"), body)).data
            message = f"Template “{saved['name']}” created."
        else:
            changes = _update(template, body)
            saved = (await view.api.post(view.tenant_api_path(f"cert-templates/{template_id}"), changes)).data \
                if changes else template
            message = (f"Template “{saved['name']}” saved as version {saved['version']}; certificates that use it "
                       "are being regenerated." if changes else "Nothing changed.")
    except (forms.FormError, AdminApiError) as exc:
        return await template_page(view, template, problem=Problem("template", refusal(exc), form.shown()),
                                   status=400)
    return view.done(view.url(f"/admin/learn/cert-templates/{saved['id']}") + "#regeneration", message)


async def _render_preview(view: View, body: dict[str, Any], template_id: int | None) -> tuple[str, bytes]:
    preview = dict(body)
    if template_id is not None:
        preview["template_id"] = template_id  # stored logo and background, unless replaced or removed here
    document = await view.api.document("POST", view.tenant_api_path("cert-templates/preview"), body=preview,
                                       params={"format": "png"})
    return document.content_type, document.body


async def preview(view: View) -> web.StreamResponse:
    """The script's live preview: the form as multipart (CSRF token in a header), answered with the image."""
    raw = view.request.query.get("template_id", "")
    template_id = positive_int(raw)
    try:
        body = (await TemplateForm.read(await view.multipart_reader())).payload(preview=True)
        ctype, image = await _render_preview(view, body, template_id)
    except (forms.FormError, AdminApiError) as exc:
        status = exc.status if isinstance(exc, AdminApiError) else 400
        return web.json_response({"error": {"message": refusal(exc) if status < 500 else str(exc)}},
                                 status=status)
    return web.Response(body=image, content_type=ctype, headers={"Cache-Control": "no-store"})


async def regeneration(view: View) -> web.StreamResponse:
    """How many of the template's live certificates already show its current version."""
    template_id = view.path_id()
    template = (await view.api.get(view.tenant_api_path(f"cert-templates/{template_id}"))).data
    certificates = await view.api.all_pages(view.tenant_api_path("certificates"), most=5000)
    live = [c for c in certificates if c["template_id"] == template_id and not c["is_revoked"]]
    done = sum(1 for c in live if (c["pdf"].get("template_version") or 0) >= template["version"])
    total = len(live)
    if total == 0:
        text = "No certificates use this template yet."
    elif done == total:
        text = f"All {total} certificate(s) show version {template['version']}."
    else:
        text = f"Regenerating: {done} of {total} certificate(s) show version {template['version']}."
    return web.json_response({"version": template["version"], "total": total, "done": done,
                              "finished": done == total, "text": text})


def setup(ui: Ui, router: web.UrlDispatcher) -> None:
    base = "/admin/learn/cert-templates"
    router.add_get(base, ui.page(templates_index, tenant=True))
    router.add_get(base + "/new", ui.page(new_template, tenant=True))
    router.add_post(base + "/new", ui.page(save_template, tenant=True, multipart=True))
    router.add_post(base + "/preview", ui.page(preview, tenant=True, json_errors=True))
    router.add_get(base + "/{id:[0-9]+}", ui.page(edit_template, tenant=True))
    router.add_post(base + "/{id:[0-9]+}", ui.page(save_template, tenant=True, multipart=True))
    router.add_get(base + "/{id:[0-9]+}/regeneration", ui.page(regeneration, tenant=True, json_errors=True))
