"""The real topology for end-to-end and fault-injection tests: every service its own process
(``python -m services.<name> serve``) on real PostgreSQL and RabbitMQ, driven through the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.support import infra
from tests.support.env import TestEnv
from tests.support.infra import wait_until

SERVICES = ("catalog", "enrollment", "certificates", "scorm", "webhooks", "gateway")
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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Learner:
    """A learner enrolled and with an activity launched: committing to ``launch["runtime_token"]`` completes it."""

    user_id: int
    enrollment: dict[str, Any]
    launch: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.launch["runtime_token"])


@dataclass
class Cluster:
    env: TestEnv
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    content_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            self.services[name] = ServiceProcess(name, free_port(), self.workdir / "logs" / f"{name}.log")

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url

    @property
    def content_url(self) -> str:
        """The content origin (player, package files, runtime): the gateway's second listener."""
        return f"http://127.0.0.1:{self.content_port}"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
        env.update(self.env.environ())
        env.update({
            "LEARN_ADMIN_TOKEN": self.admin_token,
            "LEARN_PUBLIC_URL": self.gateway_url,
            "LEARN_CONTENT_URL": self.content_url,
            "LEARN_GATEWAY_CONTENT_PORT": str(self.content_port),
            "LEARN_LOG_LEVEL": os.environ.get("LEARN_E2E_LOG_LEVEL", "info"),
            # AMQP subscribers through the admin API (services/gateway/subscribers.py)
            "LEARN_RABBITMQ_MANAGEMENT_URL": infra.management_url(),
        })
        for name, svc in self.services.items():
            env[f"LEARN_{name.upper()}_PORT"] = str(svc.port)
            if name != "gateway":
                env[f"LEARN_GATEWAY_{name.upper()}_URL"] = svc.url
        env.update(self.extra_env)
        return env

    def spawn(self, name: str) -> None:
        self.spawn_as(name, name)

    def spawn_as(self, name: str, module: str) -> None:
        """Start process ``name`` running ``services.<module>`` (a second gateway replica, say)."""
        svc = self.services[name]
        log = svc.log_path.open("ab")
        # Its own process group: a kill takes its helpers (e.g. the PDF render workers) with it, as when a
        # container dies, and nothing outlives the test.
        svc.proc = subprocess.Popen([sys.executable, "-m", f"services.{module}", "serve"], cwd=REPO,
                                    env=self.environ(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        """Signal a service: SIGKILL takes down its whole process group at once, like a crashed container."""
        proc = self.services[name].proc
        if proc is None:
            return
        if proc.poll() is None:
            if sig == signal.SIGKILL:
                _kill_group(proc)
            else:
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        _kill_group(proc)  # whatever it left behind

    async def restart(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.kill(name, sig)
        self.spawn(name)
        await self.wait_ready()

    async def stop(self) -> None:
        # Gateway first (no new requests), then every service at once: they shut down in parallel.
        for name in [n for n in self.services if n not in SERVICES] + list(reversed(SERVICES)):
            proc = self.services[name].proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for svc in self.services.values():
            if svc.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(svc.proc.wait, 20)
                _kill_group(svc.proc)
                svc.proc.wait()
        if self.http is not None:
            await self.http.close()

    # --- clients ------------------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                      data: Any = None, headers: dict[str, str] | None = None, origin: str | None = None
                      ) -> tuple[int, Any]:
        """``origin``: another base URL than the gateway's API origin (``self.content_url``)."""
        assert self.http is not None
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, (origin or self.gateway_url) + path, json=json, data=data,
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

    # --- journey building blocks (every step through the gateway, as a client would) -----------------------

    async def user(self, slug: str, user_id: int, name: str, email: str | None = None) -> dict[str, Any]:
        status, body = await self.admin("PUT", f"/tenants/{slug}/users/{user_id}",
                                        json={"name": name, "email": email or f"user{user_id}@example.com"})
        assert status in (200, 201), body
        return dict(body["data"])

    async def course(self, key: str, slug: str, course_slug: str, activities: list[dict[str, Any]], *,
                     publish: bool = True, **fields: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A course with one module and one lesson holding ``activities`` (admin API bodies), published."""
        status, body = await self.api(key, "POST", "/courses",
                                      json={"slug": course_slug, "title": fields.pop("title", course_slug.title()),
                                            **fields})
        assert status == 201, body
        course = body["data"]
        status, body = await self.admin("POST", f"/tenants/{slug}/courses/{course['id']}/modules",
                                        json={"title": "Module 1"})
        assert status == 201, body
        status, body = await self.admin("POST", f"/tenants/{slug}/modules/{body['data']['id']}/lessons",
                                        json={"title": "Lesson 1"})
        assert status == 201, body
        lesson_id = body["data"]["id"]
        created = []
        for activity in activities:
            status, body = await self.admin("POST", f"/tenants/{slug}/lessons/{lesson_id}/activities", json=activity)
            assert status == 201, body
            created.append(body["data"])
        if publish:
            status, body = await self.api(key, "POST", f"/courses/{course['id']}/publish")
            assert status == 200, body
            course = body["data"]
        return course, created

    async def upload_scorm(self, slug: str, zip_path: Path | bytes, title: str | None = None) -> dict[str, Any]:
        """Upload a package (a zip file, or a built package's bytes) through the admin API and wait until its
        import ends (``ready`` or ``failed``)."""
        query = f"?title={title}" if title else ""
        data = zip_path if isinstance(zip_path, bytes) else zip_path.read_bytes()
        status, body = await self.request("POST", f"/admin/api/v1/tenants/{slug}/scorm-packages{query}",
                                          token=self.admin_token, data=data,
                                          headers={"Content-Type": "application/zip"})
        assert status in (200, 201, 202), body
        package_id = body["data"]["id"]

        async def imported() -> dict[str, Any] | None:
            status, body = await self.admin("GET", f"/tenants/{slug}/scorm-packages/{package_id}")
            assert status == 200, body
            return body["data"] if body["data"]["status"] != "processing" else None

        return dict(await self.eventually(imported, timeout=60, message=f"SCORM package {package_id} imported"))

    async def enroll(self, key: str, user_id: int, course_id: int, timeout: float = 30,
                     **fields: Any) -> dict[str, Any]:
        """Enroll, retrying while the enrollment service has not yet heard of the course or the user."""
        async def enrolled() -> dict[str, Any] | None:
            status, body = await self.api(key, "POST", "/enrollments",
                                          json={"user_id": user_id, "course_id": course_id, **fields})
            if status in (200, 201):
                return dict(body["data"])
            assert status in (400, 404), body  # read models still catching up
            return None

        return dict(await self.eventually(enrolled, timeout=timeout,
                                          message=f"user {user_id} enrolled in course {course_id}"))

    async def launch(self, key: str, enrollment_id: int, activity_id: int, timeout: float = 30) -> dict[str, Any]:
        """Launch an activity, retrying while the scorm service has not yet heard of the enrollment."""
        async def launched() -> dict[str, Any] | None:
            status, body = await self.api(key, "POST", f"/enrollments/{enrollment_id}/launches",
                                          json={"activity_id": activity_id})
            if status == 201:
                return dict(body["data"])
            assert status in (400, 404), body
            return None

        return dict(await self.eventually(launched, timeout=timeout,
                                          message=f"activity {activity_id} launched for enrollment {enrollment_id}"))

    async def runtime(self, token: str, action: str, cmi: dict[str, str]) -> dict[str, Any]:
        """POST the learner runtime's ``commit`` or ``finish`` as the player would."""
        status, body = await self.request("POST", f"/learn/runtime/{token}/{action}", json={"cmi": cmi},
                                          origin=self.content_url)
        assert status == 200, body
        return dict(body["data"])

    async def complete_activity(self, key: str, enrollment_id: int, activity: dict[str, Any],
                                cmi: dict[str, str] | None = None) -> dict[str, Any]:
        """Launch, commit and finish one activity; non-SCORM activities speak SCORM 2004 to the runtime."""
        launch = await self.launch(key, enrollment_id, activity["id"])
        if cmi is None:
            cmi = {"cmi.completion_status": "completed", "cmi.session_time": "PT30S"}
        await self.runtime(launch["runtime_token"], "commit", cmi)
        await self.runtime(launch["runtime_token"], "finish", cmi)
        return launch

    async def wait_status(self, key: str, enrollment_id: int, status: str, timeout: float = 30) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            code, body = await self.api(key, "GET", f"/enrollments/{enrollment_id}")
            assert code == 200, body
            return dict(body["data"]) if body["data"]["status"] == status else None

        return dict(await self.eventually(reached, timeout=timeout,
                                          message=f"enrollment {enrollment_id} {status}"))

    async def learners(self, key: str, slug: str, course_id: int, activity: dict[str, Any], user_ids: list[int],
                       concurrency: int = 16) -> list[Learner]:
        """Users in the directory, enrolled in the course and with ``activity`` launched, ready to commit."""
        gate = asyncio.Semaphore(concurrency)

        async def one(user_id: int) -> Learner:
            async with gate:
                await self.user(slug, user_id, f"Learner {user_id}")
            async with gate:
                enrollment = await self.enroll(key, user_id, course_id, timeout=90)
            async with gate:
                launch = await self.launch(key, enrollment["id"], activity["id"], timeout=90)
            return Learner(user_id, enrollment, launch)

        return list(await asyncio.gather(*(one(uid) for uid in user_ids)))

    async def assert_one_certificate_each(self, key: str, course_id: int, enrollment_ids: list[int],
                                          timeout: float = 120) -> list[dict[str, Any]]:
        """Wait for the course's certificates, then: exactly one per enrollment, each with its PDF in the store."""
        async def issued() -> list[dict[str, Any]] | None:
            found = await self.certificates_of(key, course_id=course_id)
            return found if len(found) >= len(enrollment_ids) else None

        found = await self.eventually(issued, timeout=timeout,
                                      message=f"{len(enrollment_ids)} certificates for course {course_id}")
        await asyncio.sleep(1)  # a duplicate would show up right behind the last one
        found = await self.certificates_of(key, course_id=course_id)
        assert sorted(c["enrollment_id"] for c in found) == sorted(enrollment_ids), "missing or duplicated"
        assert len({c["verification_id"] for c in found}) == len(found)
        gate = asyncio.Semaphore(4)  # checking, not loading: each download holds database connections

        async def pdf_of(cert: dict[str, Any]) -> None:
            async with gate:
                status, pdf = await self.api(key, "GET", f"/certificates/{cert['id']}/pdf")
            assert status == 200, pdf
            assert pdf.startswith(b"%PDF-") and len(pdf) == cert["pdf"]["bytes"]
            assert hashlib.sha256(pdf).hexdigest() == cert["pdf"]["sha256"]

        await asyncio.gather(*(pdf_of(cert) for cert in found))
        return list(found)

    async def certificates_of(self, key: str, **filters: Any) -> list[dict[str, Any]]:
        """Every certificate of the tenant matching ``filters``, following the cursor."""
        found: list[dict[str, Any]] = []
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        cursor = None
        while True:
            path = f"/certificates?limit=100{'&' + query if query else ''}"
            if cursor:
                path += f"&cursor={quote(cursor, safe='')}"
            status, body = await self.api(key, "GET", path)
            assert status == 200, body
            found.extend(body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return found


@contextlib.asynccontextmanager
async def running_cluster(env: TestEnv, workdir: Path, **kw: Any):  # type: ignore[no-untyped-def]
    cluster = Cluster(env, workdir, **kw)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
        await asyncio.sleep(0)
