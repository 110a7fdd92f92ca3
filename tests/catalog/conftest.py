"""A catalog service on the real PostgreSQL and RabbitMQ, and a small client speaking for the gateway.

One service (database, queues) per test module keeps the suite fast; each test gets tenants of its own, so tests
cannot see each other's courses (the service's tenant isolation is itself under test in
test_catalog_isolation.py). Test modules run on the module's event loop:
``pytestmark = pytest.mark.asyncio(loop_scope="module")``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from services.catalog.app import create_app
from services.catalog.config import CatalogSettings
from shared.bus.envelope import CloudEvent
from tests.support.env import EventRecorder, TestEnv

PUBLIC = "/api/v1/learn"
ADMIN = "/admin/v1"


@dataclass(frozen=True)
class Tenant:
    id: int
    slug: str


_tenant_ids = itertools.count(1)


def new_tenant(name: str = "acme") -> Tenant:
    tenant_id = next(_tenant_ids)
    return Tenant(tenant_id, f"{name}{tenant_id}")


@dataclass
class Response:
    status: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        assert self.status < 300, f"expected success, got {self.status}: {self.body}"
        return self.body["data"]

    @property
    def error(self) -> dict[str, Any]:
        assert self.status >= 400, f"expected an error, got {self.status}: {self.body}"
        return self.body["error"]


@dataclass
class CatalogApi:
    """Calls the service directly with the headers the gateway would forward."""

    client: TestClient
    env: TestEnv
    recorder: EventRecorder
    tenant: Tenant = field(default_factory=new_tenant)

    async def call(self, method: str, path: str, json: Any = None, *, tenant: Tenant | None = None,
                   scopes: str = "learn:read learn:write", **headers: str) -> Response:
        tenant = tenant or self.tenant
        all_headers = self.env.internal_headers(tenant_id=tenant.id, tenant=tenant.slug, scopes=scopes)
        all_headers.update(headers)
        resp = await self.client.request(method, path, json=json, headers=all_headers)
        return Response(resp.status, await resp.json())

    async def public(self, method: str, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.call(method, PUBLIC + path, json, **kw)

    async def admin(self, method: str, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.call(method, ADMIN + path, json, scopes="admin", **kw)

    async def create_course(self, slug: str = "intro", tenant: Tenant | None = None, **fields: Any) -> dict[str, Any]:
        body = {"slug": slug, "title": fields.pop("title", f"Course {slug}"), **fields}
        return (await self.public("POST", "/courses", body, tenant=tenant)).data

    async def add_module(self, course_id: int, title: str = "Module", **kw: Any) -> dict[str, Any]:
        return (await self.admin("POST", f"/courses/{course_id}/modules", {"title": title, **kw})).data

    async def add_lesson(self, module_id: int, title: str = "Lesson", **kw: Any) -> dict[str, Any]:
        return (await self.admin("POST", f"/modules/{module_id}/lessons", {"title": title, **kw})).data

    async def add_activity(self, lesson_id: int, title: str = "Activity", kind: str = "video",
                           **kw: Any) -> dict[str, Any]:
        body = {"title": title, "kind": kind, **kw}
        return (await self.admin("POST", f"/lessons/{lesson_id}/activities", body)).data

    async def publishable_course(self, slug: str = "ready", **fields: Any) -> dict[str, Any]:
        """A draft course with one module, one lesson and one required video activity."""
        course = await self.create_course(slug, **fields)
        module = await self.add_module(course["id"])
        lesson = await self.add_lesson(module["id"])
        await self.add_activity(lesson["id"])
        return course

    async def transition(self, course_id: int, action: str, tenant: Tenant | None = None) -> Response:
        return await self.public("POST", f"/courses/{course_id}/{action}", tenant=tenant)

    def events(self, event_type: str, tenant: Tenant | None = None) -> list[CloudEvent]:
        slug = (tenant or self.tenant).slug
        return [e for e in self.recorder.of_type(event_type) if e.tenant == slug]

    async def wait_for_events(self, event_type: str, count: int = 1, tenant: Tenant | None = None
                              ) -> list[CloudEvent]:
        from tests.support.infra import wait_until

        await wait_until(lambda: len(self.events(event_type, tenant)) >= count, timeout=15,
                         message=f"{count} x {event_type}")
        return self.events(event_type, tenant)


@dataclass
class CatalogService:
    client: TestClient
    env: TestEnv
    recorder: EventRecorder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def catalog_service(postgres_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
                          ) -> AsyncIterator[CatalogService]:
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp_path_factory.mktemp("catalog"))
    recorder = EventRecorder(env)
    await recorder.start()
    try:
        app = create_app(CatalogSettings(common=env.common()))
        async with TestClient(TestServer(app)) as client:
            yield CatalogService(client, env, recorder)
    finally:
        await recorder.stop()
        await env.cleanup()


@pytest.fixture
def catalog(catalog_service: CatalogService) -> CatalogApi:
    """The module's catalog service, seen from a tenant no other test uses."""
    return CatalogApi(catalog_service.client, catalog_service.env, catalog_service.recorder)
