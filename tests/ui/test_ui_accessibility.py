"""Every page: labelled controls, unique ids, named buttons and links; keyboard use with a visible focus."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.support.cluster import Cluster
from tests.support.scorm_packages import FIXTURES
from tests.support.webhook_receiver import Receiver
from tests.ui.ui_support import sign_in, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

AUDIT = """() => {
  const problems = [];
  const seen = {};
  document.querySelectorAll('[id]').forEach(e => { seen[e.id] = (seen[e.id] || 0) + 1; });
  Object.entries(seen).forEach(([id, n]) => { if (n > 1) problems.push('duplicate id ' + id); });
  document.querySelectorAll('input, select, textarea').forEach(c => {
    if (c.type === 'hidden') return;
    const named = (c.labels && c.labels.length) || c.getAttribute('aria-label') || c.getAttribute('aria-labelledby');
    if (!named) problems.push('unlabelled ' + c.outerHTML.slice(0, 160));
  });
  document.querySelectorAll('button, a[href]').forEach(b => {
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('nameless ' + b.outerHTML.slice(0, 160));
  });
  document.querySelectorAll('[aria-describedby]').forEach(e => {
    e.getAttribute('aria-describedby').split(' ').forEach(id => {
      if (!document.getElementById(id)) problems.push('describedby without target ' + id);
    });
  });
  if (document.querySelectorAll('h1').length !== 1) problems.push('h1 count ' + document.querySelectorAll('h1').length);
  if (!document.documentElement.lang) problems.push('no lang');
  return problems;
}"""


async def test_every_page_labels_its_controls_and_names_its_buttons(ui_cluster: Cluster, receiver: Receiver,
                                                                    page: Page) -> None:
    slug = unique_slug("a11y")
    key = await ui_cluster.tenant_with_key(slug)
    package = await ui_cluster.upload_scorm(slug, FIXTURES / "golf_scorm12_singlesco.zip")
    course, _ = await ui_cluster.course(key, slug, "audit", [{"title": "Read", "kind": "reading", "required": True}],
                                        publish=False)
    status, cohort = await ui_cluster.admin("POST", f"/tenants/{slug}/cohorts",
                                            json={"name": "Audit", "course_ids": [course["id"]]})
    assert status == 201, cohort
    status, endpoint = await ui_cluster.admin("POST", f"/tenants/{slug}/webhook-endpoints",
                                              json={"url": receiver.url(f"/a11y/{slug}")})
    assert status == 201, endpoint
    hook = endpoint["data"]["id"]
    status, sent = await ui_cluster.admin("POST", f"/tenants/{slug}/webhook-endpoints/{hook}/test")
    assert status == 202, sent
    pages = ["/admin", "/admin/api-keys", "/admin/learn/courses", f"/admin/learn/courses/{course['id']}",
             "/admin/learn/scorm", "/admin/learn/scorm/new", f"/admin/learn/scorm/{package['id']}",
             "/admin/learn/cert-templates", "/admin/learn/cert-templates/new", "/admin/learn/certificates",
             "/admin/learn/cohorts", f"/admin/learn/cohorts/{cohort['data']['id']}",
             "/admin/learn/webhooks", f"/admin/learn/webhooks/{hook}", "/admin/logout"]
    await sign_in(page, ui_cluster)
    for path in pages:
        await page.goto(ui_cluster.gateway_url + path + f"?tenant={slug}")
        for details in await page.locator("details").all():  # the hidden editors count too
            await details.evaluate("d => d.open = true")
        assert await page.evaluate(AUDIT) == [], path


async def test_an_operator_can_sign_in_and_move_around_with_the_keyboard(ui_cluster: Cluster, page: Page) -> None:
    await page.goto(ui_cluster.gateway_url + "/admin/login")
    await expect(page.get_by_label("Admin token")).to_be_focused()  # autofocus
    await page.keyboard.type(ui_cluster.admin_token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Tenants", exact=True)).to_be_visible()

    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    assert await skip.evaluate("e => getComputedStyle(e).boxShadow") != "none"  # the focus is visible
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()

    await page.keyboard.press("Shift+Tab")  # back into the navigation, then along it
    for _ in range(12):
        if await page.evaluate("document.activeElement.textContent.trim()") == "Courses":
            break
        await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(ui_cluster.gateway_url + "/admin/learn/courses")
    await expect(page.get_by_role("heading", name="Choose a tenant")).to_be_visible()
