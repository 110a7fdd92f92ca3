"""A new version of a package, in headless Chromium through the whole system (issue 20): a learner mid-attempt
finishes on the version they started, new launches get the new one.

The package is the versioned SCO of ``tests/fixtures/scorm/versioned_sco`` (our own SCORM 1.2 SCO, README.md
beside it): the page shows its version, the entry the LMS gave and the page it saved. Every service runs as its
own process behind the real gateway; packages go in through the public API (``POST /scorm-packages`` and
``POST /scorm-packages/{id}/versions`` with a ``learn:write`` key), launches through the public API, and Chromium
opens the launch URL on the content origin as a learner's browser would. Screenshots go to ``test-output/scorm/``.
"""

from __future__ import annotations

import io
import secrets
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, FrameLocator, Page, async_playwright, expect

from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv
from tests.support.scorm_packages import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "scorm"
SCO = FIXTURES / "versioned_sco"
PACKAGES = "/api/v1/learn/scorm-packages"


def versioned_package(version: str) -> bytes:
    """The versioned SCO with ``v<version>/version.js`` as its ``version.js``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("imsmanifest.xml", "index.html", "versioned_sco.js"):
            archive.write(SCO / name, name)
        archive.write(SCO / f"v{version}" / "version.js", "version.js")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def module_env(postgres_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> TestEnv:
    tmp = tmp_path_factory.mktemp("versions-browser")
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp / "data")
    env.data_dir.mkdir()
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(module_env: TestEnv) -> AsyncIterator[Cluster]:
    try:
        async with running_cluster(module_env, module_env.data_dir.parent / "cluster") as c:
            yield c
    finally:
        await module_env.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def upload(c: Cluster, key: str, path: str, data: bytes) -> dict[str, Any]:
    """POST a zip through the public API (202), then wait until the import has ended."""
    assert c.http is not None
    async with c.http.post(c.gateway_url + path, data=data,
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"}) as resp:
        body = await resp.json()
        assert resp.status == 202, body

    async def ended() -> dict[str, Any] | None:
        status, got = await c.api(key, "GET", f"/scorm-packages/{body['data']['id']}")
        assert status == 200, got
        return got["data"] if got["data"]["status"] != "processing" else None

    package = await c.eventually(ended, timeout=90, message="the package imported")
    assert package["status"] == "ready", package
    return dict(package)


async def open_launch(browser: Browser, launch: dict[str, Any]) -> tuple[Page, FrameLocator]:
    """The learner's browser on the launch URL, once the SCO has initialized."""
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    context.set_default_timeout(20_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(launch["launch_url"])
    sco = page.frame_locator("#learn-content")
    await expect(sco.locator("body")).to_have_attribute("data-state", "ready")
    assert errors == []
    return page, sco


async def shown(sco: FrameLocator) -> tuple[str, str, str]:
    """(version, entry, what was saved) as the SCO shows them."""
    return (await sco.locator("#version").inner_text(), await sco.locator("#entry").inner_text(),
            await sco.locator("#suspend").inner_text())


async def finished(c: Cluster, key: str, launch: dict[str, Any]) -> dict[str, Any]:
    """The launch's attempt once its finish has reached the public API."""
    async def ended() -> dict[str, Any] | None:
        status, body = await c.api(key, "GET", f"/attempts/{launch['attempt_id']}")
        assert status == 200, body
        return body["data"] if body["data"]["time_ended_at"] is not None else None

    return dict(await c.eventually(ended, message="the finished attempt"))


async def test_a_learner_mid_attempt_stays_on_their_version_and_new_launches_get_the_new_one(
        cluster: Cluster, browser: Browser) -> None:
    c = cluster
    slug = f"versions-{secrets.token_hex(3)}"
    key = await c.tenant_with_key(slug)
    first = await upload(c, key, PACKAGES, versioned_package("1"))
    course, (activity, _) = await c.course(key, slug, "versioned", [
        {"title": "Chapter", "kind": "scorm", "required": True, "scorm_package_id": first["id"],
         "sco_identifier": "chapter_item"},
        {"title": "Read on", "kind": "reading", "required": True},  # keeps the enrollments active (normal mode)
    ])
    for user_id, name in ((1, "Early Learner"), (2, "Late Learner")):
        await c.user(slug, user_id, name)
    early = await c.enroll(key, 1, course["id"])
    late = await c.enroll(key, 2, course["id"])

    # The early learner starts on version 1, reads to page 2 and leaves for now (exit = suspend).
    started = await c.launch(key, early["id"], activity["id"])
    page, sco = await open_launch(browser, started)
    assert await shown(sco) == ("1", "ab-initio", "nothing")
    await sco.locator("#next").click()
    await expect(sco.locator("#page")).to_have_text("2")
    # The new version arrives while the player is still open.
    second = await upload(c, key, f"{PACKAGES}/{first['id']}/versions", versioned_package("2"))
    assert (second["version"], second["version_of"]) == (2, first["id"])
    await sco.locator("#leave").click()
    await expect(sco.locator("body")).to_have_attribute("data-state", "left")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "versions-early-left-on-v1.png"))
    await page.context.close()
    assert (await finished(c, key, started))["status"] == "incomplete"

    # Relaunched mid-attempt: still version 1, resumed where they left.
    resumed = await c.launch(key, early["id"], activity["id"])
    page, sco = await open_launch(browser, resumed)
    assert await shown(sco) == ("1", "resume", "v1:page=2")
    await page.screenshot(path=str(SCREENSHOTS / "versions-early-resumed-on-v1.png"))

    # Meanwhile a new attempt (another learner) gets version 2.
    fresh = await c.launch(key, late["id"], activity["id"])
    late_page, late_sco = await open_launch(browser, fresh)
    assert await shown(late_sco) == ("2", "ab-initio", "nothing")
    await late_page.screenshot(path=str(SCREENSHOTS / "versions-late-on-v2.png"))
    await late_page.context.close()

    # The early learner finishes their attempt on version 1; their next launch is a new attempt, on version 2.
    await sco.locator("#finish").click()
    await expect(sco.locator("body")).to_have_attribute("data-state", "finished")
    await page.context.close()
    assert (await finished(c, key, resumed))["status"] == "completed"
    after = await c.launch(key, early["id"], activity["id"])
    page, sco = await open_launch(browser, after)
    assert await shown(sco) == ("2", "ab-initio", "nothing")
    await page.screenshot(path=str(SCREENSHOTS / "versions-early-next-attempt-on-v2.png"))
    await page.context.close()
