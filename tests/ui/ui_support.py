"""Helpers of the admin UI browser tests: screenshots at two widths, signing in, unique names."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from playwright.async_api import Page

from tests.support.cluster import REPO, Cluster

SHOTS = REPO / "test-output" / "ui"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


async def shoot(page: Page, name: str) -> list[Path]:
    """Screenshots of the current page at phone and desktop width (``test-output/ui/<name>-phone.png`` ...)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size or DESKTOP
    paths = []
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(size)
        path = SHOTS / f"{name}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    await page.set_viewport_size(before)
    return paths


async def sign_in(page: Page, cluster: Cluster, start: str = "/admin") -> None:
    await page.goto(cluster.gateway_url + start)
    await page.get_by_label("Admin token").fill(cluster.admin_token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r".*/admin(?!/login).*"))


def unique_slug(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"
