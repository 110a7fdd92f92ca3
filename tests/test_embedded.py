"""`make run` on the embedded default: every service in one process, SQLite files, in-process bus."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.infra import wait_until

REPO = Path(__file__).resolve().parents[1]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def test_embedded_default_serves_readyz_through_the_gateway(tmp_path):
    gateway, catalog, enrollment, certificates, scorm, content, webhooks = free_ports(7)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
    env.update({
        "LEARN_DATA_DIR": str(tmp_path / "data"),
        "LEARN_GATEWAY_PORT": str(gateway), "LEARN_CATALOG_PORT": str(catalog),
        "LEARN_ENROLLMENT_PORT": str(enrollment), "LEARN_CERTIFICATES_PORT": str(certificates),
        "LEARN_SCORM_PORT": str(scorm), "LEARN_GATEWAY_CONTENT_PORT": str(content),
        "LEARN_WEBHOOKS_PORT": str(webhooks),
        "LEARN_CONTENT_URL": f"http://localhost:{content}",
        "LEARN_GATEWAY_CATALOG_URL": f"http://127.0.0.1:{catalog}",
        "LEARN_GATEWAY_ENROLLMENT_URL": f"http://127.0.0.1:{enrollment}",
        "LEARN_GATEWAY_CERTIFICATES_URL": f"http://127.0.0.1:{certificates}",
        "LEARN_GATEWAY_SCORM_URL": f"http://127.0.0.1:{scorm}",
        "LEARN_LOG_LEVEL": "warning",
    })
    proc = subprocess.Popen([sys.executable, "-m", "services", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> dict | None:
                if proc.poll() is not None:
                    raise AssertionError(f"make run exited early:\n{proc.stdout.read().decode()}")
                try:
                    async with http.get(f"http://127.0.0.1:{gateway}/readyz") as resp:
                        return await resp.json() if resp.status == 200 else None
                except aiohttp.ClientError:
                    return None

            body = await wait_until(ready, timeout=60, interval=0.3, message="gateway /readyz = 200")
            # The content origin is a listener of its own: learner paths there and only there.
            async with http.get(f"http://127.0.0.1:{content}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["origin"] == "content"
            for base, path in ((content, "/admin/login"), (content, "/api/v1/learn/courses"),
                               (gateway, "/learn/static/player.js")):
                async with http.get(f"http://127.0.0.1:{base}{path}") as resp:
                    assert resp.status == 404, (base, path)
                    assert (await resp.json())["error"]["code"] == "not_found"
            async with http.get(f"http://127.0.0.1:{content}/learn/static/player.js") as resp:
                assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
        assert body["status"] == "ready"
        data_files = sorted(p.name for p in (tmp_path / "data").glob("*.sqlite3"))
        assert data_files == [f"learn_{s}.sqlite3" for s in
                              ("catalog", "certificates", "enrollment", "gateway", "scorm", "webhooks")]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output = proc.communicate(timeout=20)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("Ctrl-C did not stop the system within 20 s") from None
    assert proc.returncode == 0, output
    assert f"http://localhost:{gateway}" in output
    assert f"Content:    http://localhost:{content}" in output
