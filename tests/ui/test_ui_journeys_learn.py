"""Browser journeys 3 to 6: upload a SCORM package, build and publish a course with its SCO, edit a certificate
template with its live preview, revoke a certificate. Plus the hostile SCORM title and the pages' CSP in Chromium.

Headless Chromium against the whole system (every service its own process, PostgreSQL, RabbitMQ).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Request, expect

from services.gateway.ui.security import CSP, with_content_origin
from tests.support.cluster import Cluster
from tests.support.scorm_packages import FIXTURES
from tests.ui.ui_support import DESKTOP, shoot, sign_in, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

GOLF_12 = FIXTURES / "golf_scorm12_singlesco.zip"
READING = {"title": "Read the rules", "kind": "reading", "required": True}


async def tenant(cluster: Cluster, prefix: str) -> tuple[str, str]:
    slug = unique_slug(prefix)
    return slug, await cluster.tenant_with_key(slug)


async def test_journey_3_an_uploaded_package_becomes_ready_with_its_sco(ui_cluster: Cluster, page: Page) -> None:
    slug, _ = await tenant(ui_cluster, "upload")
    uploads: list[Request] = []
    page.on("request", lambda r: uploads.append(r) if "/admin/learn/scorm/upload" in r.url else None)
    await sign_in(page, ui_cluster, f"/admin/learn/scorm/new?tenant={slug}")
    await expect(page.get_by_role("heading", name="Upload a SCORM package")).to_be_visible()
    await shoot(page, "03-scorm-upload")

    await page.get_by_label("SCORM zip").set_input_files(GOLF_12)
    await page.get_by_role("button", name="Upload").click()
    await expect(page).to_have_url(re.compile(r"/admin/learn/scorm/\d+\?tenant="))
    # The script streamed the zip as the body of one request (the one whose upload progress it shows).
    assert len(uploads) == 1 and uploads[0].headers["content-type"] == "application/zip"

    await expect(page.locator(".page-head .badge")).to_have_text("ready", timeout=60_000)  # reloads by itself
    await expect(page.get_by_role("heading", name="Golf Explained - CP Single SCO")).to_be_visible()
    sco = page.locator(".sco-tree li").first
    await expect(sco).to_contain_text("Golf Explained")
    await expect(sco).to_contain_text("item_1")
    _, probe = await ui_cluster.admin("POST", f"/tenants/{slug}/scorm-packages/0/preview", json={})
    if probe["error"]["code"] == "not_found":  # this SCORM service has no preview launch: none is offered
        await expect(page.get_by_text("Previews appear here once the SCORM service offers preview launches.")) \
            .to_be_visible()
        assert await sco.get_by_role("button", name=re.compile("Preview")).count() == 0
    else:
        async with page.context.expect_page() as opened:
            await sco.get_by_role("button", name=re.compile("Preview")).click()
        player = await opened.value
        # On the content origin, never the admin UI's (the package's JavaScript runs there).
        await expect(player).to_have_url(re.compile("^" + re.escape(ui_cluster.content_url) + "/learn/player/"))
        await player.close()
    await expect(page.locator("dl.facts")).to_contain_text("1.2")
    await shoot(page, "03-scorm-package-ready")

    await page.get_by_role("link", name="← All packages").click()
    await expect(page.locator("tbody tr").first).to_contain_text("Golf Explained - CP Single SCO")
    await shoot(page, "03-scorm-packages")


async def test_journey_3_the_upload_form_works_without_javascript(ui_cluster: Cluster, browser: Browser) -> None:
    slug, _ = await tenant(ui_cluster, "nojs")
    context = await browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, ui_cluster, f"/admin/learn/scorm/new?tenant={slug}")
        await page.get_by_label("Title").fill("Golf, the no-script way")
        await page.get_by_label("SCORM zip").set_input_files(GOLF_12)
        await page.get_by_role("button", name="Upload").click()
        await expect(page.get_by_role("status").first).to_have_text("Package uploaded.")
        await expect(page.locator(".page-head .badge")).to_have_text("ready", timeout=60_000)  # meta refresh
        await expect(page.get_by_role("heading", name="Golf, the no-script way")).to_be_visible()
        await expect(page.locator(".sco-tree")).to_contain_text("item_1")
    finally:
        await context.close()


async def test_journey_3_a_broken_zip_ends_failed_with_its_reason(ui_cluster: Cluster, page: Page, tmp_path) -> None:
    slug, _ = await tenant(ui_cluster, "broken")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 200)  # a zip's first bytes, then nothing a zip needs
    await sign_in(page, ui_cluster, f"/admin/learn/scorm/new?tenant={slug}")
    await page.get_by_label("SCORM zip").set_input_files(broken)
    await page.get_by_role("button", name="Upload").click()
    await expect(page).to_have_url(re.compile(r"/admin/learn/scorm/\d+\?tenant="))  # accepted, then imported
    await expect(page.locator(".page-head .badge")).to_have_text("failed", timeout=60_000)
    await expect(page.get_by_role("heading", name="The import failed")).to_be_visible()
    await expect(page.locator(".error-detail")).to_contain_text(re.compile(r"\w+"))
    await expect(page.get_by_role("link", name="Upload a corrected package")).to_be_visible()
    await shoot(page, "03-scorm-failed")


async def test_a_hostile_scorm_title_is_shown_as_text(ui_cluster: Cluster, page: Page) -> None:
    slug, _ = await tenant(ui_cluster, "hostile")
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    await sign_in(page, ui_cluster, f"/admin/learn/scorm/new?tenant={slug}")
    await page.get_by_label("Title").fill(hostile)
    await page.get_by_label("SCORM zip").set_input_files(GOLF_12)
    await page.get_by_role("button", name="Upload").click()
    await expect(page.locator(".page-head .badge")).to_have_text("ready", timeout=60_000)
    await expect(page.locator("h1")).to_have_text(hostile)
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("main script, main img[src='x']").count() == 0
    await page.goto(ui_cluster.gateway_url + f"/admin/learn/scorm?tenant={slug}")
    await expect(page.locator("tbody tr").first).to_contain_text(hostile)
    assert await page.evaluate("window.__pwned") is None
    await shoot(page, "sec-hostile-scorm-title")


async def test_every_page_of_a_journey_carries_the_csp(ui_cluster: Cluster, page: Page) -> None:
    slug, _ = await tenant(ui_cluster, "csp")
    headers: dict[str, str | None] = {}

    def remember(response: Any) -> None:
        if response.request.resource_type in ("document", "script", "stylesheet"):
            headers[response.url] = response.headers.get("content-security-policy")

    page.on("response", remember)
    await sign_in(page, ui_cluster, f"/admin/api-keys?tenant={slug}")
    for path in ("/admin/learn/courses", "/admin/learn/scorm/new", "/admin/learn/cert-templates",
                 "/admin/learn/certificates", "/admin/learn/cohorts"):
        await page.goto(ui_cluster.gateway_url + f"{path}?tenant={slug}")
    assert len(headers) >= 8
    assert set(headers.values()) == {CSP, with_content_origin(CSP, ui_cluster.content_url)}, headers


async def test_journey_4_a_course_is_built_with_the_sco_and_published(ui_cluster: Cluster, page: Page) -> None:
    slug, key = await tenant(ui_cluster, "build")
    package = await ui_cluster.upload_scorm(slug, GOLF_12)
    assert package["status"] == "ready", package
    await sign_in(page, ui_cluster, f"/admin/learn/courses?tenant={slug}")

    await page.get_by_label("Title").fill("Golf for Beginners")
    await page.get_by_label("Slug").fill("golf-101")
    await page.get_by_role("button", name="Create course").click()
    await expect(page.get_by_role("heading", name="Golf for Beginners", level=1)).to_be_visible()
    course_url = page.url

    await page.get_by_label("New module title").fill("The basics")
    await page.get_by_role("button", name="Add module").click()
    await expect(page.get_by_role("status")).to_have_text("Module “The basics” added.")
    await page.get_by_text("Add a lesson").click()
    await page.get_by_label("New lesson title").fill("Rules of the game")
    await page.get_by_role("button", name="Add lesson").click()
    await expect(page.get_by_role("status")).to_have_text("Lesson “Rules of the game” added.")

    # The SCO picker lists the tenant's ready packages as soon as the catalog has heard of this one.
    async def sco_offered() -> bool:
        await page.goto(course_url)
        return await page.locator("option", has_text="Golf Explained").count() > 0

    await ui_cluster.eventually(sco_offered, timeout=30, message="the SCO in the picker")
    await page.get_by_text("Add an activity").click()
    form = page.locator("details[open] form")
    await form.get_by_label("Title").fill("Play the course")
    await form.get_by_label("Kind").select_option("scorm")
    await form.get_by_label("SCO (SCORM activities)").select_option(label="Golf Explained")
    await form.get_by_label("Required for completion").check()
    await shoot(page, "04-course-add-activity")
    await form.get_by_role("button", name="Add activity").click()
    await expect(page.get_by_role("status")).to_have_text("Activity “Play the course” added.")
    activity = page.locator("#structure li[id^='activity-']")
    await expect(activity).to_contain_text("Play the course")
    await expect(activity).to_contain_text("Golf Explained - CP Single SCO › Golf Explained")

    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_role("status")).to_have_text("“Golf for Beginners” is published (version 1).")
    await expect(page.locator(".page-head .badge")).to_have_text("published")
    await expect(page.get_by_text("Unpublish the course to change its structure.")).to_be_visible()
    await shoot(page, "04-course-published")

    course_id = int(re.search(r"/courses/(\d+)", course_url).group(1))  # type: ignore[union-attr]
    status, body = await ui_cluster.api(key, "GET", f"/courses/{course_id}")
    assert status == 200 and body["data"]["status"] == "published"
    status, body = await ui_cluster.api(key, "GET", f"/courses/{course_id}/modules")
    (module,) = body["data"]
    status, body = await ui_cluster.api(key, "GET", f"/modules/{module['id']}/lessons")
    (lesson,) = body["data"]
    status, body = await ui_cluster.api(key, "GET", f"/lessons/{lesson['id']}/activities")
    (played,) = body["data"]
    assert played["kind"] == "scorm" and played["scorm_package_id"] == package["id"]
    assert played["sco_identifier"] == "item_1" and played["required"] is True

    await page.get_by_role("link", name="← All courses").click()
    await expect(page.locator(f"#course-{course_id}")).to_contain_text("published")
    await shoot(page, "04-courses")


async def test_journey_4_the_apis_refusal_is_shown_beside_the_buttons(ui_cluster: Cluster, page: Page) -> None:
    slug, key = await tenant(ui_cluster, "refuse")
    status, body = await ui_cluster.api(key, "POST", "/courses", json={"slug": "empty", "title": "Empty"})
    assert status == 201
    await sign_in(page, ui_cluster, f"/admin/learn/courses/{body['data']['id']}?tenant={slug}")
    await page.get_by_role("button", name="Publish").click()
    error = page.locator("#lifecycle [role=alert]")
    await expect(error).to_contain_text("at least one activity")
    await expect(page.locator(".page-head .badge")).to_have_text("draft")
    await shoot(page, "04-course-publish-refused")


async def test_journey_4_modules_are_renamed_reordered_and_deleted(ui_cluster: Cluster, page: Page) -> None:
    slug, key = await tenant(ui_cluster, "reorder")
    course, _ = await ui_cluster.course(key, slug, "tree", [READING], publish=False)
    await ui_cluster.admin("POST", f"/tenants/{slug}/courses/{course['id']}/modules", json={"title": "Second"})
    await sign_in(page, ui_cluster, f"/admin/learn/courses/{course['id']}?tenant={slug}")
    modules = page.locator("#structure > ol > li h3")
    await expect(modules).to_have_text(["Module 1 Module 1", "Module 2 Second"])

    await page.get_by_role("button", name="Move module “Second” up").click()
    await expect(modules).to_have_text(["Module 1 Second", "Module 2 Module 1"])
    await page.locator("summary", has_text="Rename module “Module 1”").click()
    await page.locator("details[open]").get_by_label("Module title").fill("Welcome")
    await page.locator("details[open]").get_by_role("button", name="Save title").click()
    await expect(modules).to_have_text(["Module 1 Second", "Module 2 Welcome"])

    await page.get_by_role("link", name="Delete module “Second”").click()
    await expect(page.get_by_role("heading", name="Delete the module “Second”?")).to_be_visible()
    await page.get_by_role("button", name="Delete the module").click()
    await expect(page.get_by_role("status")).to_have_text("Module “Second” deleted.")
    await expect(modules).to_have_text(["Module 1 Welcome"])


async def test_journey_5_editing_a_template_changes_its_live_preview(ui_cluster: Cluster, page: Page) -> None:
    slug, _ = await tenant(ui_cluster, "brand")
    await sign_in(page, ui_cluster, f"/admin/learn/cert-templates/new?tenant={slug}")
    preview = page.get_by_role("img", name="Preview of a sample certificate with this design")
    status = page.locator("[data-preview-status]")
    await expect(status).to_have_text("Preview up to date.", timeout=30_000)
    await expect(preview).to_have_attribute("src", re.compile("^blob:"))
    before_src = await preview.get_attribute("src")
    before = await preview.screenshot()

    await page.get_by_label("Name", exact=True).fill("Acme blue")
    await page.get_by_label("Title", exact=True).fill("Certificate of Excellence")
    await page.get_by_label("Main colour", exact=True).fill("#0b5394")
    await page.get_by_role("button", name="{recipient_name}").click()  # inserted into the text
    await expect(page.get_by_label("Text under the name")).to_have_value(re.compile(r"\{recipient_name\}"))
    await expect(preview).not_to_have_attribute("src", before_src or "", timeout=30_000)
    await expect(status).to_have_text("Preview up to date.", timeout=30_000)
    after = await preview.screenshot()
    assert after != before, "the preview did not change"
    await shoot(page, "05-template-preview")

    # A bad colour is refused by the service, and said so where the preview is.
    await page.get_by_label("Accent colour", exact=True).fill("#12")
    await expect(status).to_contain_text("accent_color", timeout=30_000)
    await page.get_by_label("Accent colour", exact=True).fill("#aa3300")
    await expect(status).to_have_text("Preview up to date.", timeout=30_000)

    await page.get_by_role("button", name="Create template").click()
    await expect(page.get_by_role("status").first).to_have_text("Template “Acme blue” created.")
    await expect(page.locator("[data-progress-text]")).to_have_text("No certificates use this template yet.")
    await page.get_by_label("Title", exact=True).fill("Certificate of Mastery")
    await page.get_by_role("button", name="Save and regenerate").click()
    await expect(page.get_by_role("status").first).to_contain_text("saved as version 2")
    await expect(page.get_by_label("Title", exact=True)).to_have_value("Certificate of Mastery")
    await shoot(page, "05-template-saved")


async def test_journey_5_the_template_preview_works_without_javascript(ui_cluster: Cluster,
                                                                       browser: Browser) -> None:
    slug, _ = await tenant(ui_cluster, "plain")
    context = await browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, ui_cluster, f"/admin/learn/cert-templates/new?tenant={slug}")
        await page.get_by_label("Title", exact=True).fill("Certificate of Attendance")
        await page.get_by_role("button", name="Preview").click()
        preview = page.get_by_role("img", name="Preview of a sample certificate with this design")
        await expect(preview).to_have_attribute("src", re.compile("^data:image/png;base64,"), timeout=30_000)
        await expect(page.get_by_label("Title", exact=True)).to_have_value("Certificate of Attendance")  # kept
        status, body = await ui_cluster.admin("GET", f"/tenants/{slug}/cert-templates")
        assert status == 200 and body["data"] == []  # a preview saves nothing
    finally:
        await context.close()


async def test_journey_5_saving_a_template_shows_its_certificates_regenerating(ui_cluster: Cluster,
                                                                              page: Page) -> None:
    slug, key = await tenant(ui_cluster, "regen")
    status, body = await ui_cluster.admin("POST", f"/tenants/{slug}/cert-templates",
                                          json={"name": "House style", "title_text": "Certificate"})
    assert status == 201, body
    template = body["data"]
    await ui_cluster.user(slug, 5, "Ada Lovelace")
    course, (reading,) = await ui_cluster.course(key, slug, "engines", [READING], title="Engines",
                                                 certificate_template_id=template["id"])
    enrollment = await ui_cluster.enroll(key, 5, course["id"])
    await ui_cluster.complete_activity(key, enrollment["id"], reading)
    await ui_cluster.eventually(lambda: _certificates(ui_cluster, key, 5), timeout=60, message="the certificate")

    await sign_in(page, ui_cluster, f"/admin/learn/cert-templates/{template['id']}?tenant={slug}")
    progress = page.locator("[data-progress-text]")
    await expect(progress).to_have_text("All 1 certificate(s) show version 1.")
    await page.get_by_label("Title", exact=True).fill("Certificate of Achievement")
    await page.get_by_role("button", name="Save and regenerate").click()
    await expect(page.get_by_role("status").first).to_contain_text("saved as version 2")
    await expect(progress).to_have_text("All 1 certificate(s) show version 2.", timeout=60_000)
    await expect(page.locator("#regeneration progress")).to_have_js_property("value", 1)
    await shoot(page, "05-template-regenerated")


async def test_journey_6_a_certificate_is_found_and_revoked(ui_cluster: Cluster, page: Page) -> None:
    slug, key = await tenant(ui_cluster, "revoke")
    await ui_cluster.user(slug, 77, "Grace Hopper")
    course, (reading,) = await ui_cluster.course(key, slug, "compilers", [READING], title="Compilers")
    enrollment = await ui_cluster.enroll(key, 77, course["id"])
    await ui_cluster.complete_activity(key, enrollment["id"], reading)
    (certificate,) = await ui_cluster.eventually(
        lambda: _certificates(ui_cluster, key, 77), timeout=60, message="the certificate")

    await sign_in(page, ui_cluster, f"/admin/learn/certificates?tenant={slug}")
    await page.get_by_label("User id").fill("77")
    await page.get_by_role("button", name="Search").click()
    row = page.locator(f"#certificate-{certificate['id']}")
    await expect(row).to_contain_text("Grace Hopper")
    await expect(row).to_contain_text(certificate["verification_id"])
    await shoot(page, "06-certificates")

    await row.get_by_role("link", name="Grace Hopper").click()
    await expect(page.get_by_role("heading", name="Grace Hopper", level=1)).to_be_visible()
    page_image = page.get_by_role("img", name=re.compile("The certificate's PDF, first page"))
    await expect(page_image).to_have_js_property("complete", True)
    assert await page_image.evaluate("img => img.naturalWidth") > 100  # the PDF, rendered
    await page.get_by_role("button", name="Regenerate the PDF").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"The PDF was rebuilt (version {certificate['pdf']['version'] + 1}).")
    await page.get_by_role("button", name="Revoke the certificate").click()  # no reason: the browser asks
    await expect(page.get_by_label("Reason")).to_have_js_property("validity.valueMissing", True)
    await page.get_by_label("Reason").fill("Issued in error")
    await page.get_by_role("button", name="Revoke the certificate").click()
    await expect(page.get_by_role("status")).to_contain_text("is revoked")
    await expect(page.locator(".page-head .badge")).to_have_text("revoked")
    await expect(page.locator("dl.facts")).to_contain_text("Issued in error")
    await shoot(page, "06-certificate-revoked")

    status, body = await ui_cluster.api(key, "GET", f"/certificates/{certificate['id']}")
    assert status == 200 and body["data"]["is_revoked"] is True
    assert body["data"]["revoked_reason"] == "Issued in error"


async def _certificates(cluster: Cluster, key: str, user_id: int) -> list[dict[str, Any]] | None:
    found = await cluster.certificates_of(key, user_id=user_id)
    return found or None


async def test_cohorts_are_created_and_their_courses_changed(ui_cluster: Cluster, page: Page) -> None:
    slug, key = await tenant(ui_cluster, "cohort")
    first, _ = await ui_cluster.course(key, slug, "first", [READING], title="First course")
    second, _ = await ui_cluster.course(key, slug, "second", [READING], title="Second course")
    await sign_in(page, ui_cluster, f"/admin/learn/cohorts?tenant={slug}")
    await page.get_by_label("Name").fill("Spring intake")
    await page.get_by_label("First course").check()
    await page.get_by_role("button", name="Create cohort").click()
    await expect(page.get_by_role("status")).to_have_text("Cohort “Spring intake” created with 1 course(s).")
    await shoot(page, "cohorts")
    await page.get_by_role("link", name="Spring intake").click()
    await page.get_by_label("Second course").check()
    await page.get_by_role("button", name="Save cohort").click()
    await expect(page.get_by_role("status")).to_have_text("Cohort “Spring intake” saved: 2 course(s).")
    _, body = await ui_cluster.admin("GET", f"/tenants/{slug}/cohorts")
    (cohort,) = body["data"]
    assert sorted(cohort["course_ids"]) == sorted([first["id"], second["id"]])
