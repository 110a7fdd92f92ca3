"""The client-speed suite: the system as a client sees it, through the gateway URL only.

Rules of this folder: no sleeps, no retries, no "eventually". Every request must give its final answer the first
time, right after the previous one answered, exactly as a checkout webhook or a script would call the API. Each
module runs against the real topology (one process per service on PostgreSQL + RabbitMQ) and against the embedded
default (`make run`: one process, SQLite, in-process bus).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.support.cluster import running_cluster
from tests.support.env import TestEnv
from tests.support.infra import wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN_HEADER = "Consistency-Token"
#: the suite drives one key hard on purpose; the per-key limit is tested in tests/gateway
UNLIMITED = {"LEARN_GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "LEARN_GATEWAY_RATE_LIMIT_BURST": "100000"}


class Client:
    """A strict HTTP client: one request, one answer, nothing hidden. Tracks nothing unless ``echo`` is on."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, admin_token: str, *, content_url: str,
                 echo: bool = False):
        self.http = http
        self.base_url = base_url
        self.content_url = content_url  # the learner paths (/learn/...) live on the content origin
        self.admin_token = admin_token
        self.echo = echo
        self.token: str | None = None

    async def request(self, method: str, path: str, *, key: str | None = None, json: Any = None,
                      data: Any = None, headers: dict[str, str] | None = None,
                      base_url: str | None = None) -> tuple[int, Any, Any]:
        all_headers = dict(headers or {})
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        if self.echo and self.token:
            all_headers[TOKEN_HEADER] = self.token
        base = base_url or (self.content_url if path.startswith("/learn/") else self.base_url)
        async with self.http.request(method, base + path, json=json, data=data,
                                     headers=all_headers) as resp:
            if resp.headers.get(TOKEN_HEADER):
                self.token = resp.headers[TOKEN_HEADER]
            ctype = resp.headers.get("Content-Type", "")
            body: Any = await resp.json() if "json" in ctype else await resp.read()
            return resp.status, body, resp.headers

    async def admin(self, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
        return await self.request(method, "/admin/api/v1" + path, key=self.admin_token, **kw)

    async def api(self, key: str, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
        return await self.request(method, "/api/v1/learn" + path, key=key, **kw)

    # --- building blocks, each one request and one assertion ------------------------------------------------

    async def tenant(self, slug: str | None = None) -> tuple[str, str]:
        slug = slug or f"c{secrets.token_hex(5)}"
        status, body, _ = await self.admin("POST", "/tenants", json={"slug": slug, "name": slug, "plan": "pro"})
        assert status == 201, body
        status, body, _ = await self.admin("POST", f"/tenants/{slug}/api-keys", json={
            "name": "client", "scopes": ["learn:read", "learn:write", "learn:cohorts:grant"]})
        assert status == 201, body
        return slug, str(body["data"]["key"])

    async def user(self, slug: str, user_id: int, name: str = "Ada Learner") -> None:
        status, body, _ = await self.admin("PUT", f"/tenants/{slug}/users/{user_id}",
                                           json={"name": name, "email": f"u{user_id}@example.com"})
        assert status in (200, 201), body

    async def draft_course(self, slug: str, key: str, kind: str = "reading") -> tuple[dict[str, Any], dict[str, Any]]:
        """A draft course with one module, lesson and required activity."""
        status, body, _ = await self.api(key, "POST", "/courses", json={
            "slug": f"course-{secrets.token_hex(5)}", "title": "Client speed"})
        assert status == 201, body
        course = body["data"]
        status, body, _ = await self.admin("POST", f"/tenants/{slug}/courses/{course['id']}/modules",
                                           json={"title": "M"})
        assert status == 201, body
        status, body, _ = await self.admin("POST", f"/tenants/{slug}/modules/{body['data']['id']}/lessons",
                                           json={"title": "L"})
        assert status == 201, body
        status, body, _ = await self.admin("POST", f"/tenants/{slug}/lessons/{body['data']['id']}/activities",
                                           json={"title": "Read", "kind": kind, "required": True})
        assert status == 201, body
        return course, body["data"]

    async def published_course(self, slug: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        course, activity = await self.draft_course(slug, key)
        status, body, _ = await self.api(key, "POST", f"/courses/{course['id']}/publish")
        assert status == 200, body
        return body["data"], activity


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


@contextlib.asynccontextmanager
async def embedded_system(workdir: Path) -> AsyncIterator[tuple[str, str, str]]:
    """`python -m services run` with nothing configured (the embedded default), on free ports: (API URL, admin
    token, content URL)."""
    names = ("gateway", "catalog", "enrollment", "certificates", "scorm", "webhooks", "gateway_content")
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    admin_token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
    env.update({"LEARN_DATA_DIR": str(workdir / "data"), "LEARN_ADMIN_TOKEN": admin_token,
                "LEARN_LOG_LEVEL": "warning", "LEARN_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
                "LEARN_CONTENT_URL": f"http://127.0.0.1:{ports['gateway_content']}", **UNLIMITED})
    for name, port in ports.items():
        env[f"LEARN_{name.upper()}_PORT"] = str(port)
        if name not in ("gateway", "gateway_content"):
            env[f"LEARN_GATEWAY_{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "embedded.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "services", "run"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['gateway']}"
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError((workdir / "embedded.log").read_text())
                try:
                    async with http.get(url + "/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout=90, interval=0.3, message="embedded system ready")
        yield url, admin_token, env["LEARN_CONTENT_URL"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def client_env(postgres_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> TestEnv:
    tmp = tmp_path_factory.mktemp("client")
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp / "data")
    env.data_dir.mkdir()
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["postgres+rabbitmq", "embedded"])
async def system(request: pytest.FixtureRequest, client_env: TestEnv) -> AsyncIterator[Client]:
    """The whole system, once per module and topology; tests keep to tenants of their own."""
    async with aiohttp.ClientSession() as http:
        if request.param == "embedded":
            async with embedded_system(client_env.data_dir.parent / "embedded") as (url, admin_token, content):
                yield Client(http, url, admin_token, content_url=content)
        else:
            try:
                async with running_cluster(client_env, client_env.data_dir.parent / "cluster",
                                           extra_env=dict(UNLIMITED)) as cluster:
                    yield Client(http, cluster.gateway_url, cluster.admin_token, content_url=cluster.content_url)
            finally:
                await client_env.cleanup()
