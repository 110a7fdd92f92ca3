"""The embedded default (SQLite, files under the data dir, in-process bus) runs the same code end to end."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from services.scorm.app import create_app
from services.scorm.config import ScormSettings
from shared.bus.amqp import OutgoingMessage
from shared.bus.envelope import CloudEvent
from shared.bus.inprocess import InProcessBus
from shared.config import CommonSettings
from tests.scorm.test_scorm_service_harness import ScormService, next_id
from tests.support.infra import wait_until


async def test_upload_launch_play_and_commit_on_sqlite_and_files(tmp_path: Path, test_env,
                                                                  scorm_fixtures_dir: Path) -> None:
    bus = InProcessBus()
    tap = bus.tap("#")
    common = CommonSettings(data_dir=tmp_path, internal_secret=test_env.internal_secret,
                            relay_poll_interval=0.1)
    app = create_app(ScormSettings(common=common, import_poll_interval=0.1), bus=bus)
    client = TestClient(TestServer(app))
    await client.start_server()
    seen: list[CloudEvent] = []

    def published(event_type: str) -> list[CloudEvent]:
        while not tap.empty():
            seen.append(CloudEvent.from_bytes(tap.get_nowait()))
        return [e for e in seen if e.event_type == event_type]

    async def publish(*events: CloudEvent) -> None:
        await bus.publish_many([OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in events])

    try:
        scorm = ScormService(test_env, client, publisher=None, events=None,  # type: ignore[arg-type]
                             fixtures=scorm_fixtures_dir)
        scorm.publish = publish  # type: ignore[method-assign]
        await wait_until(lambda: bus.queues.get("scorm.courses") is not None, message="consumers started")

        package = await scorm.ready_package("golf_scorm12_singlesco.zip")
        assert (tmp_path / "scorm-blobs" / "packages" / "1" / str(package["id"]) / "shared" /
                "launchpage.html").is_file()
        await wait_until(lambda: published("scorm_package.ready"), message="scorm_package.ready")

        course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
        await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "scorm",
                                              "scorm_package_id": package["id"]}])
        await scorm.given_enrollment(enrollment_id, course_id)
        launch = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
        token = launch["runtime_token"]
        async with client.get(f"/learn/content/{token}/shared/launchpage.html",
                              headers=scorm.runtime_headers()) as resp:
            assert resp.status == 200 and b"Not implemented yet" in await resp.read()
        await scorm.runtime("finish", token, {"cmi": {"cmi.core.lesson_status": "completed",
                                                      "cmi.core.session_time": "00:00:42"}})
        commits = await wait_until(lambda: (c := published("runtime.committed")) and len(c) == 2 and c,
                                   message="two runtime.committed")
        assert [(c.data["sequence"], c.data["status"], c.data["session_time_delta_seconds"])
                for c in commits] == [(0, "not_attempted", 0), (1, "completed", 42)]
    finally:
        await client.close()
