"""Browser journey: an operator adds a webhook endpoint, sends a test message that fails twice before it is
delivered, reads the three attempts in the delivery log, replays the message and rotates the signing secret.

Headless Chromium against the whole system; the endpoint is a local HTTPS receiver (tests/support).
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect
from standardwebhooks.webhooks import Webhook

from tests.support.cluster import Cluster
from tests.support.webhook_receiver import Receiver
from tests.ui.ui_support import shoot, sign_in, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_journey_webhooks_delivery_log_replay_rotate_and_test(ui_cluster: Cluster, receiver: Receiver,
                                                                    page: Page) -> None:
    c = ui_cluster
    slug, other = unique_slug("hooks"), unique_slug("hooksother")
    for s in (slug, other):
        status, body = await c.admin("POST", "/tenants", json={"slug": s, "name": s.title(), "plan": "pro"})
        assert status == 201, body
    path = f"/ui/{slug}"
    receiver.fail_first[path] = 2  # 500, 500, then 204
    await sign_in(page, c, f"/admin/learn/webhooks?tenant={slug}")
    await expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    await expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()

    # a refused destination is explained beside the form, and what was typed stays
    form = page.locator("#new-endpoint")
    await form.get_by_label("URL").fill("https://127.0.0.1/hook")
    await form.get_by_role("button", name="Create endpoint").click()
    await expect(page.locator("#new-endpoint-error")).to_contain_text("Not saved")
    await expect(page.locator("#new-endpoint").get_by_label("URL")).to_have_value("https://127.0.0.1/hook")

    await form.get_by_label("URL").fill(receiver.url(path))
    await form.get_by_label("Description").fill("HR system")
    # certificate events only: this journey's own admin writes emit audit.recorded (ADR 0021), which would take the
    # planned failures; a test message ignores the filter
    await form.get_by_label("Event types").fill("certificate.*")
    await form.get_by_role("button", name="Create endpoint").click()
    await expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
    secret = await page.locator("#signing-secret").input_value()
    assert secret.startswith("whsec_")
    await shoot(page, "webhooks-secret")
    await page.get_by_role("link", name="Done: to the endpoint").click()
    await expect(page.get_by_role("heading", name=receiver.url(path))).to_be_visible()
    endpoint_id = int(re.search(r"/webhooks/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    assert secret not in await page.content()

    # a test message: two failures, then delivered; the log shows the three attempts
    await page.get_by_role("button", name="Send a test message").click()
    await expect(page.get_by_role("status")).to_contain_text("webhook.test message")

    async def delivered() -> dict | None:
        status, body = await c.admin("GET", f"/tenants/{slug}/webhook-endpoints/{endpoint_id}/messages")
        assert status == 200, body
        # the test message, not the audit.recorded events of this journey's own admin writes (ADR 0021)
        tests = [m for m in body["data"] if m["event_type"] == "webhook.test"]
        return tests[0] if tests and tests[0]["status"] == "delivered" else None

    message = await c.eventually(delivered, timeout=30, message="the test message delivered")
    await page.reload()
    row = page.locator(f"#message-{message['id']}")
    await expect(row).to_contain_text("webhook.test")
    await expect(row).to_contain_text(message["webhook_id"])
    await expect(row).to_contain_text("delivered")
    attempts = row.locator("tr.attempt")
    await expect(attempts).to_have_count(3)
    for i, code in enumerate(("500", "500", "204")):
        await expect(attempts.nth(i)).to_contain_text(code)
        await expect(attempts.nth(i)).to_contain_text(re.compile(r"\d+ ms"))
    await expect(attempts.nth(0)).to_contain_text("planned failure")  # the answer's first bytes
    await shoot(page, "webhooks-delivery-log")
    Webhook(secret).verify(receiver.at(path)[-1].body, receiver.at(path)[-1].headers)

    # replay: the receiver gets it again, with the same webhook-id
    def copies() -> int:  # deliveries of the test message (the journey's audit.recorded events arrive too)
        return sum(1 for r in receiver.at(path) if r.headers["webhook-id"] == message["webhook_id"])

    before = copies()
    await row.get_by_role("button", name=re.compile("Replay")).click()
    await expect(page.get_by_role("status")).to_contain_text("same webhook-id")

    async def replayed() -> bool:
        return copies() > before

    await c.eventually(replayed, timeout=30, message="the replayed message, with the same webhook-id")

    # rotate: a new secret, shown once; the previous one still signs during the overlap
    await page.get_by_role("button", name="Rotate the signing secret").click()
    await expect(page.get_by_role("heading", name="Secret rotated")).to_be_visible()
    await expect(page.get_by_text("The previous secret keeps signing")).to_be_visible()
    rotated = await page.locator("#signing-secret").input_value()
    assert rotated.startswith("whsec_") and rotated != secret

    # the list shows the endpoint; another tenant's pages do not
    await page.goto(f"{c.gateway_url}/admin/learn/webhooks?tenant={slug}")
    await expect(page.locator(f"#endpoint-{endpoint_id}")).to_contain_text("HR system")
    await shoot(page, "webhooks-list")
    response = await page.goto(f"{c.gateway_url}/admin/learn/webhooks/{endpoint_id}?tenant={other}")
    assert response is not None and response.status == 404
    await page.goto(f"{c.gateway_url}/admin/learn/webhooks?tenant={other}")
    await expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
