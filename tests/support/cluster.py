"""The real topology for end-to-end and fault-injection tests: every service its own process
(``python -m services.<name> serve``) on real PostgreSQL and RabbitMQ, driven through the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.env import TestEnv
from tests.support.infra import wait_until

SERVICES = ("catalog", "enrollment", "certificates", "scorm", "gateway")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    env: TestEnv
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            self.services[name] = ServiceProcess(name, free_port(), self.workdir / "logs" / f"{name}.log")

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
        env.update(self.env.environ())
        env.update({
            "LEARN_ADMIN_TOKEN": self.admin_token,
            "LEARN_PUBLIC_URL": self.gateway_url,
            "LEARN_LOG_LEVEL": os.environ.get("LEARN_E2E_LOG_LEVEL", "info"),
            "LEARN_SCORM_FIXTURES_DIR": str(REPO.parent / "shared" / "fixtures" / "scorm"),
        })
        for name, svc in self.services.items():
            env[f"LEARN_{name.upper()}_PORT"] = str(svc.port)
            if name != "gateway":
                env[f"LEARN_GATEWAY_{name.upper()}_URL"] = svc.url
        env.update(self.extra_env)
        return env

    def spawn(self, name: str) -> None:
        svc = self.services[name]
        log = svc.log_path.open("ab")
        svc.proc = subprocess.Popen([sys.executable, "-m", f"services.{name}", "serve"], cwd=REPO,
                                    env=self.environ(), stdout=log, stderr=subprocess.STDOUT)
        log.close()

    async def start(self, timeout: float = 90) -> None:
        self.http = aiohttp.ClientSession()
        for name in SERVICES:
            self.spawn(name)
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 90) -> None:
        async def ready() -> bool:
            for svc in self.services.values():
                if svc.proc is not None and svc.proc.poll() is not None:
                    raise AssertionError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.log_tail()}")
            try:
                assert self.http is not None
                async with self.http.get(self.gateway_url + "/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        try:
            await wait_until(ready, timeout=timeout, interval=0.3, message="every service ready via the gateway")
        except AssertionError:
            raise AssertionError("cluster not ready:\n" + "\n".join(
                f"--- {s.name}\n{s.log_tail(15)}" for s in self.services.values())) from None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.services[name].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)

    async def restart(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.kill(name, sig)
        self.spawn(name)
        await self.wait_ready()

    async def stop(self) -> None:
        for name in reversed(SERVICES):
            self.kill(name, signal.SIGTERM)
        for svc in self.services.values():
            if svc.proc is not None and svc.proc.poll() is None:
                svc.proc.kill()
        if self.http is not None:
            await self.http.close()

    # --- clients ------------------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                      data: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        assert self.http is not None
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.gateway_url + path, json=json, data=data,
                                     headers=all_headers) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body: Any = await resp.json() if "json" in ctype else await resp.read()
            return resp.status, body

    async def admin(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request(method, "/admin/api/v1" + path, token=self.admin_token, **kw)

    async def api(self, key: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request(method, "/api/v1/learn" + path, token=key, **kw)

    async def tenant_with_key(self, slug: str, scopes: tuple[str, ...] = ("learn:read", "learn:write",
                                                                          "learn:cohorts:grant"),
                              plan: str = "pro") -> str:
        status, body = await self.admin("POST", "/tenants", json={"slug": slug, "name": slug.title(), "plan": plan})
        assert status in (200, 201), body
        status, body = await self.admin("POST", f"/tenants/{slug}/api-keys",
                                        json={"name": "e2e", "scopes": list(scopes)})
        assert status in (200, 201), body
        return str(body["data"]["key"])

    async def eventually(self, coro_factory: Any, timeout: float = 30, message: str = "condition") -> Any:
        return await wait_until(coro_factory, timeout=timeout, interval=0.2, message=message)


@contextlib.asynccontextmanager
async def running_cluster(env: TestEnv, workdir: Path, **kw: Any):  # type: ignore[no-untyped-def]
    cluster = Cluster(env, workdir, **kw)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
        await asyncio.sleep(0)
