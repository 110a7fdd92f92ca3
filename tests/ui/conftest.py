"""Admin UI fixtures.

- ``ui_gateway``: the real gateway in this process (PostgreSQL + RabbitMQ), for the HTTP-level safety tests of the
  pages that need only the directory (sign-in, tenants, API keys).
- ``ui_cluster`` + ``browser``: the whole system (every service its own process) and headless Chromium, shared by
  the browser journeys of a test session (starting them takes most of a minute).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, async_playwright

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.support import infra
from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv
from tests.ui.ui_support import DESKTOP

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# --- the gateway alone, in this process -------------------------------------------------------------------


@dataclass
class UiGateway:
    client: TestClient
    admin_token: str

    async def sign_in(self) -> str:
        """Sign in through the form; returns the session's CSRF token."""
        page = await (await self.client.get("/admin/login")).text()
        login_token = re.search(r'name="login_token" value="([^"]+)"', page)
        assert login_token, page
        resp = await self.client.post("/admin/login", data={"login_token": login_token.group(1),
                                                            "token": self.admin_token, "next": "/admin"},
                                      allow_redirects=False)
        assert resp.status == 303, await resp.text()
        return await self.csrf_token()

    async def csrf_token(self, path: str = "/admin") -> str:
        page = await (await self.client.get(path)).text()
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    async def admin(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        resp = await self.client.request(method, "/admin/api/v1" + path,
                                         headers={"Authorization": f"Bearer {self.admin_token}"}, **kw)
        return resp.status, await resp.json()


@pytest.fixture
async def ui_gateway(test_env: TestEnv, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[UiGateway]:
    for name, value in {"SESSION_TTL": "3600", "SIGN_IN_MAX_FAILURES": "3", "SIGN_IN_WINDOW": "600"}.items():
        monkeypatch.setenv(f"LEARN_GATEWAY_UI_{name}", value)
    token = secrets.token_urlsafe(24)
    settings = GatewaySettings(common=test_env.common(), admin_token=token, access_log=False)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield UiGateway(client, token)


# --- the whole system and a browser -----------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ui_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    try:
        postgres, amqp = infra.postgres_url(), infra.amqp_url()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    root = tmp_path_factory.mktemp("ui-cluster")
    env = TestEnv(postgres_url=postgres, amqp_url=amqp, data_dir=root / "data")
    env.data_dir.mkdir()
    try:
        async with running_cluster(env, root / "cluster") as cluster:
            yield cluster
    finally:
        await env.cleanup()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
