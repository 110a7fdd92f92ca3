"""Issue 20 in the admin UI: a package with no SCO says so clearly, and the activity editor shows which items track
progress and which do not (and offers "Complete when opened" for the untracked ones).

Headless Chromium against the whole system (every service its own process, PostgreSQL, RabbitMQ).
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.scorm.test_scorm_service_packages import tiny_package
from tests.support.cluster import Cluster
from tests.support.scorm_packages import FIXTURES
from tests.ui.ui_support import shoot, sign_in, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

ASSETS_ONLY = FIXTURES / "golf_scorm2004_3rd_onefilepersco_assets_only.zip"


async def test_the_editor_shows_which_items_track_and_an_asset_only_package_warns(ui_cluster: Cluster,
                                                                                  page: Page) -> None:
    c = ui_cluster
    slug = unique_slug("track")
    key = await c.tenant_with_key(slug)
    assets = await c.upload_scorm(slug, ASSETS_ONLY, title="Handouts")
    tracked = await c.upload_scorm(slug, tiny_package(), title="Tracked")
    assert (assets["status"], tracked["status"]) == ("ready", "ready")
    status, body = await c.api(key, "GET", f"/scorm-packages/{assets['id']}")
    assert status == 200 and body["data"]["scos"] == []
    handout = next(a for a in body["data"]["assets"] if a["identifier"] == "havingfun_quiz_item")

    # The package page: no SCO, said at the top, and the untracked items listed as such.
    await sign_in(page, c, f"/admin/learn/scorm/{assets['id']}?tenant={slug}")
    notice = page.locator("#no-sco")
    await expect(notice).to_contain_text("This package has no SCO.")
    await expect(notice).to_contain_text("its 18 launchable item(s) are assets")
    await expect(page.locator("#assets li")).to_have_count(18)
    await expect(page.locator("#assets")).to_contain_text("havingfun_quiz_item")
    await expect(page.locator("#assets button", has_text="Preview")).to_have_count(18)  # an asset previews too
    await shoot(page, "20-scorm-assets-only")
    await page.goto(c.gateway_url + f"/admin/learn/scorm/{tracked['id']}?tenant={slug}")
    await expect(page.get_by_role("heading", name="SCOs (track progress)")).to_be_visible()
    await expect(page.locator("#no-sco")).to_have_count(0)

    # A draft course with a tracked SCO; then an untracked item added in the editor, not completed when opened.
    course, _ = await c.course(key, slug, "tracking", [
        {"title": "Quiz", "kind": "scorm", "required": True, "scorm_package_id": tracked["id"]}], publish=False)
    course_url = c.gateway_url + f"/admin/learn/courses/{course['id']}?tenant={slug}"
    value = f"{assets['id']}|{handout['identifier']}"

    async def offered() -> bool:
        await page.goto(course_url)
        return await page.locator(f"option[value='{value}']").count() > 0

    await c.eventually(offered, timeout=30, message="the untracked item in the picker")
    await expect(page.locator(f"option[value='{value}']").first).to_have_text(
        f"{handout['title']} (untracked: an asset)")
    quiz = page.locator("#structure li[id^='activity-']").first
    await expect(quiz.locator("p.launched")).to_have_text(
        "SCO: Tracked › Only SCO (the package's first) · tracks progress and scores")
    await page.get_by_text("Add an activity").click()
    form = page.locator("details[open] form")
    await form.get_by_label("Title").fill("Handout")
    await form.get_by_label("Kind").select_option("scorm")
    await form.get_by_label("SCO (SCORM activities)").select_option(value)
    checkbox = form.get_by_label("Complete when opened (untracked items)")
    await expect(checkbox).to_be_checked()  # the default
    await checkbox.uncheck()
    await form.get_by_label("Required for completion").uncheck()
    await form.get_by_role("button", name="Add activity").click()
    await expect(page.get_by_role("status")).to_have_text("Activity “Handout” added.")
    added = page.locator("#structure li[id^='activity-']").nth(1)
    await expect(added.locator("p.launched")).to_have_text(
        f"Untracked item: Handouts › {handout['title']} · untracked (an asset): opening it does not complete it")
    await expect(added.locator("p.launched")).to_have_attribute("data-tracking", "untracked")
    await shoot(page, "20-course-untracked-activity")
    activity_id = int(re.sub(r"\D", "", await added.get_attribute("id") or ""))
    status, body = await c.admin("GET", f"/tenants/{slug}/activities/{activity_id}")
    assert status == 200, body
    assert (body["data"]["sco_identifier"], body["data"]["complete_on_launch"]) == (handout["identifier"], False)

    # Checked again in the editor: back to the default (completed when opened).
    await added.get_by_text("Edit").click()
    editor = added.locator("details[open] form")
    await expect(editor.get_by_label("Complete when opened (untracked items)")).not_to_be_checked()
    await editor.get_by_label("Complete when opened (untracked items)").check()
    await editor.get_by_role("button", name="Save activity").click()
    await expect(page.get_by_role("status")).to_have_text("Activity “Handout” saved.")
    await expect(page.locator(f"#activity-{activity_id} p.launched")).to_contain_text("completed when opened")
    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_role("status")).to_have_text("“Tracking” is published (version 1).")


async def test_a_course_naming_an_archived_package_says_so_and_is_not_published(ui_cluster: Cluster,
                                                                               page: Page) -> None:
    c = ui_cluster
    slug = unique_slug("archived")
    key = await c.tenant_with_key(slug)
    package = await c.upload_scorm(slug, tiny_package(**{"old.txt": b"retired"}), title="Retired")
    assert package["status"] == "ready", package
    course, _ = await c.course(key, slug, "retired", [
        {"title": "Old chapter", "kind": "scorm", "required": True, "scorm_package_id": package["id"]}],
        publish=False)
    status, body = await c.api(key, "DELETE", f"/scorm-packages/{package['id']}")  # a draft does not hold it
    assert status == 200 and body["data"]["archived_at"] is not None, body

    await sign_in(page, c, f"/admin/learn/courses/{course['id']}?tenant={slug}")
    await expect(page.locator("#structure li[id^='activity-'] p.launched")).to_have_text(
        "SCO: Retired › its first SCO (archived: point the activity at another package)")
    await expect(page.locator("optgroup[label^='Retired']")).to_have_count(0)  # not offered any more
    # The activity's editor keeps its current choice (no SCO named: the package's first), shown as not ready.
    await expect(page.locator(f"option[value='{package['id']}|']")).to_have_text(
        f"Package {package['id']} › its first SCO (not ready)")
    await page.get_by_role("button", name="Publish").click()
    await expect(page.locator("#lifecycle [role=alert]")).to_contain_text(
        f"SCORM package {package['id']}, which is archived")
    await shoot(page, "20-course-archived-package")
