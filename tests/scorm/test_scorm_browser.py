"""Real SCOs in a real browser: headless Chromium plays packages served by the scorm service.

The service runs on a real port (aiohttp TestServer) with the real PostgreSQL and RabbitMQ, behind a small
stand-in for the gateway that adds the internal credential as the gateway does on ``/learn/...`` paths (it
must be a proxy: beacons sent while a page unloads carry no headers the browser was told to add). Everything
else is the product: the player page, player.js, the package files, the SCO's own JavaScript calling the
API, the commits, and the ``runtime.committed`` events on the broker. Screenshots go to
``test-output/scorm/``.

``golf_scorm12_singlesco.zip`` is a content-packaging sample: its launch page says "Not implemented yet" and
calls no API, so its test checks what can be checked (the player finds the page and offers ``window.API``).
SCOs that report status and score: our debug SCO built as a SCORM 1.2 package (``tests/support/scorm_packages.py``;
its launch URL tells it what to report) and Golf "Run-time Advanced Calls" (SCORM 2004: the test reads every page
and answers the quiz). ``test_scorm_debug_sco_browser.py`` plays the debug SCO through the whole system and reads
the attempt back through the public API.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from tests.scorm.test_scorm_service_harness import ScormService, scorm_fixture  # noqa: F401
from tests.support.scorm_packages import debug_package

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "scorm"


@pytest.fixture
async def gateway(scorm: ScormService) -> AsyncIterator[str]:
    """The gateway's part on pass-through paths: forward as-is, adding the internal credential."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() in ("content-type", "accept", "user-agent")}
        async with session.request(request.method, scorm.base_url + request.path_qs,
                                   data=await request.read(),
                                   headers={**headers, **scorm.runtime_headers()}) as upstream:
            body = await upstream.read()
            dropped = ("content-length", "transfer-encoding", "connection", "date", "server")
            kept = {name: value for name, value in upstream.headers.items() if name.lower() not in dropped}
            return web.Response(body=body, status=upstream.status, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/learn/{tail:.*}", forward)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await session.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                    headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_player(browser: Browser, gateway: str, launch: dict[str, Any]) -> tuple[Page, list[str]]:
    """The launch's player page in a fresh context; dialogs (a SCO's alerts) are accepted and recorded."""
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    dialogs: list[str] = []
    answering: set[asyncio.Task[None]] = set()

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        task = asyncio.ensure_future(dialog.accept())
        answering.add(task)
        task.add_done_callback(answering.discard)

    page.on("dialog", on_dialog)
    await page.goto(f"{gateway}/learn/player/{launch['runtime_token']}")
    return page, dialogs


async def leave(page: Page) -> None:
    """What closing the tab does (headless page.close() fires no pagehide): the SCO's unload handlers run."""
    await page.goto("about:blank")


def screenshot_path(name: str) -> str:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return str(SCREENSHOTS / f"{name}.png")


async def final_commit(scorm: ScormService, attempt_id: int, *, finished: bool = True) -> dict[str, Any]:
    from tests.support.infra import wait_until

    def found() -> dict[str, Any] | None:
        commits = [e.data for e in scorm.events.of_type("runtime.committed")
                   if e.data["attempt_id"] == attempt_id and (e.data["finished"] or not finished)
                   and e.data["sequence"] > 0]
        return max(commits, key=lambda d: d["sequence"]) if commits else None

    return await wait_until(found, timeout=20, message=f"a commit of attempt {attempt_id}")


async def test_golf_12_single_sco_plays_in_the_player_with_the_12_api(browser: Browser, gateway: str,
                                                                      scorm: ScormService) -> None:
    launch, _ = await scorm.launched("golf_scorm12_singlesco.zip")
    page, dialogs = await open_player(browser, gateway, launch)
    content = page.frame_locator("#learn-content")
    await content.locator("h1").wait_for()
    assert await content.locator("h1").inner_text() == "Not implemented yet"
    assert await page.evaluate("typeof window.API.LMSInitialize") == "function"
    assert await page.evaluate("typeof window.API_1484_11") == "undefined"
    assert await page.get_attribute("#learn-player", "data-standard") == "1.2"
    frame_src = await page.get_attribute("#learn-content", "src")
    assert frame_src == f"/learn/content/{launch['runtime_token']}/shared/launchpage.html"
    await page.screenshot(path=screenshot_path("golf12-singlesco"))
    assert dialogs == []
    (launched,) = await scorm.attempt_events(launch["attempt_id"], 1)
    assert launched.data["status"] == "not_attempted"


async def test_a_12_sco_sets_status_and_score_that_reach_the_attempt(browser: Browser, gateway: str,
                                                                     scorm: ScormService) -> None:
    package = debug_package("1.2", status="passed", score=0.8, location="p2", suspend="x=1", finish=0)
    launch, _ = await scorm.launched(package)
    page, dialogs = await open_player(browser, gateway, launch)
    sco = page.frame_locator("#learn-content")
    await sco.locator("body[data-state=done]").wait_for()
    assert await sco.locator("#debug-status").inner_text() == "Done (SCORM 1.2, still running)."
    await page.locator("#learn-status[data-status=saved]").wait_for()
    await page.screenshot(path=screenshot_path("scorm12-debug-sco-committed"))
    committed = await final_commit(scorm, launch["attempt_id"], finished=False)
    assert (committed["standard"], committed["status"], committed["passed"]) == ("1.2", "passed", True)
    assert (committed["score_raw"], committed["score_scaled"]) == (80, 0.8)
    assert committed["finished"] is False and dialogs == []
    assert await page.evaluate("window.learnPlayer.snapshot()['cmi.suspend_data']") == "x=1"
    await leave(page)


async def test_golf_2004_read_to_the_end_and_quiz_answered_is_a_passed_attempt(browser: Browser, gateway: str,
                                                                                scorm: ScormService) -> None:
    launch, _ = await scorm.launched("golf_scorm2004_3rd_runtime_advanced.zip")
    page, dialogs = await open_player(browser, gateway, launch)
    course = page.frame_locator("#learn-content")
    assert await page.evaluate("typeof window.API_1484_11.Initialize") == "function"
    assert await page.evaluate("typeof window.API") == "undefined"
    next_button = course.locator("#butNext")
    await next_button.wait_for()
    while await next_button.is_enabled():
        await next_button.click()
    quiz = course.frame_locator("#contentFrame")
    await quiz.locator("input[value='Submit Answers']").wait_for()
    for radio in await quiz.locator(".correctAnswer input[type=radio]").all():
        await radio.check()
    for box in await quiz.locator(".correctAnswer input[type=text]").all():
        shown = await box.locator("xpath=..").inner_text()
        await box.fill(re.search(r"\((-?\d+)\)", shown).group(1))
    await quiz.locator("input[value='Submit Answers']").click()
    await quiz.locator("text=Score: 100").wait_for()
    await page.screenshot(path=screenshot_path("golf2004-advanced-quiz-passed"))
    await leave(page)
    finished = await final_commit(scorm, launch["attempt_id"])
    assert (finished["standard"], finished["status"], finished["passed"]) == ("2004", "passed", True)
    assert (finished["completion_status"], finished["success_status"]) == ("completed", "passed")
    assert (finished["score_raw"], finished["score_scaled"]) == (100, 1)
    assert finished["time_ended_at"] is not None
    commits = await scorm.attempt_events(launch["attempt_id"], finished["sequence"] + 1)
    assert sum(e.data["session_time_delta_seconds"] for e in commits) > 0  # the session time the SCO reported
    assert all("could not find objective" not in message for message in dialogs), dialogs


async def test_a_non_scorm_activity_is_completed_from_its_built_in_page(browser: Browser, gateway: str,
                                                                        scorm: ScormService) -> None:
    launch, _ = await scorm.launched(kind="reading", title="Read the rules of golf")
    page, dialogs = await open_player(browser, gateway, launch)
    activity = page.frame_locator("#learn-content")
    await activity.locator("#activity-complete:enabled").click()
    await activity.locator("#activity-status[data-state=done]").wait_for()
    await page.screenshot(path=screenshot_path("builtin-reading-completed"))
    finished = await final_commit(scorm, launch["attempt_id"])
    assert (finished["standard"], finished["status"], finished["completion_status"]) == (
        "2004", "completed", "completed")
    assert dialogs == []
