"""Browser journeys 1 and 2: an operator signs in, and creates a read-only key that works against the API.

Headless Chromium against the whole system (every service its own process, PostgreSQL, RabbitMQ).
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from services.gateway.ui.security import SESSION_COOKIE
from tests.support.cluster import Cluster
from tests.ui.ui_support import shoot, sign_in, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_journey_1_an_operator_signs_in_with_the_admin_token(ui_cluster: Cluster, page: Page) -> None:
    await page.goto(ui_cluster.gateway_url + "/admin")
    await expect(page).to_have_url(re.compile(r"/admin/login\?next=%2Fadmin$"))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await shoot(page, "01-sign-in")

    await page.get_by_label("Admin token").fill("not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That is not the admin token.")

    await page.get_by_label("Admin token").fill(ui_cluster.admin_token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(ui_cluster.gateway_url + "/admin")
    await expect(page.get_by_role("heading", name="Tenants", exact=True)).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await shoot(page, "01-tenants")


async def test_journey_1_the_session_cookie_has_its_flags_in_the_browser(ui_cluster: Cluster, page: Page) -> None:
    await sign_in(page, ui_cluster)
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/admin"
    assert session["secure"] is False  # plain HTTP in the test; Secure over HTTPS (see test_ui_safety)
    assert await page.evaluate("document.cookie") == ""  # scripts cannot read it


async def test_journey_1_sign_out_returns_to_the_sign_in_page(ui_cluster: Cluster, page: Page) -> None:
    await sign_in(page, ui_cluster)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(ui_cluster.gateway_url + "/admin")
    await expect(page).to_have_url(re.compile(r"/admin/login"))


async def test_journey_2_a_read_only_key_lists_but_cannot_write(ui_cluster: Cluster, page: Page) -> None:
    slug = unique_slug("keys")
    await sign_in(page, ui_cluster)

    # A tenant on a plan with API access, from the tenants page.
    form = page.locator("#new-tenant")
    await form.get_by_label("Slug").fill(slug)
    await form.get_by_label("Name").fill("Keys & Co")
    await form.get_by_label("Plan").select_option("pro")
    await form.get_by_role("button", name="Create tenant").click()
    await expect(page.get_by_role("status")).to_have_text(f"Tenant {slug} created.")
    await page.locator(f"#tenant-{slug}").get_by_role("link", name="API keys").click()
    await expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    await shoot(page, "02-api-keys-empty")

    # Only learn:read, ticked by hand.
    await page.get_by_label("Name", exact=True).fill("Reporting dashboard")
    await page.get_by_label("learn:read").check()
    await page.get_by_label("learn:write").uncheck()
    await page.get_by_label("learn:cohorts:grant").uncheck()
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_role("heading", name="Key created")).to_be_visible()
    await expect(page.get_by_text("You will not see it again")).to_be_visible()
    await expect(page.get_by_role("button", name="Copy")).to_be_visible()
    key = await page.get_by_label("Reporting dashboard").input_value()
    assert key.startswith("mc_live_") and len(key) >= 48
    await shoot(page, "02-api-key-created")

    status, body = await ui_cluster.api(key, "GET", "/courses")
    assert status == 200, body
    assert body["data"] == [] and body["next_cursor"] is None
    status, body = await ui_cluster.api(key, "POST", "/courses", json={"slug": "nope", "title": "Nope"})
    assert status == 403, body
    assert body["error"]["code"] == "insufficient_scope"

    # The list shows the key with its prefix and scopes, never the key itself.
    await page.get_by_role("link", name="Done: back to the keys").click()
    row = page.locator("#keys tbody tr").first
    await expect(row).to_contain_text("Reporting dashboard")
    await expect(row).to_contain_text(key[:12])
    await expect(row).to_contain_text("learn:read")
    await expect(row).not_to_contain_text("learn:write")
    assert key not in await page.content()
    await shoot(page, "02-api-keys")

    # Revoking asks first, then the key stops working.
    await row.get_by_role("link", name="Revoke").click()
    await expect(page.get_by_role("heading", name="Revoke “Reporting dashboard”?")).to_be_visible()
    await shoot(page, "02-api-key-revoke")
    await page.get_by_role("button", name="Revoke the key").click()
    await expect(page.get_by_role("status")).to_contain_text("is revoked")
    await expect(page.locator("#keys tbody tr").first).to_contain_text("revoked")

    async def refused() -> bool:
        status, _ = await ui_cluster.api(key, "GET", "/courses")
        return status == 401

    await ui_cluster.eventually(refused, timeout=6, message="the revoked key to be refused")


async def test_journey_2_the_plan_can_be_changed_from_the_tenants_page(ui_cluster: Cluster, page: Page) -> None:
    slug = unique_slug("plans")
    status, _ = await ui_cluster.admin("POST", "/tenants", json={"slug": slug, "name": "Plans", "plan": "free"})
    assert status == 201
    await sign_in(page, ui_cluster)
    row = page.locator(f"#tenant-{slug}")
    await expect(row).to_contain_text("No public API on this plan.")
    await row.get_by_label("Plan of Plans").select_option("creator_plus")
    await row.get_by_role("button", name="Change plan").click()
    await expect(page.get_by_role("status")).to_have_text("Plans is now on the Creator Plus plan.")
    status, body = await ui_cluster.admin("GET", f"/tenants/{slug}")
    assert body["data"]["plan"] == "creator_plus"
