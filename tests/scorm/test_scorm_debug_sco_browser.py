"""The debug SCO played in headless Chromium through the whole system, as a learner's browser plays it.

Every service runs as its own process behind the real gateway (``tests/support/cluster.py``). The test code builds
the debug SCO (``tests/fixtures/scorm/debug_sco``) as a SCORM 1.2 or 2004 package whose launch URL carries the
scenario, uploads it through the admin API, puts it in a published course, enrolls a learner and launches it through
the public API. Chromium opens the launch URL (the player page, on the gateway's content origin); the SCO finds
``window.API`` or ``window.API_1484_11`` in its parent frame and plays the scenario: status, score, location,
suspend data, two interactions, ``exit`` = ``suspend``, a commit and the finish. Then, through the gateway again:

- the public attempts API shows the passed attempt with its score and the session time the SCO reported;
- a second launch resumes: the SCO reads ``entry`` = ``resume`` and the suspend data and location it left.

Screenshots go to ``test-output/scorm/``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv
from tests.support.scorm_packages import debug_package

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "scorm"

SCENARIO = {"status": "passed", "score": 0.85, "location": "page-3", "suspend": "chapter=3;answers=a,b|c",
            "interactions": 2, "exit": "suspend", "session": 42}
#: per standard: the elements the SCO reads at Initialize, by meaning
ELEMENTS = {
    "1.2": {"entry": "cmi.core.entry", "suspend": "cmi.suspend_data", "location": "cmi.core.lesson_location",
            "learner_id": "cmi.core.student_id", "learner_name": "cmi.core.student_name",
            "mode": "cmi.core.lesson_mode", "credit": "cmi.core.credit"},
    "2004": {"entry": "cmi.entry", "suspend": "cmi.suspend_data", "location": "cmi.location",
             "learner_id": "cmi.learner_id", "learner_name": "cmi.learner_name", "mode": "cmi.mode",
             "credit": "cmi.credit"},
}
READING = {"title": "Read the rules", "kind": "reading", "required": True}


@pytest.fixture(scope="module")
def module_env(postgres_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> TestEnv:
    tmp = tmp_path_factory.mktemp("debug-sco")
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


async def play(browser: Browser, launch: dict[str, Any], screenshot: str) -> tuple[Page, dict[str, Any]]:
    """Open the launch URL as the learner's browser would; wait until the SCO has played its scenario."""
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(20_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(launch["launch_url"])
    sco = page.frame_locator("#learn-content")
    await sco.locator("body[data-state=done], body[data-state=error]").wait_for()
    report = await page.frame_locator("#learn-content").locator("body").evaluate("() => window.debugSco")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{screenshot}.png"))
    assert report["state"] == "done", report["errors"]
    assert errors == []
    return page, report


@pytest.mark.parametrize("standard", ["1.2", "2004"])
async def test_the_debug_sco_plays_to_a_passed_attempt_read_back_through_the_api(
    cluster: Cluster, browser: Browser, standard: str
) -> None:
    c = cluster
    slug = f"debug-sco-{standard.replace('.', '')}-{secrets.token_hex(3)}"
    key = await c.tenant_with_key(slug)
    await c.user(slug, 7, "Ada Lovelace")
    package = await c.upload_scorm(slug, debug_package(standard, **SCENARIO))
    assert package["status"] == "ready", package
    course, (activity, _) = await c.course(key, slug, "debug-sco", [
        {"title": "Debug SCO", "kind": "scorm", "required": True, "scorm_package_id": package["id"],
         "sco_identifier": "debug_item"},
        READING,  # keeps the enrollment active, so the second launch is a normal one
    ])
    enrollment = await c.enroll(key, 7, course["id"])
    launch = await c.launch(key, enrollment["id"], activity["id"])
    assert launch["launch_url"].startswith(c.content_url + "/learn/player/")  # the content origin's player

    page, report = await play(browser, launch, f"debug-sco-{standard}-played")
    names = ELEMENTS[standard]
    assert report["standard"] == standard
    initial = report["initial"]
    assert (initial[names["entry"]], initial[names["suspend"]]) == ("ab-initio", "")
    assert (initial[names["learner_id"]], initial[names["learner_name"]]) == ("7", "Ada Lovelace")
    assert (initial[names["mode"]], initial[names["credit"]]) == ("normal", "credit")
    played = [call["call"] for call in report["calls"]]
    assert played[-2:] == (["LMSCommit", "LMSFinish"] if standard == "1.2" else ["Commit", "Terminate"])
    assert sum(".interactions." in str(call["args"][0]) for call in report["calls"] if call["args"]) >= 10
    await page.context.close()

    async def finished_attempt() -> dict[str, Any] | None:
        status, body = await c.api(key, "GET", f"/attempts/{launch['attempt_id']}")
        assert status == 200, body
        attempt = body["data"]
        return attempt if attempt["time_ended_at"] is not None else None

    attempt = await c.eventually(finished_attempt, message="the finished attempt through the public API")
    assert (attempt["status"], attempt["passed"]) == ("passed", True)
    assert (attempt["score_raw"], attempt["score_scaled"]) == (85, 0.85)
    assert attempt["total_time_seconds"] == 42
    assert (attempt["enrollment_id"], attempt["activity_id"]) == (enrollment["id"], activity["id"])

    # The SCO exited with "suspend": the next launch resumes, and the SCO reads back what it left.
    again = await c.launch(key, enrollment["id"], activity["id"])
    assert again["attempt_id"] != launch["attempt_id"]
    page, report = await play(browser, again, f"debug-sco-{standard}-resumed")
    resumed = report["initial"]
    assert resumed[names["entry"]] == "resume"
    assert (resumed[names["suspend"]], resumed[names["location"]]) == (SCENARIO["suspend"], SCENARIO["location"])
    shown = json.loads(await page.frame_locator("#learn-content").locator("#debug-initial").inner_text())
    assert shown == resumed  # what the page shows is what the SCO read
    await page.context.close()
