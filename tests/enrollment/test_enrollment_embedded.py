"""The embedded default (SQLite + in-process bus) runs the same code: the whole journey on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient, TestServer

from services.enrollment.app import create_app
from services.enrollment.config import EnrollmentSettings
from services.enrollment.sweeper import expire_overdue
from shared.bus.amqp import OutgoingMessage
from shared.bus.envelope import CloudEvent
from shared.bus.inprocess import InProcessBus
from shared.config import CommonSettings
from shared.service import DB_KEY
from tests.enrollment.conftest import EnrollmentService, activity
from tests.support.infra import wait_until


async def test_enroll_complete_cancel_and_expire_on_sqlite(tmp_path, test_env):
    bus = InProcessBus()
    tap = bus.tap("#")
    common = CommonSettings(data_dir=tmp_path, internal_secret=test_env.internal_secret, relay_poll_interval=0.1)
    app = create_app(EnrollmentSettings(common=common, sweeper_enabled=False), bus=bus)
    client = TestClient(TestServer(app))
    await client.start_server()
    seen: list[CloudEvent] = []

    async def published(event_type: str) -> bool:
        while not tap.empty():
            seen.append(CloudEvent.from_bytes(tap.get_nowait()))
        return any(e.event_type == event_type for e in seen)

    try:
        service = EnrollmentService(test_env, client, publisher=None)  # type: ignore[arg-type]

        async def publish(*events: CloudEvent) -> None:
            await bus.publish_many([OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in events])

        service.publish = publish  # type: ignore[method-assign]
        await wait_until(lambda: bus.queues.get("enrollment.runtime") is not None, message="consumers started")
        await service.given_course_and_user(1, 2, [activity(10), activity(11, required=False)])
        enrollment = await service.enroll(2, 1)
        again = await service.enroll(2, 1)
        assert again["id"] == enrollment["id"]
        commit = service.runtime_committed(enrollment, 10, status="passed", delta="5")
        await publish(commit, commit)
        completed = await service.until_status(enrollment["id"], "completed")
        assert completed["progress"] == {"required_total": 1, "required_done": 1}
        await wait_until(lambda: published("enrollment.completed"), message="enrollment.completed")
        done = [e for e in seen if e.event_type == "enrollment.completed"]
        assert len(done) == 1 and done[0].data["course"]["title"] == "Intro to Mobieus"

        await service.publish(service.course_published(3, [activity(30)]))
        await service.until_course(3, version=1)
        other = await service.enroll(2, 3, expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
        assert await expire_overdue(app[DB_KEY], datetime.now(UTC) + timedelta(hours=2)) == 1
        assert (await service.enrollment(other["id"]))["status"] == "expired"
        _, body = await service.call("POST", f"/api/v1/learn/enrollments/{enrollment['id']}/cancel", expect=400)
        assert body["error"]["code"] == "invalid_argument"
    finally:
        await client.close()


async def test_commits_to_one_attempt_add_up_on_sqlite(tmp_path, test_env):
    bus = InProcessBus()
    common = CommonSettings(data_dir=tmp_path, internal_secret=test_env.internal_secret, relay_poll_interval=0.1)
    app = create_app(EnrollmentSettings(common=common, sweeper_enabled=False), bus=bus)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        service = EnrollmentService(test_env, client, publisher=None)  # type: ignore[arg-type]

        async def publish(*events: CloudEvent) -> None:
            await bus.publish_many([OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in events])

        service.publish = publish  # type: ignore[method-assign]
        await wait_until(lambda: bus.queues.get("enrollment.runtime") is not None, message="consumers started")
        await service.given_course_and_user(1, 2, [activity(10, passing="0.8"), activity(11)])
        enrollment = await service.enroll(2, 1)
        attempt = 77
        # out of order: the latest status wins, times add up, the best score is kept
        for sequence, status, score, delta in [(2, "completed", "0.9", "5"), (1, "incomplete", "0.4", "7"),
                                               (3, "failed", "0.6", "1.5")]:
            await publish(service.runtime_committed(enrollment, 10, attempt_id=attempt, sequence=sequence,
                                                    status=status, score_scaled=score, delta=delta))

        async def applied() -> dict | None:
            _, body = await service.call("GET", f"/api/v1/learn/attempts/{attempt}", expect=None)
            return body.get("data") if body.get("data", {}).get("total_time_seconds") == 13.5 else None

        seen = await wait_until(applied, message="three commits applied")
        assert (seen["status"], seen["score_scaled"]) == ("failed", 0.6)
        # activity 10 counted once (completed at 0.9), and the later failed commit took it back
        assert (await service.enrollment(enrollment["id"]))["progress"] == {"required_total": 2, "required_done": 0}
    finally:
        await client.close()
