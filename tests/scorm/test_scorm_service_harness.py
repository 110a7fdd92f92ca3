"""The scorm service on the real PostgreSQL and RabbitMQ, driven over HTTP and fed real events.

Shared by the ``test_scorm_service_*`` and ``test_scorm_browser*`` modules (import the fixtures from here).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from services.scorm.app import create_app
from services.scorm.config import ScormSettings
from services.scorm.store import course_activities, enrollments, scorm_packages
from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import CloudEvent, new_event
from shared.bus.topology import queue
from shared.events.base import Credit
from shared.events.catalog import ActivityNode, CourseArchived, CoursePublished, LessonNode, ModuleNode
from shared.events.enrollment import EnrollmentCancelled, EnrollmentCompleted, EnrollmentCreated
from shared.service import DB_KEY
from tests.support.env import EventRecorder, TestEnv
from tests.support.infra import wait_until

TENANT_ID, TENANT = 1, "acme"
OTHER_TENANT_ID, OTHER_TENANT = 2, "globex"
_ids = itertools.count(5000)


def next_id() -> int:
    return next(_ids)


@dataclass
class ScormService:
    """One running scorm service plus what a test needs around it."""

    env: TestEnv
    client: TestClient
    publisher: AmqpBus
    events: EventRecorder
    fixtures: Path

    @property
    def app(self) -> Any:
        return self.client.server.app

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    def headers(self, tenant_id: int = TENANT_ID, tenant: str = TENANT,
                scopes: str = "learn:read learn:write", **extra: str) -> dict[str, str]:
        return self.env.internal_headers(tenant_id=tenant_id, tenant=tenant, scopes=scopes, **extra)

    def runtime_headers(self) -> dict[str, str]:
        """What the gateway adds on /learn/... paths: the internal credential only."""
        return {"X-Learn-Internal": self.env.internal_secret}

    async def call(self, method: str, path: str, *, json: Any = None, data: Any = None,
                   expect: int | None = None, headers: dict[str, str] | None = None,
                   **header_args: Any) -> tuple[int, dict[str, Any]]:
        sent = headers if headers is not None else self.headers(**header_args)
        async with self.client.request(method, path, json=json, data=data, headers=sent) as resp:
            body = await resp.json()
            if expect is not None:
                assert resp.status == expect, (resp.status, body)
            return resp.status, body

    # --- packages -------------------------------------------------------------------------------------

    async def upload(self, zip_bytes: bytes, *, tenant_id: int = TENANT_ID, tenant: str = TENANT,
                     title: str | None = None, expect: int | None = 201) -> tuple[int, dict[str, Any]]:
        path = "/admin/v1/scorm-packages" + (f"?title={title}" if title else "")
        headers = {**self.headers(tenant_id, tenant, scopes="admin"), "Content-Type": "application/zip"}
        return await self.call("POST", path, data=zip_bytes, headers=headers, expect=expect)

    async def upload_fixture(self, package: str | bytes, **kwargs: Any) -> dict[str, Any]:
        """Upload a fixture package by its name under ``tests/fixtures/scorm``, or a built package's bytes."""
        zip_bytes = package if isinstance(package, bytes) else (self.fixtures / package).read_bytes()
        _, body = await self.upload(zip_bytes, **kwargs)
        return body["data"]

    async def until_imported(self, package_id: int, *, tenant_id: int = TENANT_ID,
                             tenant: str = TENANT) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            _, body = await self.call("GET", f"/admin/v1/scorm-packages/{package_id}",
                                      headers=self.headers(tenant_id, tenant, scopes="admin"))
            return body["data"] if body["data"]["status"] != "processing" else None

        return await wait_until(done, timeout=60, interval=0.1, message=f"package {package_id} imported")

    async def ready_package(self, package: str | bytes, **kwargs: Any) -> dict[str, Any]:
        tenant = {k: v for k, v in kwargs.items() if k in ("tenant_id", "tenant")}
        package = await self.until_imported((await self.upload_fixture(package, **kwargs))["id"], **tenant)
        assert package["status"] == "ready", package
        return package

    async def package_event(self, package_id: int, event_type: str) -> CloudEvent:
        def found() -> CloudEvent | None:
            return next((e for e in self.events.of_type(event_type) if e.data["package_id"] == package_id),
                        None)

        return await wait_until(found, timeout=15, message=f"{event_type} for package {package_id}")

    # --- read models through the broker -------------------------------------------------------------------

    async def publish(self, *events: CloudEvent) -> None:
        await self.publisher.publish_many(
            [OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in events])

    async def scalar(self, stmt: Any) -> Any:
        async with self.app[DB_KEY].engine.connect() as conn:
            return (await conn.execute(stmt)).scalar()

    async def given_course(self, course_id: int, activities: list[dict[str, Any]], *, version: int = 1,
                           revision: int = 1, tenant_id: int = TENANT_ID, tenant: str = TENANT) -> None:
        """``course.published`` with ``activities`` (ActivityNode fields) in one lesson, applied."""
        nodes = [ActivityNode(title=a.pop("title", f"Activity {a['activity_id']}"), position=i, required=True,
                              **a) for i, a in enumerate(dict(a) for a in activities)]
        payload = CoursePublished(
            course_id=course_id, slug=f"course-{course_id}", title="Golf", status="published",
            version_number=version, completion_rule="all_required", credit=Credit(), revision=revision,
            updated_at=datetime.now(UTC), published_at=datetime.now(UTC),
            modules=[ModuleNode(module_id=course_id, title="Module", position=0, lessons=[
                LessonNode(lesson_id=course_id, title="Lesson", position=0, activities=nodes)])],
        )
        await self.publish(new_event("course.published", payload, service="catalog", tenant=tenant,
                                     tenant_id=tenant_id))
        await wait_until(lambda: self.scalar(sa.select(sa.func.count()).select_from(course_activities).where(
            course_activities.c.tenant_id == tenant_id, course_activities.c.course_id == course_id,
            course_activities.c.version_number == version)), timeout=15,
            message=f"course {course_id} v{version}")

    async def archive_course(self, course_id: int, *, revision: int, tenant_id: int = TENANT_ID,
                             tenant: str = TENANT) -> None:
        payload = CourseArchived(course_id=course_id, slug=f"course-{course_id}", title="Golf",
                                 status="archived", version_number=1, completion_rule="all_required",
                                 credit=Credit(), revision=revision, updated_at=datetime.now(UTC))
        await self.publish(new_event("course.archived", payload, service="catalog", tenant=tenant,
                                     tenant_id=tenant_id))

    async def given_enrollment(self, enrollment_id: int, course_id: int, *, user_id: int = 42,
                               status: str = "active", revision: int = 1, version: int = 1,
                               expires_at: datetime | None = None, tenant_id: int = TENANT_ID,
                               tenant: str = TENANT) -> None:
        fields = dict(enrollment_id=enrollment_id, user_id=user_id, course_id=course_id,
                      course_version=version, status=status, source="api", enrolled_at=datetime.now(UTC),
                      expires_at=expires_at, revision=revision)
        event_type, payload = {
            "active": ("enrollment.created", lambda: EnrollmentCreated(**fields)),
            "cancelled": ("enrollment.cancelled", lambda: EnrollmentCancelled(**fields)),
            "completed": ("enrollment.completed", lambda: EnrollmentCompleted(
                **fields, user={"id": user_id, "name": "Ada", "email": "ada@example.com"},
                course={"id": course_id, "title": "Golf", "version": version, "credit": {}},
                progress={"required_total": 1, "required_done": 1})),
        }[status]
        await self.publish(new_event(event_type, payload(), service="enrollment", tenant=tenant,
                                     tenant_id=tenant_id))
        await wait_until(lambda: self.scalar(sa.select(enrollments.c.status).where(
            enrollments.c.tenant_id == tenant_id, enrollments.c.enrollment_id == enrollment_id,
            enrollments.c.revision == revision)), timeout=15,
            message=f"enrollment {enrollment_id} r{revision}")

    # --- launches and the runtime -------------------------------------------------------------------------

    async def launch(self, enrollment_id: int, activity_id: int, *, expect: int | None = 201,
                     **header_args: Any) -> tuple[int, dict[str, Any]]:
        return await self.call("POST", f"/api/v1/learn/enrollments/{enrollment_id}/launches",
                               json={"activity_id": activity_id}, expect=expect, **header_args)

    async def launched(self, package_name: str | bytes | None = None, *, kind: str = "scorm", user_id: int = 42,
                       **activity: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """A ready package (or none), a course with one activity on it, an active enrollment and a launch."""
        course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
        node: dict[str, Any] = {"activity_id": activity_id, "kind": kind, **activity}
        if package_name is not None:
            node["scorm_package_id"] = (await self.ready_package(package_name))["id"]
        await self.given_course(course_id, [node])
        await self.given_enrollment(enrollment_id, course_id, user_id=user_id)
        _, body = await self.launch(enrollment_id, activity_id)
        return body["data"], node

    async def runtime(self, action: str, token: str, body: Any, expect: int | None = 200) -> dict[str, Any]:
        _, answer = await self.call("POST", f"/learn/runtime/{token}/{action}", json=body,
                                    headers=self.runtime_headers(), expect=expect)
        return answer

    async def attempt_events(self, attempt_id: int, count: int) -> list[CloudEvent]:
        def found() -> list[CloudEvent] | None:
            matching = [e for e in self.events.of_type("runtime.committed")
                        if e.data["attempt_id"] == attempt_id]
            return matching if len(matching) >= count else None

        events = await wait_until(found, timeout=15, message=f"{count} runtime.committed for {attempt_id}")
        return sorted(events, key=lambda e: e.data["sequence"])

    async def package_status(self, package_id: int) -> str | None:
        return await self.scalar(sa.select(scorm_packages.c.status).where(scorm_packages.c.id == package_id))


def settings_for(env: TestEnv, **overrides: Any) -> ScormSettings:
    values: dict[str, Any] = {"import_poll_interval": 0.2}
    values.update(overrides)
    return ScormSettings(common=env.common(), **values)


@contextlib.asynccontextmanager
async def running_scorm(env: TestEnv, events: EventRecorder, fixtures: Path,
                        settings: ScormSettings) -> AsyncIterator[ScormService]:
    """A scorm service on a real port, with a publisher whose queues are declared before anything is sent."""
    publisher = AmqpBus(env.amqp_url, service="test", namespace=env.namespace,
                        delivery_limit=env.common().amqp_delivery_limit)
    await publisher.connect(retry_forever=False)
    assert publisher._connection is not None
    channel = await publisher._connection.channel()
    for purpose in ("enrollments", "courses"):
        await publisher.declare_queue(channel, queue("scorm", purpose))
    await channel.close()
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        service = ScormService(env, client, publisher, events, fixtures)
        await wait_until(lambda: _ready(service), timeout=30, message="scorm /readyz")
        yield service
    finally:
        await client.close()
        await publisher.close()


@pytest.fixture(name="scorm")
async def scorm_fixture(test_env: TestEnv, events: EventRecorder,
                        scorm_fixtures_dir: Path) -> AsyncIterator[ScormService]:
    async with running_scorm(test_env, events, scorm_fixtures_dir, settings_for(test_env)) as service:
        yield service


async def _ready(service: ScormService) -> bool:
    async with service.client.get("/readyz") as resp:
        return resp.status == 200


def number(value: Any) -> Decimal:
    return Decimal(str(value))
