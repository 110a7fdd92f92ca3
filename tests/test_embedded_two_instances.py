"""Two embedded instances (`python -m services run`) on one machine, each given its own ports with
``LEARN_<SERVICE>_PORT`` (and the gateway's content port and URL): each gateway forwards to its own services,
never to 8081-8084 or the other's."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.infra import wait_until
from tests.test_embedded import free_ports

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "catalog", "enrollment", "certificates", "scorm", "webhooks")


@contextlib.contextmanager
def instance(workdir: Path, admin_token: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    ports = dict(zip((*SERVICES, "gateway_content"), free_ports(len(SERVICES) + 1), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
    env.update({f"LEARN_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env["LEARN_CONTENT_URL"] = f"http://localhost:{ports['gateway_content']}"  # the gateway's content listener
    env.update({"LEARN_DATA_DIR": str(workdir / "data"), "LEARN_ADMIN_TOKEN": admin_token,
                "LEARN_LOG_LEVEL": "warning", "LEARN_CERTIFICATES_RENDER_WORKERS": "1"})
    workdir.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "services", "run"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield ports["gateway"], proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


async def test_two_embedded_instances_each_forward_to_their_own_ports(tmp_path):
    token = secrets.token_urlsafe(24)
    with instance(tmp_path / "a", token) as (port_a, proc_a), instance(tmp_path / "b", token) as (port_b, proc_b):
        async with aiohttp.ClientSession() as http:

            async def call(port: int, method: str, path: str, key: str | None = None, **kw: Any) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {key or token}"}
                async with http.request(method, f"http://127.0.0.1:{port}{path}", headers=headers, **kw) as resp:
                    return resp.status, await resp.json()

            for port, proc in ((port_a, proc_a), (port_b, proc_b)):

                async def ready(port: int = port, proc: subprocess.Popen[bytes] = proc) -> dict[str, Any] | None:
                    if proc.poll() is not None:
                        raise AssertionError(f"instance exited early:\n{proc.stdout.read().decode()}")  # type: ignore[union-attr]
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                            return await resp.json() if resp.status == 200 else None
                    except aiohttp.ClientError:
                        return None

                # Before the fix the gateway probed (and forwarded to) 127.0.0.1:8081-8084: never ready.
                body = await wait_until(ready, timeout=90, interval=0.3, message=f"gateway :{port} ready")
                assert set(body["services"].values()) == {"ok"}

            keys = {}
            for port in (port_a, port_b):
                status, body = await call(port, "POST", "/admin/api/v1/tenants",
                                          json={"slug": "acme", "name": "Acme", "plan": "pro"})
                assert status == 201, body
                status, body = await call(port, "POST", "/admin/api/v1/tenants/acme/api-keys",
                                          json={"name": "k", "scopes": ["learn:read", "learn:write"]})
                assert status == 201, body
                keys[port] = body["data"]["key"]

            status, body = await call(port_a, "POST", "/api/v1/learn/courses", keys[port_a],
                                      json={"slug": "only-in-a", "title": "Only in A"})
            assert status == 201, body
            status, listed = await call(port_a, "GET", "/api/v1/learn/courses", keys[port_a])
            assert status == 200 and [c["slug"] for c in listed["data"]] == ["only-in-a"]
            # B's gateway reaches B's catalog (its own internal secret and database): it has no such course.
            status, listed = await call(port_b, "GET", "/api/v1/learn/courses", keys[port_b])
            assert status == 200 and listed["data"] == [], listed
