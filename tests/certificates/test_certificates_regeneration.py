"""Regeneration after ``template.updated``: every non-revoked certificate on the template gets exactly one new
PDF per template version, in batches, also when the service is killed half-way and started again."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.certificates.domain import new_verification_id
from services.certificates.store import certificates, regeneration_jobs
from shared.metrics import REGENERATED
from tests.certificates.test_certificates_harness import (
    TENANT_ID,
    b64,
    background_pdf,
    logo_png,
    pdf_text,
    publisher_for,
    running_service,
)
from tests.support.infra import wait_until

COUNT = 500
REVOKED_EVERY = 20  # 25 of the 500 are revoked and must keep their PDF


async def seed_certificates(engine: Any, template_id: int, count: int = COUNT) -> dict[int, str]:
    """``count`` issued certificates on ``template_id`` (version 1), straight into the table; every
    ``REVOKED_EVERY``-th is revoked. Returns id -> verification id."""
    now = datetime.now(UTC)
    rows = []
    for n in range(count):
        vid = new_verification_id()
        rows.append({
            "tenant_id": TENANT_ID, "enrollment_id": 900_000 + n, "user_id": 5_000 + n, "course_id": 42,
            "course_version": 1, "template_id": template_id, "verification_id": vid,
            "recipient_name": f"Learner Nº{n} Łukasiewicz", "course_title": "Intro to Mobieus",
            "credit_hours": Decimal("2.5"), "credit_kind": "CEU", "issued_at": now, "expires_at": None,
            "revoked_at": now if n % REVOKED_EVERY == 0 else None,
            "revoked_reason": "seeded as revoked" if n % REVOKED_EVERY == 0 else None,
            "pdf_key": f"certificates/{TENANT_ID}/{vid}/v1.pdf", "pdf_sha256": "0" * 64, "pdf_bytes": 1,
            "pdf_version": 1, "pdf_template_version": 1, "pdf_generated_at": now, "created_at": now,
            "updated_at": now,
        })
    async with engine.begin() as conn:
        await conn.execute(sa.insert(certificates), rows)
        result = await conn.execute(sa.select(certificates.c.id, certificates.c.verification_id)
                                    .where(certificates.c.template_id == template_id))
        return {row.id: row.verification_id for row in result}


async def state(engine: Any, template_id: int) -> dict[int, Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(certificates).where(certificates.c.template_id == template_id))
        return {row.id: row for row in rows}


async def regenerated_count(engine: Any, template_id: int) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(certificates).where(
            certificates.c.template_id == template_id, certificates.c.pdf_template_version == 2))).scalar() or 0)


def assert_regenerated_once_each(rows: dict[int, Any], vids: dict[int, str], events: Any) -> None:
    """Non-revoked: one new PDF (version 2, template version 2), one event; revoked: untouched, no event."""
    live = {cid for cid, row in rows.items() if row.revoked_at is None}
    assert len(live) == COUNT - COUNT // REVOKED_EVERY
    for cid, row in rows.items():
        assert row.verification_id == vids[cid]
        expected = (2, 2) if cid in live else (1, 1)
        assert (row.pdf_version, row.pdf_template_version) == expected, (cid, row.pdf_version)
    # Distinct event ids: the bus may deliver a relayed event twice, but it is one event.
    per_certificate = collections.Counter(
        e.data["certificate_id"] for e in {e.id: e for e in events.of_type("certificate.pdf_regenerated")}.values())
    assert set(per_certificate) == live and set(per_certificate.values()) == {1}


async def test_a_template_update_regenerates_every_live_certificate_once(test_env, events):
    async with running_service(test_env) as service:
        template = await service.create_template(name="Brand", logo=b64(logo_png()))
        engine = service.engine
        vids = await seed_certificates(engine, template["id"])
        before = REGENERATED.labels("certificates")._value.get()

        await service.admin("POST", f"/cert-templates/{template['id']}",
                            json={"title_text": "Certificate of Excellence", "background_pdf": b64(background_pdf())},
                            expect=200)
        live = COUNT - COUNT // REVOKED_EVERY
        await wait_until(lambda: regenerated_count(engine, template["id"]), timeout=5,
                         message="regeneration under way")
        await wait_until(lambda: _equals(regenerated_count(engine, template["id"]), live), timeout=120,
                         interval=0.5, message=f"{live} regenerated certificates")
        await events.wait_for("certificate.pdf_regenerated", count=live, timeout=30)
        await asyncio.sleep(1.0)  # anything extra would show now

        assert_regenerated_once_each(await state(engine, template["id"]), vids, events)
        assert REGENERATED.labels("certificates")._value.get() - before == live
        sample = next(cid for cid, row in (await state(engine, template["id"])).items() if row.revoked_at is None)
        text = pdf_text(await service.pdf(sample))
        assert "Certificate of Excellence" in text and vids[sample] in text
        await wait_until(lambda: _job_finished(engine), timeout=10, message="the job marked finished")
        _, progress = await service.admin("GET", f"/cert-templates/{template['id']}/regeneration", expect=200)
        assert progress["data"] == {"template_id": template["id"], "version": 2, "total": live, "done": live,
                                    "pending": 0, "finished": True}
        metrics = await (await service.client.get("/metrics")).text()
        assert "learn_certificates_regenerated_total" in metrics
        assert "learn_certificates_regeneration_pending" in metrics


async def _equals(value: Any, expected: int) -> bool:
    return (await value) == expected


async def _job_finished(engine: Any) -> bool:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(regeneration_jobs.c.finished_at))).all()
    return bool(rows) and all(row.finished_at is not None for row in rows)


# --- killed half-way: a real process, SIGKILL ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """``python -m services.certificates serve`` in its own process group, as in production."""

    def __init__(self, env: Any, port: int):
        self.env = env
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environ = {**os.environ, **self.env.environ(), "LEARN_CERTIFICATES_PORT": str(self.port),
                   "LEARN_CERTIFICATES_RENDER_WORKERS": "2", "LEARN_CERTIFICATES_REGENERATION_BATCH_SIZE": "10",
                   "LEARN_CERTIFICATES_REGENERATION_POLL_INTERVAL": "0.2", "LEARN_LOG_LEVEL": "warning"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.certificates", "serve"], env=environ, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def ready(self) -> None:
        async def up() -> bool:
            try:
                async with aiohttp.ClientSession() as session, session.get(
                        f"http://127.0.0.1:{self.port}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(up, timeout=60, interval=0.2, message="the certificates process ready")

    def kill(self) -> None:
        """SIGKILL the whole process group: the service and its render workers die mid-batch."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        headers = self.env.internal_headers(scopes="admin")
        async with aiohttp.ClientSession() as session, session.request(
                method, f"http://127.0.0.1:{self.port}{path}", json=json, headers=headers) as resp:
            return resp.status, await resp.json()


