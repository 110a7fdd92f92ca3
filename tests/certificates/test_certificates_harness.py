"""The certificates service as the tests drive it: running on the real PostgreSQL and RabbitMQ, fed with real
events, called over HTTP with the headers the gateway adds. (This module holds no tests: the others import it.)"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image, ImageDraw
from pypdf import PdfReader
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfgen.canvas import Canvas

from services.certificates.app import create_app
from services.certificates.config import CertificatesSettings
from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import CloudEvent, new_event
from shared.bus.topology import queue
from shared.events.base import Credit
from shared.events.directory import UserUpserted
from shared.events.enrollment import CompletedCourse, CompletedUser, EnrollmentCompleted, Progress
from shared.service import DB_KEY
from tests.support.env import TestEnv
from tests.support.infra import wait_until

TENANT_ID = 1
TENANT = "acme"
TENANT_NAME = "Acme Academy"
PURPOSES = ("issue", "regenerate", "users")
ids = itertools.count(10_000)


def completed(enrollment_id: int, *, user_id: int | None = None, name: str = "Zoë Łukasiewicz-Ångström",
              title: str = "Intro to Mobieus", hours: str | None = "2.5", kind: str | None = "CEU",
              months: int | None = 24, template_id: int | None = None, tenant_name: str = TENANT_NAME,
              completed_at: datetime | None = None) -> EnrollmentCompleted:
    """An ``enrollment.completed`` payload as the enrollment service sends it."""
    now = completed_at or datetime(2026, 6, 2, 10, 0, tzinfo=UTC)
    return EnrollmentCompleted(
        enrollment_id=enrollment_id, user_id=user_id or enrollment_id + 1, course_id=42, course_version=1,
        status="completed", source="api", enrolled_at=now, completed_at=now, revision=3,
        user=CompletedUser(id=user_id or enrollment_id + 1, name=name, email="learner@example.com"),
        course=CompletedCourse(id=42, title=title, version=1,
                               credit=Credit(hours=Decimal(hours) if hours else None, kind=kind,
                                             expires_after_months=months),
                               certificate_template_id=template_id),
        progress=Progress(required_total=1, required_done=1), tenant_name=tenant_name,
    )


def logo_png(size: tuple[int, int] = (240, 80)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, size[1] - 4, size[1] - 4), fill=(200, 80, 40, 255))
    draw.rectangle((size[1] + 8, size[1] // 3, size[0] - 8, 2 * size[1] // 3), fill=(40, 60, 120, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def background_pdf(pages: int = 1) -> bytes:
    out = io.BytesIO()
    width, height = landscape(A4)
    canvas = Canvas(out, pagesize=(width, height))
    for page in range(pages):
        canvas.setFillColorRGB(0.95, 0.97, 1)
        canvas.rect(0, 0, width, height, stroke=0, fill=1)
        canvas.setStrokeColorRGB(0.2, 0.4, 0.7)
        canvas.setLineWidth(8)
        canvas.rect(14, 14, width - 28, height - 28)
        canvas.drawString(30, 30, f"Background artwork {page + 1}")
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)


@dataclass
class CertificatesService:
    env: TestEnv
    client: TestClient
    publisher: AmqpBus

    @property
    def app(self) -> Any:
        return self.client.server.app

    @property
    def engine(self) -> Any:
        return self.app[DB_KEY].engine

    def headers(self, tenant_id: int = TENANT_ID, tenant: str = TENANT,
                scopes: str = "learn:read learn:write") -> dict[str, str]:
        headers = self.env.internal_headers(tenant_id=tenant_id, tenant=tenant, scopes=scopes)
        headers["X-Learn-Tenant-Name"] = "Acme%20Academy" if tenant == TENANT else tenant.title()
        return headers

    async def call(self, method: str, path: str, *, json: Any = None, expect: int | None = None,
                   tenant_id: int = TENANT_ID, tenant: str = TENANT,
                   scopes: str = "learn:read learn:write") -> tuple[int, dict[str, Any]]:
        async with self.client.request(method, path, json=json,
                                       headers=self.headers(tenant_id, tenant, scopes)) as resp:
            body = await resp.json()
            if expect is not None:
                assert resp.status == expect, (resp.status, body)
            return resp.status, body

    async def admin(self, method: str, path: str, *, json: Any = None, expect: int | None = None,
                    tenant_id: int = TENANT_ID, tenant: str = TENANT) -> tuple[int, dict[str, Any]]:
        return await self.call(method, "/admin/v1" + path, json=json, expect=expect, tenant_id=tenant_id,
                               tenant=tenant, scopes="admin")

    async def certificate(self, certificate_id: int, **kw: Any) -> dict[str, Any]:
        _, body = await self.call("GET", f"/api/v1/learn/certificates/{certificate_id}", expect=200, **kw)
        return body["data"]

    async def pdf(self, certificate_id: int) -> bytes:
        async with self.client.get(f"/api/v1/learn/certificates/{certificate_id}/pdf",
                                   headers=self.headers()) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.content_type == "application/pdf"
            return await resp.read()

    async def create_template(self, **fields: Any) -> dict[str, Any]:
        _, body = await self.admin("POST", "/cert-templates", json={"name": "Brand", **fields}, expect=201)
        return body["data"]

    # --- events -------------------------------------------------------------------------------------------

    def event(self, event_type: str, payload: Any, *, tenant_id: int = TENANT_ID, tenant: str = TENANT,
              service: str = "enrollment") -> CloudEvent:
        return new_event(event_type, payload, service=service, tenant=tenant, tenant_id=tenant_id,
                         request_id="req_" + "0" * 24)

    def completion(self, enrollment_id: int, **fields: Any) -> CloudEvent:
        tenant_id = fields.pop("tenant_id", TENANT_ID)
        tenant = fields.pop("tenant", TENANT)
        return self.event("enrollment.completed", completed(enrollment_id, **fields), tenant_id=tenant_id,
                          tenant=tenant)

    def user_upserted(self, user_id: int, name: str, revision: int) -> CloudEvent:
        return self.event("user.upserted", UserUpserted(user_id=user_id, name=name, email="u@example.com",
                                                        revision=revision, updated_at=datetime.now(UTC)),
                          service="gateway")

    async def publish(self, *events: CloudEvent | bytes, routing_key: str | None = None) -> None:
        await self.publisher.publish_many([
            OutgoingMessage(routing_key or "", e, "raw") if isinstance(e, bytes)
            else OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in events])

    async def rows(self, stmt: Any) -> list[Any]:
        async with self.app[DB_KEY].engine.connect() as conn:
            return list((await conn.execute(stmt)).all())

    async def scalar(self, stmt: Any) -> Any:
        async with self.app[DB_KEY].engine.connect() as conn:
            return (await conn.execute(stmt)).scalar()

    async def issued(self, enrollment_id: int, timeout: float = 20) -> dict[str, Any]:
        """Wait for the enrollment's certificate and return it as the API shows it."""
        from services.certificates.store import certificates

        stmt = sa.select(certificates.c.id).where(certificates.c.enrollment_id == enrollment_id)
        certificate_id = await wait_until(lambda: self.scalar(stmt), timeout=timeout,
                                          message=f"a certificate for enrollment {enrollment_id}")
        return await self.certificate(certificate_id)

    async def dead_letters(self, purpose: str) -> list[dict[str, Any]]:
        connection = await aio_pika.connect(self.env.amqp_url)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.declare_queue(self.env.namespace + queue("certificates", purpose).dead_letter_name,
                                              passive=True)
            bodies = []
            while (message := await dlq.get(fail=False, no_ack=False)) is not None and len(bodies) < 50:
                try:
                    bodies.append(json.loads(message.body))
                except ValueError:
                    bodies.append({"raw": message.body})
            return bodies


