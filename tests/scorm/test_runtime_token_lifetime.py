"""Runtime tokens end when their purpose ends (docs/scorm-runtime.md, ADR 0010): after finish, when the enrollment
is cancelled or expires, while the tenant is suspended. Then the player, the content and the runtime answer
``410 launch_ended`` (the player with a small HTML page), never the files. A completed enrollment ends nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.scorm.store import tenants
from shared.bus.envelope import new_event
from shared.events.directory import TenantUpdated
from tests.scorm.test_scorm_service_harness import (  # noqa: F401
    TENANT,
    TENANT_ID,
    ScormService,
    next_id,
    scorm_fixture,
)
from tests.support.infra import wait_until

GOLF_12 = "golf_scorm12_singlesco.zip"
FILE = "shared/launchpage.html"


async def a_launch(scorm: ScormService) -> tuple[str, int, int]:
    package = await scorm.ready_package(GOLF_12)
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "scorm",
                                          "scorm_package_id": package["id"]}])
    await scorm.given_enrollment(enrollment_id, course_id)
    launch = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    return launch["runtime_token"], enrollment_id, course_id


async def answers(scorm: ScormService, token: str) -> dict[str, Any]:
    """What each runtime path answers for ``token``: status (and the error code or the page)."""
    headers = scorm.runtime_headers()
    found: dict[str, Any] = {}
    async with scorm.client.get(f"/learn/player/{token}", headers=headers) as resp:
        found["player"] = (resp.status, resp.headers["Content-Type"].split(";")[0], await resp.text())
    async with scorm.client.get(f"/learn/content/{token}/{FILE}", headers=headers) as resp:
        body = await resp.read()
        found["content"] = (resp.status, (await resp.json())["error"]["code"] if resp.status != 200 else body[:20])
    for action in ("commit", "finish"):
        status, body = await scorm.call("POST", f"/learn/runtime/{token}/{action}",
                                        json={"cmi": {"cmi.core.lesson_status": "incomplete"}}, headers=headers)
        found[action] = (status, body["error"]["code"] if status != 200 else body["data"]["finished"])
    return found


def ended(found: dict[str, Any], words: str) -> None:
    status, ctype, page = found["player"]
    assert (status, ctype) == (410, "text/html") and words in page and "learn-runtime-state" not in page
    assert found["content"] == (410, "launch_ended")
    assert found["commit"] == found["finish"] == (410, "launch_ended")


async def test_finishing_ends_the_token_for_the_player_and_the_content(scorm: ScormService) -> None:
    token, _, _ = await a_launch(scorm)
    await scorm.runtime("finish", token, None)
    found = await answers(scorm, token)
    assert found["player"][0] == 410 and found["content"] == (410, "launch_ended")
    assert found["commit"] == (410, "launch_ended") and found["finish"] == (200, True)  # a repeated finish


async def test_a_cancelled_enrollment_ends_its_launches(scorm: ScormService) -> None:
    token, enrollment_id, course_id = await a_launch(scorm)
    await scorm.runtime("commit", token, {"cmi": {"cmi.core.lesson_status": "incomplete"}})
    await scorm.given_enrollment(enrollment_id, course_id, status="cancelled", revision=2)
    ended(await answers(scorm, token), "cancelled")


async def test_an_enrollment_past_its_expiry_ends_its_launches_before_the_expiry_event(scorm: ScormService) -> None:
    token, enrollment_id, course_id = await a_launch(scorm)
    # The enrollment's expires_at moved into the past (the sweeper's enrollment.expired has not come yet).
    await scorm.given_enrollment(enrollment_id, course_id, revision=2,
                                 expires_at=datetime.now(UTC) - timedelta(seconds=1))
    ended(await answers(scorm, token), "expired")


async def test_a_completed_enrollment_keeps_its_open_launch_for_the_finish(scorm: ScormService) -> None:
    token, enrollment_id, course_id = await a_launch(scorm)
    await scorm.given_enrollment(enrollment_id, course_id, status="completed", revision=2)
    found = await answers(scorm, token)
    assert found["player"][0] == 200 and found["content"][0] == 200
    assert found["commit"] == (200, False) and found["finish"] == (200, True)


async def tenant_is(scorm: ScormService, status: str, at: datetime) -> None:
    await scorm.publish(new_event("tenant.updated", TenantUpdated(status=status, updated_at=at), service="gateway",
                                  tenant=TENANT, tenant_id=TENANT_ID))

    async def recorded() -> bool:
        held = await scorm.scalar(sa.select(tenants.c.updated_at).where(tenants.c.tenant_id == TENANT_ID))
        return held is not None and held.replace(tzinfo=UTC) >= at

    await wait_until(recorded, timeout=30, message=f"tenant {status}")


async def test_a_suspended_tenants_launches_end_while_it_is_suspended(scorm: ScormService) -> None:
    token, _, _ = await a_launch(scorm)
    suspended_at = datetime.now(UTC)
    await tenant_is(scorm, "suspended", suspended_at)
    ended(await answers(scorm, token), "suspended")
    # A late, older "active" changes nothing; a newer one brings the open launch back.
    await scorm.publish(new_event("tenant.updated", TenantUpdated(
        status="active", updated_at=suspended_at - timedelta(minutes=1)), service="gateway", tenant=TENANT,
        tenant_id=TENANT_ID))
    await tenant_is(scorm, "active", suspended_at + timedelta(seconds=1))
    found = await answers(scorm, token)
    assert found["player"][0] == 200 and found["commit"] == (200, False)
