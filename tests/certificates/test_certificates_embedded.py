"""The embedded default (SQLite, the in-process bus, PDFs as files under the data directory): the same flows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.certificates.app import create_app
from services.certificates.config import CertificatesSettings
from shared.bus.amqp import OutgoingMessage
from shared.config import CommonSettings
from shared.service import BUS_KEY
from tests.certificates.test_certificates_harness import close_app, completed, pdf_text
from tests.support.infra import wait_until

SECRET = "embedded-test-secret"


@pytest.fixture
async def client(tmp_path: Path):
    common = CommonSettings(postgres_url=None, amqp_url=None, data_dir=tmp_path, internal_secret=SECRET,
                            relay_poll_interval=0.1, log_json=True)
    app = create_app(CertificatesSettings(common=common, render_workers=1, regeneration_poll_interval=0.2))
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await close_app(client)


def _headers(scopes: str = "learn:read learn:write") -> dict[str, str]:
    return {"X-Learn-Internal": SECRET, "X-Learn-Tenant-Id": "1", "X-Learn-Tenant": "acme",
            "X-Learn-Tenant-Name": "Acme%20Academy", "X-Learn-Scopes": scopes}


async def _certificate(client: TestClient, enrollment_id: int) -> dict | None:
    async with client.get("/api/v1/learn/certificates", headers=_headers()) as resp:
        found = [c for c in (await resp.json())["data"] if c["enrollment_id"] == enrollment_id]
    return found[0] if found else None


async def test_issue_store_as_files_and_regenerate_on_sqlite(client: TestClient, tmp_path: Path):
    from shared.bus.envelope import new_event

    async with client.post("/admin/v1/cert-templates", json={"name": "Brand"}, headers=_headers("admin")) as resp:
        template = (await resp.json())["data"]
    event = new_event("enrollment.completed", completed(1, template_id=template["id"]), service="enrollment",
                      tenant="acme", tenant_id=1)
    await client.server.app[BUS_KEY].publish_many([OutgoingMessage(event.routing_key, event.to_bytes(), event.id)])
    cert = await wait_until(lambda: _certificate(client, 1), timeout=20, message="the certificate")

    stored = tmp_path / "certificates-blobs" / "certificates" / "1" / cert["verification_id"] / "v1.pdf"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == cert["pdf"]["sha256"]
    async with client.get(f"/api/v1/learn/certificates/{cert['id']}/pdf", headers=_headers()) as resp:
        assert resp.status == 200 and cert["verification_id"] in pdf_text(await resp.read())

    async with client.post(f"/admin/v1/cert-templates/{template['id']}", json={"title_text": "Diploma"},
                           headers=_headers("admin")) as resp:
        assert resp.status == 200

    async def regenerated() -> dict | None:
        again = await _certificate(client, 1)
        return again if again and again["pdf"]["version"] == 2 else None

    again = await wait_until(regenerated, timeout=20, message="the regenerated PDF")
    assert again["verification_id"] == cert["verification_id"] and again["pdf"]["template_version"] == 2
    assert (stored.parent / "v2.pdf").exists()
    await wait_until(lambda: not stored.exists(), timeout=5, message="the superseded PDF removed")
