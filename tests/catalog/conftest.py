"""A catalog service on the real PostgreSQL and RabbitMQ, and a small client speaking for the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.catalog.app import create_app
from services.catalog.config import CatalogSettings
from tests.support.env import TestEnv

PUBLIC = "/api/v1/learn"
ADMIN = "/admin/v1"


@dataclass(frozen=True)
class Tenant:
    id: int
    slug: str


ACME = Tenant(1, "acme")
GLOBEX = Tenant(2, "globex")


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

    async def call(self, method: str, path: str, json: Any = None, *, tenant: Tenant = ACME,
                   scopes: str = "learn:read learn:write", **headers: str) -> Response:
        all_headers = self.env.internal_headers(tenant_id=tenant.id, tenant=tenant.slug, scopes=scopes)
        all_headers.update(headers)
        resp = await self.client.request(method, path, json=json, headers=all_headers)
        return Response(resp.status, await resp.json())

    async def public(self, method: str, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.call(method, PUBLIC + path, json, **kw)

    async def admin(self, method: str, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.call(method, ADMIN + path, json, scopes="admin", **kw)

    async def create_course(self, slug: str = "intro", tenant: Tenant = ACME, **fields: Any) -> dict[str, Any]:
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

    async def transition(self, course_id: int, action: str, tenant: Tenant = ACME) -> Response:
        return await self.public("POST", f"/courses/{course_id}/{action}", tenant=tenant)


@pytest.fixture
async def catalog(test_env: TestEnv) -> AsyncIterator[CatalogApi]:
    app = create_app(CatalogSettings(common=test_env.common()))
    async with TestClient(TestServer(app)) as client:
        yield CatalogApi(client, test_env)
