"""The admin UI's key form makes per-course keys (issue 18, ADR 0019): the key reaches only the courses typed in.

Headless Chromium against the whole system (every service its own process, PostgreSQL, RabbitMQ).
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.support.cluster import Cluster
from tests.ui.ui_support import shoot, sign_in, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_a_key_limited_to_one_course_from_the_key_form(ui_cluster: Cluster, page: Page) -> None:
    slug = unique_slug("ckeys")
    full_key = await ui_cluster.tenant_with_key(slug)
    mine, _ = await ui_cluster.course(full_key, slug, "mine", [{"title": "Read", "kind": "reading"}])
    other, _ = await ui_cluster.course(full_key, slug, "other", [{"title": "Read", "kind": "reading"}])
    await sign_in(page, ui_cluster)
    await page.goto(f"{ui_cluster.gateway_url}/admin/api-keys?tenant={slug}")
    await expect(page.get_by_role("heading", name="API keys")).to_be_visible()

    # Not course ids: the form says so and keeps what was typed; no key is made.
    await page.get_by_label("Name", exact=True).fill("Partner of one course")
    await page.get_by_label("Courses").fill("12, twelve")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_role("alert")).to_contain_text("Courses: give course ids")
    await expect(page.get_by_label("Courses")).to_have_value("12, twelve")
    status, body = await ui_cluster.admin("GET", f"/tenants/{slug}/api-keys")
    assert [k["name"] for k in body["data"]] == ["e2e"], body

    await page.get_by_label("Courses").fill(str(mine["id"]))
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_role("heading", name="Key created")).to_be_visible()
    key = await page.get_by_label("Partner of one course").input_value()

    status, body = await ui_cluster.api(key, "GET", "/courses")
    assert status == 200 and [c["id"] for c in body["data"]] == [mine["id"]], body
    status, body = await ui_cluster.api(key, "GET", f"/courses/{other['id']}")
    assert status == 404 and body["error"]["code"] == "course_not_found", body

    await page.get_by_role("link", name="Done: back to the keys").click()
    row = page.locator("#keys tbody tr").first
    await expect(row).to_contain_text("Partner of one course")
    await expect(row.locator("td[data-label=Courses]")).to_have_text(str(mine["id"]))
    await expect(page.locator("#keys tbody tr").nth(1).locator("td[data-label=Courses]")).to_have_text("all")
    await shoot(page, "18-api-keys-per-course")