async def start_app(env: TestEnv, **settings: Any) -> TestClient:
    values: dict[str, Any] = {"render_workers": 2, "regeneration_poll_interval": 0.2, "consumer_concurrency": 4}
    values.update(settings)
    # Four consumer batches per queue at once: the test PostgreSQL is shared by everything running at the same time.
    app = create_app(CertificatesSettings(common=env.common(amqp_prefetch=8), **values))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def close_app(client: TestClient) -> None:
    """Stop a service. On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that lands as its inner
    wait completes; the outbox relay waits that way (shared/bus/relay.py), so its task may ignore the shutdown's
    cancel and loop on: cancel it again until the shutdown completes."""
    closing = asyncio.ensure_future(client.close())
    while not closing.done():
        await asyncio.wait({closing}, timeout=2)
        for task in asyncio.all_tasks():
            if task.get_name().endswith("-relay") and task.cancelling() and not task.done():
                task.cancel()
    await closing


async def declare_queues(publisher: AmqpBus) -> None:
    """Bind the service's queues before publishing, so that nothing is published before they exist."""
    assert publisher._connection is not None
    channel = await publisher._connection.channel()
    for purpose in PURPOSES:
        await publisher.declare_queue(channel, queue("certificates", purpose))
    await channel.close()


@asynccontextmanager
async def publisher_for(env: TestEnv) -> AsyncIterator[AmqpBus]:
    publisher = AmqpBus(env.amqp_url, service="test", namespace=env.namespace,
                        delivery_limit=env.common().amqp_delivery_limit)
    await publisher.connect(retry_forever=False)
    await declare_queues(publisher)
    try:
        yield publisher
    finally:
        await publisher.close()


@asynccontextmanager
async def running_service(env: TestEnv, **settings: Any) -> AsyncIterator[CertificatesService]:
    """One certificates service (a replica) with a publisher of test events."""
    async with publisher_for(env) as publisher:
        client = await start_app(env, **settings)
        try:
            yield CertificatesService(env, client, publisher)
        finally:
            await close_app(client)
