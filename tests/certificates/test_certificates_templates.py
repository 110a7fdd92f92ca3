"""Certificate templates: admin create/update with validated assets, one default per tenant, versions and
``template.*`` events, public reads, the live preview, and which template a certificate is issued with."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image
from pypdf import PdfReader

from tests.certificates.test_certificates_harness import (
    b64,
    background_pdf,
    ids,
    logo_png,
    pdf_text,
    running_service,
)
from tests.support.infra import wait_until


@pytest.fixture
async def service(test_env):
    async with running_service(test_env) as service:
        yield service


def _oversized_png() -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)).save(out, "PNG", compress_level=0)
    assert len(out.getvalue()) > 1024 * 1024
    return out.getvalue()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(out, "JPEG")
    return out.getvalue()


async def test_a_tenants_first_template_is_created_as_its_default(service, events):
    created = await service.create_template(
        name="Acme brand", orientation="portrait", page_size="Letter", title_text="Certificate of Achievement",
        body_text="{recipient_name} completed {course_title}", primary_color="#112233", accent_color="#AA8800",
        logo=b64(logo_png()), background_pdf=b64(background_pdf()), signatory_name="Dr. Grace Hopper",
        signatory_title="Dean")
    assert created["is_default"] is True and created["version"] == 1
    assert created["orientation"] == "portrait" and created["page_size"] == "Letter"
    assert created["logo"]["content_type"] == "image/png" and created["logo"]["bytes"] == len(logo_png())
    background = created["background_pdf"]
    assert background["content_type"] == "application/pdf" and len(background["sha256"]) == 64
    assert created["signatory_name"] == "Dr. Grace Hopper" and created["created_at"] == created["updated_at"]
    event = (await events.wait_for("template.created"))[0]
    assert event.data == {"template_id": created["id"], "name": "Acme brand", "version": 1, "is_default": True}


async def test_a_new_default_takes_over_and_the_old_one_gets_a_new_version(service, events):
    first = await service.create_template(name="Old")
    second = await service.create_template(name="New", is_default=True)
    assert second["is_default"] is True
    _, old = await service.call("GET", f"/api/v1/learn/cert-templates/{first['id']}", expect=200)
    assert old["data"]["is_default"] is False and old["data"]["version"] == 2
    updated = (await events.wait_for("template.updated"))[0]
    assert updated.data["template_id"] == first["id"] and updated.data["is_default"] is False
    third = await service.create_template(name="Not default")
    assert third["is_default"] is False
    _, listed = await service.call("GET", "/api/v1/learn/cert-templates", expect=200)
    assert [(t["id"], t["is_default"]) for t in listed["data"]] == [
        (third["id"], False), (second["id"], True), (first["id"], False)]


async def test_an_update_bumps_the_version_keeps_omitted_fields_and_null_clears(service, events):
    created = await service.create_template(name="Brand", logo=b64(logo_png()), signatory_name="Ada")
    _, body = await service.admin("POST", f"/cert-templates/{created['id']}",
                                  json={"title_text": "Diploma", "logo": None}, expect=200)
    updated = body["data"]
    assert updated["version"] == 2 and updated["title_text"] == "Diploma"
    assert updated["logo"] is None and updated["signatory_name"] == "Ada" and updated["name"] == "Brand"
    event = (await events.wait_for("template.updated"))[0]
    assert event.data == {"template_id": created["id"], "name": "Brand", "version": 2, "is_default": True}


async def test_an_update_that_changes_nothing_keeps_the_version(service, events):
    created = await service.create_template(name="Brand", accent_color="#aa8800")
    _, body = await service.admin("POST", f"/cert-templates/{created['id']}",
                                  json={"name": "Brand", "accent_color": "#aa8800"}, expect=200)
    assert body["data"]["version"] == 1
    await events.wait_for("template.created")
    assert events.of_type("template.updated") == []


@pytest.mark.parametrize(("field", "value"), [
    ("logo", b64(_jpeg())),
    ("logo", b64(b"GIF89a not a png at all")),
    ("logo", b64(_oversized_png())),
    ("logo", "not base64 !!!"),
    ("background_pdf", b64(background_pdf(pages=2))),
    ("background_pdf", b64(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> broken")),
    ("background_pdf", b64(logo_png())),
    ("primary_color", "red"),
    ("primary_color", "#12345"),
    ("accent_color", "#gggggg"),
    ("orientation", "sideways"),
    ("page_size", "A3"),
    ("is_default", "yes"),
    ("title_text", "x" * 201),
])
async def test_bad_template_input_is_invalid_argument(service, field, value):
    status, body = await service.admin("POST", "/cert-templates", json={"name": "Brand", field: value})
    assert status == 400 and body["error"]["code"] == "invalid_argument", body
    assert field in body["error"]["message"]
    _, listed = await service.admin("GET", "/cert-templates", expect=200)
    assert listed["data"] == []


async def test_bad_input_on_update_changes_nothing(service):
    created = await service.create_template(name="Brand")
    status, body = await service.admin("POST", f"/cert-templates/{created['id']}",
                                       json={"background_pdf": b64(background_pdf(pages=3))})
    assert status == 400 and body["error"]["code"] == "invalid_argument"
    _, again = await service.admin("GET", f"/cert-templates/{created['id']}", expect=200)
    assert again["data"]["version"] == 1 and again["data"]["background_pdf"] is None


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": None}])
async def test_a_template_needs_a_name(service, body):
    status, answer = await service.admin("POST", "/cert-templates", json=body)
    assert status == 400 and answer["error"]["code"] == "missing_field" and "name" in answer["error"]["message"]


async def test_required_fields_cannot_be_cleared_on_update(service):
    created = await service.create_template(name="Brand")
    status, body = await service.admin("POST", f"/cert-templates/{created['id']}", json={"title_text": None})
    assert status == 400 and body["error"]["code"] == "missing_field"


async def test_unknown_template_fields_are_rejected(service):
    status, body = await service.admin("POST", "/cert-templates", json={"name": "Brand", "version": 9})
    assert status == 400 and body["error"]["code"] == "invalid_argument"


async def test_another_tenants_template_is_template_not_found(service):
    created = await service.create_template(name="Brand")
    for status, body in (
        await service.call("GET", f"/api/v1/learn/cert-templates/{created['id']}", tenant_id=2, tenant="globex"),
        await service.admin("POST", f"/cert-templates/{created['id']}", json={"name": "x"}, tenant_id=2,
                            tenant="globex"),
        await service.call("GET", "/api/v1/learn/cert-templates/424242"),
    ):
        assert status == 404 and body["error"]["code"] == "template_not_found"
    _, listed = await service.call("GET", "/api/v1/learn/cert-templates", tenant_id=2, tenant="globex", expect=200)
    assert listed["data"] == []


async def test_template_writes_need_the_admin_scope(service):
    status, body = await service.call("POST", "/admin/v1/cert-templates", json={"name": "Brand"})
    assert status == 403 and body["error"]["code"] == "insufficient_scope"


async def test_the_preview_renders_the_posted_fields_as_png_or_pdf(service):
    fields = {"title_text": "Preview Title", "logo": b64(logo_png()), "orientation": "portrait"}
    async with service.client.post("/admin/v1/cert-templates/preview", json=fields,
                                   headers=service.headers(scopes="admin")) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        image = Image.open(io.BytesIO(await resp.read()))
        assert image.height > image.width  # portrait
    async with service.client.post("/admin/v1/cert-templates/preview?format=pdf", json=fields,
                                   headers=service.headers(scopes="admin")) as resp:
        assert resp.status == 200 and resp.content_type == "application/pdf"
        pdf = await resp.read()
    assert "Preview Title" in pdf_text(pdf) and len(PdfReader(io.BytesIO(pdf)).pages) == 1
    status, body = await service.admin("POST", "/cert-templates/preview", json={"primary_color": "blue"})
    assert status == 400 and body["error"]["code"] == "invalid_argument"


async def test_certificates_use_the_courses_template_else_the_tenant_default(service):
    default = await service.create_template(name="Default", title_text="Default Title")
    special = await service.create_template(name="Special", title_text="Special Title")
    chosen, fallback, missing = next(ids), next(ids), next(ids)
    await service.publish(service.completion(chosen, template_id=special["id"]),
                          service.completion(fallback, template_id=None),
                          service.completion(missing, template_id=999_999))
    certs = {e: await service.issued(e) for e in (chosen, fallback, missing)}
    assert certs[chosen]["template_id"] == special["id"]
    assert certs[fallback]["template_id"] == default["id"] and certs[missing]["template_id"] == default["id"]
    assert "Special Title" in pdf_text(await service.pdf(certs[chosen]["id"]))
    assert "Default Title" in pdf_text(await service.pdf(certs[missing]["id"]))


async def test_a_template_change_gives_every_certificate_a_new_pdf(service, events):
    template = await service.create_template(name="Brand", title_text="Certificate of Completion")
    enrollment = next(ids)
    await service.publish(service.completion(enrollment, template_id=template["id"]))
    cert = await service.issued(enrollment)
    await service.admin("POST", f"/cert-templates/{template['id']}",
                        json={"title_text": "Certificate of Excellence", "primary_color": "#7a1f1f"}, expect=200)

    async def regenerated():
        data = await service.certificate(cert["id"])
        return data if data["pdf"]["version"] == 2 else None

    after = await wait_until(regenerated, timeout=20, message="the regenerated PDF")
    assert after["pdf"]["sha256"] != cert["pdf"]["sha256"] and after["pdf"]["template_version"] == 2
    assert after["verification_id"] == cert["verification_id"]
    assert after["verification_url"] == cert["verification_url"]
    text = pdf_text(await service.pdf(cert["id"]))
    assert "Certificate of Excellence" in text and cert["verification_id"] in text
    event = (await events.wait_for("certificate.pdf_regenerated"))[0]
    assert event.data["certificate_id"] == cert["id"] and event.data["template_version"] == 2
    assert event.data["sha256"] == after["pdf"]["sha256"]
