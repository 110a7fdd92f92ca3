"""The enrollment service on the real PostgreSQL and RabbitMQ, fed with real events, driven over HTTP."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from services.enrollment.app import create_app
from services.enrollment.config import EnrollmentSettings
from services.enrollment.store import course_versions, courses, directory_users
from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import CloudEvent, new_event
from shared.bus.topology import queue
from shared.events.base import Credit
from shared.events.catalog import (
    ActivityNode,
    CourseArchived,
    CourseCreated,
    CoursePublished,
    CourseUnpublished,
    LessonNode,
    ModuleNode,
)
from shared.events.directory import UserUpserted
from shared.events.scorm import RuntimeCommitted
from shared.service import DB_KEY
from tests.support.env import TestEnv
from tests.support.infra import wait_until

TENANT_ID = 1
TENANT = "acme"
_ids = itertools.count(1000)


def activity(activity_id: int, *, required: bool = True, passing: str | None = None) -> dict[str, Any]:
    return {"activity_id": activity_id, "required": required,
            "passing_score_scaled": None if passing is None else Decimal(passing)}


@dataclass
class EnrollmentService:
    """One running enrollment service plus what a test needs around it."""

    env: TestEnv
    client: TestClient
    publisher: AmqpBus
    revisions: dict[int, int] = field(default_factory=dict)

    @property
    def app(self) -> Any:
        return self.client.server.app

    def headers(self, tenant_id: int = TENANT_ID, tenant: str = TENANT, scopes: str = "learn:read learn:write",
                **extra: str) -> dict[str, str]:
        return self.env.internal_headers(tenant_id=tenant_id, tenant=tenant, scopes=scopes, **extra)

    # --- HTTP ------------------------------------------------------------------------------------------------

    async def call(self, method: str, path: str, *, json: Any = None, expect: int | None = None,
                   **header_args: Any) -> tuple[int, dict[str, Any]]:
        extra = header_args.pop("extra_headers", {})
        headers = {**self.headers(**header_args), **extra}
        async with self.client.request(method, path, json=json, headers=headers) as resp:
            body = await resp.json()
            if expect is not None:
                assert resp.status == expect, (resp.status, body)
            return resp.status, body

    async def enroll(self, user_id: int, course_id: int, **fields: Any) -> dict[str, Any]:
        _, body = await self.call("POST", "/api/v1/learn/enrollments",
                                  json={"user_id": user_id, "course_id": course_id, **fields})
        assert "data" in body, body
        return body["data"]

    async def enrollment(self, enrollment_id: int) -> dict[str, Any]:
        _, body = await self.call("GET", f"/api/v1/learn/enrollments/{enrollment_id}", expect=200)
        return body["data"]

    # --- events on the real broker ----------------------------------------------------------------------------

    async def publish(self, *events: CloudEvent) -> None:
        await self.publisher.publish_many([OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in events])

    def event(self, event_type: str, payload: Any, tenant_id: int = TENANT_ID, tenant: str = TENANT,
              service: str = "test") -> CloudEvent:
        return new_event(event_type, payload, service=service, tenant=tenant, tenant_id=tenant_id,
                         request_id="req_" + "0" * 24)

    def _next_revision(self, course_id: int) -> int:
        self.revisions[course_id] = self.revisions.get(course_id, 0) + 1
        return self.revisions[course_id]

    def course_published(self, course_id: int, activities: list[dict[str, Any]], *, version: int = 1,
                         rule: str = "all_required", title: str = "Intro to Mobieus", template_id: int | None = 7,
                         revision: int | None = None, tenant_id: int = TENANT_ID,
                         tenant: str = TENANT) -> CloudEvent:
        nodes = [ActivityNode(title=f"Activity {a['activity_id']}", position=i, kind="scorm", **a)
                 for i, a in enumerate(activities)]
        payload = CoursePublished(
            course_id=course_id, slug=f"course-{course_id}", title=title, status="published",
            version_number=version, completion_rule=rule, credit=Credit(hours=Decimal("2.5"), kind="CEU"),
            certificate_template_id=template_id, revision=revision or self._next_revision(course_id),
            updated_at=datetime.now(UTC), published_at=datetime.now(UTC),
            modules=[ModuleNode(module_id=course_id * 10, title="Module", position=0, lessons=[
                LessonNode(lesson_id=course_id * 100, title="Lesson", position=0, activities=nodes)])],
        )
        return self.event("course.published", payload, tenant_id, tenant, "catalog")

    def course_changed(self, event_type: str, course_id: int, *, status: str, version: int = 1,
                       revision: int | None = None, tenant_id: int = TENANT_ID, tenant: str = TENANT) -> CloudEvent:
        model = {"course.created": CourseCreated, "course.unpublished": CourseUnpublished,
                 "course.archived": CourseArchived}[event_type]
        payload = model(course_id=course_id, slug=f"course-{course_id}", title="Intro to Mobieus", status=status,
                        version_number=version, completion_rule="all_required", credit=Credit(),
                        revision=revision or self._next_revision(course_id), updated_at=datetime.now(UTC))
        return self.event(event_type, payload, tenant_id, tenant, "catalog")

    def user_upserted(self, user_id: int, *, name: str = "Grace Hopper", email: str = "grace@example.com",
                      revision: int = 1, tenant_id: int = TENANT_ID, tenant: str = TENANT) -> CloudEvent:
        payload = UserUpserted(user_id=user_id, name=name, email=email, revision=revision,
                               updated_at=datetime.now(UTC))
        return self.event("user.upserted", payload, tenant_id, tenant, "gateway")

    def runtime_committed(self, enrollment: dict[str, Any], activity_id: int, *, attempt_id: int | None = None,
                          sequence: int = 1, status: str = "completed", score_scaled: str | None = None,
                          delta: str = "0", tenant_id: int = TENANT_ID, tenant: str = TENANT) -> CloudEvent:
        payload = RuntimeCommitted(
            attempt_id=attempt_id or next(_ids), enrollment_id=enrollment["id"], activity_id=activity_id,
            user_id=enrollment["user_id"], course_id=enrollment["course_id"], sequence=sequence, standard="2004",
            status=status, score_scaled=None if score_scaled is None else Decimal(score_scaled),
            passed=True if status == "passed" else None, session_time_delta_seconds=Decimal(delta),
            time_started_at=datetime.now(UTC),
        )
        return self.event("runtime.committed", payload, tenant_id, tenant, "scorm")

    async def dead_letters(self, purpose: str) -> list[dict[str, Any]]:
        """Bodies waiting in ``enrollment.<purpose>.dlq`` (left there: unacked, the channel's close returns them)."""
        import json

        import aio_pika

        connection = await aio_pika.connect(self.env.amqp_url)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.declare_queue(self.env.namespace + queue("enrollment", purpose).dead_letter_name,
                                              passive=True)
            bodies = []
            while (message := await dlq.get(fail=False, no_ack=False)) is not None and len(bodies) < 50:
                bodies.append(json.loads(message.body))
            return bodies

    # --- waiting for the read models ------------------------------------------------------------------------

    async def scalar(self, stmt: Any) -> Any:
        async with self.app[DB_KEY].engine.connect() as conn:
            return (await conn.execute(stmt)).scalar()

    async def until_course(self, course_id: int, *, status: str = "published", version: int | None = None,
                           tenant_id: int = TENANT_ID) -> None:
        async def ready() -> bool:
            held = await self.scalar(sa.select(courses.c.status).where(
                courses.c.tenant_id == tenant_id, courses.c.course_id == course_id))
            if held != status:
                return False
            if version is None:
                return True
            return bool(await self.scalar(sa.select(sa.func.count()).select_from(course_versions).where(
                course_versions.c.tenant_id == tenant_id, course_versions.c.course_id == course_id,
                course_versions.c.version_number == version)))

        await wait_until(ready, timeout=15, message=f"course {course_id} {status} v{version}")

    async def until_user(self, user_id: int, *, revision: int = 1, tenant_id: int = TENANT_ID) -> None:
        async def ready() -> bool:
            held = await self.scalar(sa.select(directory_users.c.revision).where(
                directory_users.c.tenant_id == tenant_id, directory_users.c.user_id == user_id))
            return held is not None and held >= revision

        await wait_until(ready, timeout=15, message=f"user {user_id} revision {revision}")

    async def given_course_and_user(self, course_id: int, user_id: int, activities: list[dict[str, Any]],
                                    **course: Any) -> None:
        """A published course and a directory user, delivered through the broker and applied."""
        await self.publish(self.course_published(course_id, activities, **course), self.user_upserted(user_id))
        await self.until_course(course_id, version=course.get("version", 1))
        await self.until_user(user_id)

    async def until_status(self, enrollment_id: int, status: str, timeout: float = 15) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            data = await self.enrollment(enrollment_id)
            return data if data["status"] == status else None

        return await wait_until(reached, timeout=timeout, message=f"enrollment {enrollment_id} {status}")


async def start_service(test_env: TestEnv, **settings: Any) -> tuple[TestClient, AmqpBus]:
    app = create_app(EnrollmentSettings(common=test_env.common(), **settings))
    client = TestClient(TestServer(app))
    await client.start_server()
    common = test_env.common()
    publisher = AmqpBus(test_env.amqp_url, service="test", namespace=test_env.namespace,
                        delivery_limit=common.amqp_delivery_limit)
    await publisher.connect(retry_forever=False)
    # Declare the service's queues before publishing, so nothing is published before they are bound.
    assert publisher._connection is not None
    channel = await publisher._connection.channel()
    for purpose in ("courses", "users", "runtime"):
        await publisher.declare_queue(channel, queue("enrollment", purpose))
    await channel.close()
    return client, publisher


@pytest.fixture
async def service(test_env: TestEnv) -> AsyncIterator[EnrollmentService]:
    client, publisher = await start_service(test_env, sweeper_enabled=False)
    try:
        yield EnrollmentService(test_env, client, publisher)
    finally:
        await publisher.close()
        await client.close()


@pytest.fixture
def ids() -> itertools.count:
    """Fresh ids per use, so tests never collide on course, user or attempt ids."""
    return _ids