async def test_killed_half_way_and_restarted_still_regenerates_each_certificate_once(test_env, events):
    port = _free_port()
    service = ServiceProcess(test_env, port)
    engine = create_async_engine(test_env.common().database_url("certificates"))
    async with publisher_for(test_env):
        service.start()
        try:
            await service.ready()
            status, created = await service.call("POST", "/admin/v1/cert-templates", json={"name": "Brand"})
            assert status == 201, created
            template_id = created["data"]["id"]
            vids = await seed_certificates(engine, template_id)
            status, _ = await service.call("POST", f"/admin/v1/cert-templates/{template_id}",
                                           json={"title_text": "Certificate of Excellence"})
            assert status == 200
            live = COUNT - COUNT // REVOKED_EVERY
            half = await wait_until(lambda: _at_least(regenerated_count(engine, template_id), live // 3),
                                    timeout=120, interval=0.05, message="a third regenerated")
            service.kill()
            killed_at = await regenerated_count(engine, template_id)
            assert half <= killed_at < live, "the kill must land half-way"

            service.start()
            await service.ready()
            await wait_until(lambda: _equals(regenerated_count(engine, template_id), live), timeout=120,
                             interval=0.5, message=f"{live} regenerated certificates")
            await events.wait_for("certificate.pdf_regenerated", count=live, timeout=120)
            await asyncio.sleep(1.0)
            assert_regenerated_once_each(await state(engine, template_id), vids, events)
        finally:
            if service.process is not None and service.process.poll() is None:
                service.kill()
            await engine.dispose()


async def _at_least(value: Any, minimum: int) -> int | None:
    got = await value
    return got if got >= minimum else None
