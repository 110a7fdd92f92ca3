"""Browser journeys of tenant staff (ADR 0021): an owner invites an author; the author signs in on the tenant's
host, edits a course on their team and is refused on another (UI and admin API); a tenant-B session is refused on
tenant A; a viewer cannot write anything.

Headless Chromium against the whole system (every service its own process, PostgreSQL, RabbitMQ). Tenant hosts are
``<slug>.localhost:<port>`` (``LEARN_BASE_DOMAIN`` defaults to ``localhost``), mapped to 127.0.0.1 for Chromium.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services.gateway.ui.security import SESSION_COOKIE
from tests.support.cluster import Cluster
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.ui.ui_support import DESKTOP, shoot, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
PASSWORD = "a long enough password"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tenant_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP *.localhost 127.0.0.1"])
        yield chromium
        await chromium.close()


async def tab(browser: Browser) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(20_000)
    return context, await context.new_page()


def host(cluster: Cluster, slug: str) -> str:
    return f"http://{slug}.localhost:{urlsplit(cluster.gateway_url).port}"


async def staff_api(cluster: Cluster, slug: str, email: str, password: str = PASSWORD) -> str:
    status, body = await cluster.request("POST", f"/admin/api/v1/tenants/{slug}/sessions",
                                         json={"email": email, "password": password})
    assert status == 201, body
    return str(body["data"]["token"])


async def member_by_api(cluster: Cluster, slug: str, email: str, role: str) -> None:
    """A staff member made by the operator through the admin API (the link accepted through the API too)."""
    status, body = await cluster.admin("POST", f"/tenants/{slug}/staff", json={"email": email, "name": email,
                                                                                "role": role})
    assert status == 201, body
    token = body["data"]["invitation"]["url"].split("token=")[1]
    status, body = await cluster.request("POST", "/admin/api/v1/staff-links/accept",
                                         json={"token": token, "password": PASSWORD})
    assert status == 200, body


async def ui_sign_in(page: Page, base: str, email: str) -> None:
    await page.goto(base + "/admin/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r".*/admin/learn/courses.*"))


async def course(cluster: Cluster, slug: str, course_slug: str) -> dict[str, Any]:
    status, body = await cluster.admin("POST", f"/tenants/{slug}/courses", json={"slug": course_slug,
                                                                                  "title": course_slug.upper()})
    assert status == 201, body
    return dict(body["data"])


async def test_an_owner_invites_an_author_who_edits_only_their_courses(ui_cluster: Cluster,
                                                                       tenant_browser: Browser) -> None:
    slug = unique_slug("staff")
    status, body = await ui_cluster.admin("POST", "/tenants", json={"slug": slug, "name": "Staff & Co",
                                                                    "plan": "pro"})
    assert status == 201, body
    base = host(ui_cluster, slug)
    x = await course(ui_cluster, slug, "course-x")
    y = await course(ui_cluster, slug, "course-y")

    # The operator invites the owner (no mail configured: the link comes back); the owner opens it in a browser.
    status, body = await ui_cluster.admin("POST", f"/tenants/{slug}/staff",
                                          json={"email": "olga@staff.test", "name": "Olga Owner", "role": "owner"})
    assert status == 201, body
    link = body["data"]["invitation"]["url"]
    assert link.startswith(base + "/admin/accept?token=")
    owner_ctx, owner = await tab(tenant_browser)
    await owner.goto(link)
    await expect(owner.get_by_role("heading", name="Welcome to Staff & Co")).to_be_visible()
    await owner.get_by_label("New password").fill(PASSWORD)
    await owner.get_by_label("The same again").fill(PASSWORD)
    await owner.get_by_role("button", name="Set the password").click()
    await expect(owner.get_by_role("status")).to_contain_text("Password set for olga@staff.test")
    await owner.get_by_label("Email").fill("olga@staff.test")
    await owner.get_by_label("Password").fill(PASSWORD)
    await owner.get_by_role("button", name="Sign in").click()
    await expect(owner.get_by_role("heading", name="Courses", exact=True)).to_be_visible()

    # The owner invites an author from the Staff page: the link is shown once.
    await owner.get_by_role("navigation", name="Main").get_by_role("link", name="Staff").click()
    invite = owner.locator("#invite")
    await invite.get_by_label("Email").fill("arno@staff.test")
    await invite.get_by_label("Name").fill("Arno Author")
    await invite.get_by_label("Role").select_option("author")
    await invite.get_by_role("button", name="Invite").click()
    await expect(owner.get_by_role("heading", name="Invitation for arno@staff.test")).to_be_visible()
    author_link = await owner.locator("#staff-link").input_value()
    await shoot(owner, "staff-invitation")

    # The owner puts the author on course X's team, on the course page.
    await owner.goto(base + f"/admin/learn/courses/{x['id']}")
    team = owner.locator("#team")
    picker = team.get_by_label("Add a staff member")
    value = await picker.locator("option", has_text="arno@staff.test").get_attribute("value")
    assert value
    await picker.select_option(value)
    await team.get_by_role("button", name="Add to the team").click()
    await expect(owner.locator("#team")).to_contain_text("Arno Author")
    await shoot(owner, "staff-course-team")

    # The author accepts the invitation and signs in on the tenant's host.
    author_ctx, author = await tab(tenant_browser)
    await author.goto(author_link)
    await author.get_by_label("New password").fill(PASSWORD)
    await author.get_by_label("The same again").fill(PASSWORD)
    await author.get_by_role("button", name="Set the password").click()
    await ui_sign_in(author, base, "arno@staff.test")
    await expect(author.locator(".tenant-current")).to_contain_text("author")

    # Course X (on the team): saved. Course Y: refused, nothing changed.
    await author.goto(base + f"/admin/learn/courses/{x['id']}")
    await author.locator("#details").get_by_label("Title", exact=True).fill("X, edited by the author")
    await author.locator("#details").get_by_role("button", name="Save details").click()
    await expect(author.get_by_role("status")).to_have_text("Course details saved.")
    await author.goto(base + f"/admin/learn/courses/{y['id']}")
    await author.locator("#details").get_by_label("Title", exact=True).fill("Y, edited by the author")
    await author.locator("#details").get_by_role("button", name="Save details").click()
    await expect(author.locator("#details")).to_contain_text("not on this course's team")
    await shoot(author, "staff-author-refused")
    status, body = await ui_cluster.admin("GET", f"/tenants/{slug}/courses/{y['id']}")
    assert body["data"]["title"] == "COURSE-Y"

    # The same rule on the admin API, with the author's own session.
    token = await staff_api(ui_cluster, slug, "arno@staff.test")
    status, body = await ui_cluster.request("POST", f"/admin/api/v1/tenants/{slug}/courses/{y['id']}", token=token,
                                            json={"title": "Y via the API"})
    assert status == 403 and body["error"]["code"] == "not_on_course_team"
    status, body = await ui_cluster.request("POST", f"/admin/api/v1/tenants/{slug}/courses/{x['id']}/modules",
                                            token=token, json={"title": "A module by the author"})
    assert status == 201, body

    # The audit log shows who did what.
    await owner.goto(base + "/admin/audit")
    await expect(owner.get_by_role("table")).to_contain_text("arno@staff.test")
    await expect(owner.get_by_role("table")).to_contain_text(f"/courses/{x['id']}")
    await owner_ctx.close()
    await author_ctx.close()


async def test_a_session_of_tenant_b_is_refused_on_tenant_a(ui_cluster: Cluster, tenant_browser: Browser) -> None:
    a, b = unique_slug("tenant-a"), unique_slug("tenant-b")
    for slug in (a, b):
        status, body = await ui_cluster.admin("POST", "/tenants", json={"slug": slug, "name": slug, "plan": "pro"})
        assert status == 201, body
    await member_by_api(ui_cluster, b, "bea@b.test", "owner")
    context, page = await tab(tenant_browser)
    await ui_sign_in(page, host(ui_cluster, b), "bea@b.test")
    secret = next(c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE)

    # B's session on A's host: planted as a cookie there, it signs in nobody.
    await context.add_cookies([{"name": SESSION_COOKIE, "value": secret, "domain": f"{a}.localhost",
                                "path": "/admin"}])
    for path in ("/admin", "/admin/learn/courses", "/admin/staff", "/admin/api-keys", "/admin/audit"):
        await page.goto(host(ui_cluster, a) + path)
        await expect(page).to_have_url(re.compile(r"/admin/login"))
    # ... and on the platform host; and B's host does not show A's pages.
    await context.add_cookies([{"name": SESSION_COOKIE, "value": secret, "url": ui_cluster.gateway_url}])
    await page.goto(ui_cluster.gateway_url + "/admin")
    await expect(page).to_have_url(re.compile(r"/admin/login"))
    response = await page.goto(host(ui_cluster, b) + f"/admin/learn/courses?tenant={a}")
    assert response is not None and response.status == 404
    # The admin API: every A path refuses B's session.
    for method, path in (("GET", f"/tenants/{a}/courses"), ("GET", f"/tenants/{a}/staff"),
                         ("POST", f"/tenants/{a}/courses"), ("GET", f"/tenants/{a}")):
        status, body = await ui_cluster.request(method, "/admin/api/v1" + path, token=secret, json={})
        assert status == 404 and body["error"]["code"] == "tenant_not_found", (method, path, status)
    await context.close()


async def test_a_viewer_cannot_write_anything(ui_cluster: Cluster, tenant_browser: Browser) -> None:
    slug = unique_slug("viewer")
    status, body = await ui_cluster.admin("POST", "/tenants", json={"slug": slug, "name": "View Co", "plan": "pro"})
    assert status == 201, body
    x = await course(ui_cluster, slug, "seen")
    await member_by_api(ui_cluster, slug, "vic@view.test", "viewer")
    base = host(ui_cluster, slug)
    context, page = await tab(tenant_browser)
    await ui_sign_in(page, base, "vic@view.test")

    await page.goto(base + f"/admin/learn/courses/{x['id']}")
    await expect(page.locator("#details").get_by_label("Title", exact=True)).to_have_value("SEEN")
    await page.locator("#details").get_by_label("Title", exact=True).fill("Changed by a viewer")
    await page.locator("#details").get_by_role("button", name="Save details").click()
    await expect(page.locator("#details")).to_contain_text("cannot change")
    await page.goto(base + "/admin/api-keys")
    await page.get_by_label("Name", exact=True).fill("A viewer's key")
    await page.get_by_label("learn:read").check()
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator("#new-key")).to_contain_text("cannot change")
    await page.goto(base + "/admin/learn/cohorts")
    await page.locator("#new-cohort").get_by_label("Name").fill("A viewer's cohort")
    await page.locator("#new-cohort").get_by_label("SEEN").check()
    await page.locator("#new-cohort").get_by_role("button").click()
    await expect(page.locator("#new-cohort")).to_contain_text("cannot change")
    await page.goto(base + "/admin/staff")
    await expect(page.locator("#invite")).to_have_count(0)
    await shoot(page, "staff-viewer")

    status, body = await ui_cluster.admin("GET", f"/tenants/{slug}/courses/{x['id']}")
    assert body["data"]["title"] == "SEEN"
    status, body = await ui_cluster.admin("GET", f"/tenants/{slug}/api-keys")
    assert body["data"] == []
    status, body = await ui_cluster.admin("GET", f"/tenants/{slug}/audit-log")
    assert body["data"] == [] or all(e["actor"] == "operator" for e in body["data"])
    await context.close()
