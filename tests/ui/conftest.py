"""Admin UI fixtures.

- ``ui_gateway``: the real gateway in this process (PostgreSQL + RabbitMQ; one per module, a fresh client, cookies
  and sign-in limiter per test), for the HTTP-level safety tests of the
  pages that need only the directory (sign-in, tenants, API keys).
- ``ui_cluster`` + ``browser``: the whole system (every service its own process) and headless Chromium, shared by
  the browser journeys of a test session (starting them takes most of a minute).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.ui import UI_KEY
from services.gateway.ui.security import SESSION_COOKIE
from services.gateway.ui.views import Ui
from tests.support import infra
from tests.support.cluster import SERVICES, Cluster, running_cluster
from tests.support.env import TestEnv
from tests.support.webhook_receiver import HOST as RECEIVER_HOST
from tests.support.webhook_receiver import Receiver
from tests.ui.ui_support import DESKTOP

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# --- the gateway alone, in this process -------------------------------------------------------------------


@dataclass
class UiGateway:
    """One test's browser-like client (its own cookies) of the module's gateway."""

    server: TestServer
    client: aiohttp.ClientSession
    admin_token: str

    @property
    def ui(self) -> Ui:
        return self.server.app[UI_KEY]

    def session_id(self) -> str:
        return self.client.cookie_jar.filter_cookies(self.server.make_url("/admin"))[SESSION_COOKIE].value

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

    async def tenant(self, prefix: str = "acme", name: str | None = None) -> str:
        slug = f"{prefix}-{secrets.token_hex(3)}"
        status, body = await self.admin("POST", "/tenants", json={"slug": slug, "name": name or "Acme", "plan": "pro"})
        assert status == 201, body
        return slug


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ui_server(postgres_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> AsyncIterator[tuple[TestServer, str]]:
    """One gateway per test module (each test gets its own client, sign-in limiter and cookies)."""
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp_path_factory.mktemp("ui-gateway"))
    token = secrets.token_urlsafe(24)
    settings = GatewaySettings(common=env.common(), admin_token=token, access_log=False)
    server = TestServer(create_app(settings))
    await server.start_server()
    try:
        yield server, token
    finally:
        await server.close()
        await env.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def ui_gateway(ui_server: tuple[TestServer, str]) -> AsyncIterator[UiGateway]:
    server, token = ui_server
    ui = server.app[UI_KEY]
    ui.limiter = ui.limiter.fresh(max_failures=3, window=600)  # counts of this test's own
    ui.sessions.ttl = 3600
    async with aiohttp.ClientSession(base_url=server.make_url("/"), cookie_jar=aiohttp.CookieJar(unsafe=True)
                                     ) as client:
        yield UiGateway(server, client, token)


# --- the whole system and a browser -----------------------------------------------------------------------


LAST_CLUSTER_TEST = pytest.StashKey[bool]()
_clusters: list[Cluster] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Under pytest-xdist a worker runs the files it is handed, in no fixed order: "the last test in
        # collection order" may run before others that need the cluster. The session's teardown stops it.
        return
    users = [item for item in items if "ui_cluster" in getattr(item, "fixturenames", ())]
    if users:
        users[-1].stash[LAST_CLUSTER_TEST] = True


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Stop the cluster's processes after the last test that uses it, not at the end of the whole session: the
    tests that run later should not share PostgreSQL's connections with five idle services."""
    if item.stash.get(LAST_CLUSTER_TEST, False):
        for cluster in _clusters:
            for name in reversed(SERVICES):
                cluster.kill(name, signal.SIGTERM)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Receiver]:
    """A local HTTPS webhook receiver the UI cluster's webhooks service may deliver to (the delivery log page)."""
    r = Receiver(tmp_path_factory.mktemp("ui-receiver"))
    await r.start()
    yield r
    await r.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ui_cluster(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> AsyncIterator[Cluster]:
    try:
        postgres, amqp = infra.postgres_url(), infra.amqp_url()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    root = tmp_path_factory.mktemp("ui-cluster")
    env = TestEnv(postgres_url=postgres, amqp_url=amqp, data_dir=root / "data")
    env.data_dir.mkdir()
    try:
        webhooks = {"LEARN_WEBHOOKS_ALLOWED_NETWORKS": f"{RECEIVER_HOST}/32",
                    "LEARN_WEBHOOKS_CA_FILE": str(receiver.cert), "LEARN_WEBHOOKS_POLL_INTERVAL": "0.2",
                    "LEARN_WEBHOOKS_RETRY_SCHEDULE": "0.2,0.2,0.3,0.3,0.5,0.5,1,1,1,1", "LEARN_WEBHOOKS_JITTER": "0.1"}
        async with running_cluster(env, root / "cluster", extra_env=webhooks) as cluster:
            _clusters.append(cluster)
            yield cluster
            _clusters.remove(cluster)
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
