"""Learner names at launch: the scorm service's users read model, fed real ``user.upserted`` events.

The SCO gets the directory's full name (1.2 ``cmi.core.student_name``, 2004 ``cmi.learner_name``) and the user id
(``student_id`` / ``learner_id``), as of the launch; see docs/scorm.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services.scorm.store import users
from shared.bus.envelope import CloudEvent, new_event
from shared.bus.tables import inbox
from shared.bus.topology import queue
from shared.events.directory import UserUpserted
from tests.scorm.test_scorm_service_harness import (  # noqa: F401
    OTHER_TENANT,
    OTHER_TENANT_ID,
    TENANT,
    TENANT_ID,
    ScormService,
    next_id,
    scorm_fixture,
)
from tests.scorm.test_scorm_service_runtime import get, state_of
from tests.support.infra import wait_until

GOLF_12 = "golf_scorm12_singlesco.zip"


@pytest.fixture
async def service(scorm: ScormService) -> AsyncIterator[ScormService]:
    """The scorm service with its users queue declared, so events published before it consumes are kept."""
    assert scorm.publisher._connection is not None
    channel = await scorm.publisher._connection.channel()
    await scorm.publisher.declare_queue(channel, queue("scorm", "users"))
    await channel.close()
    yield scorm


def user_upserted(user_id: int, name: str, revision: int, *, tenant_id: int = TENANT_ID,
                  tenant: str = TENANT) -> CloudEvent:
    payload = UserUpserted(user_id=user_id, name=name, email=f"user{user_id}@example.com", revision=revision,
                           updated_at=datetime.now(UTC))
    return new_event("user.upserted", payload, service="gateway", tenant=tenant, tenant_id=tenant_id,
                     subject=f"user/{user_id}")


async def handled(scorm: ScormService, *events: CloudEvent) -> None:
    """Publish the events and wait until the scorm service has consumed each (applied or not)."""
    await scorm.publish(*events)
    ids = [event.id for event in events]
    await wait_until(lambda: _all_in_inbox(scorm, ids), timeout=15, message=f"user.upserted {ids} consumed")


async def _all_in_inbox(scorm: ScormService, ids: list[str]) -> bool:
    count = await scorm.scalar(sa.select(sa.func.count()).select_from(inbox).where(
        inbox.c.consumer == "scorm.users", inbox.c.event_id.in_(ids)))
    return count == len(ids)


async def launch_of(scorm: ScormService, user_id: int, **package: str) -> tuple[int, int]:
    """An active enrollment of ``user_id`` in a one-activity course: (enrollment_id, activity_id).

    Without ``package`` the activity is a reading (the built-in page, SCORM 2004)."""
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    node: dict = {"activity_id": activity_id, "kind": "reading"}
    if "package" in package:
        node = {"activity_id": activity_id, "kind": "scorm",
                "scorm_package_id": (await scorm.ready_package(package["package"]))["id"]}
    await scorm.given_course(course_id, [node])
    await scorm.given_enrollment(enrollment_id, course_id, user_id=user_id)
    return enrollment_id, activity_id


async def player_cmi(scorm: ScormService, enrollment_id: int, activity_id: int) -> dict[str, str]:
    """Launch, open the player page and return the CMI values it starts the SCO with."""
    launch = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    return await reloaded_cmi(scorm, launch["runtime_token"])


async def reloaded_cmi(scorm: ScormService, token: str) -> dict[str, str]:
    status, _, html = await get(scorm, f"/learn/player/{token}")
    assert status == 200, html[:300]
    return state_of(html)["cmi"]


async def test_a_2004_launch_carries_the_learners_directory_name_and_user_id(service: ScormService) -> None:
    user_id = next_id()
    await handled(service, user_upserted(user_id, "Ada Lovelace", 1))
    cmi = await player_cmi(service, *await launch_of(service, user_id))
    assert (cmi["cmi.learner_name"], cmi["cmi.learner_id"]) == ("Ada Lovelace", str(user_id))


async def test_a_1_2_launch_carries_the_full_name_unsplit_as_student_name(service: ScormService) -> None:
    user_id = next_id()
    await handled(service, user_upserted(user_id, "Ludwig van Beethoven", 1))
    cmi = await player_cmi(service, *await launch_of(service, user_id, package=GOLF_12))
    assert (cmi["cmi.core.student_name"], cmi["cmi.core.student_id"]) == ("Ludwig van Beethoven", str(user_id))


async def test_a_newer_revision_names_the_learner_in_later_launches(service: ScormService) -> None:
    user_id = next_id()
    enrollment = await launch_of(service, user_id)
    await handled(service, user_upserted(user_id, "Ada Byron", 1))
    await handled(service, user_upserted(user_id, "Ada King", 2))
    assert (await player_cmi(service, *enrollment))["cmi.learner_name"] == "Ada King"


async def test_an_older_revision_arriving_late_never_brings_an_old_name_back(service: ScormService) -> None:
    user_id = next_id()
    enrollment = await launch_of(service, user_id)
    await handled(service, user_upserted(user_id, "Ada King", 3))
    await handled(service, user_upserted(user_id, "Ada Byron", 1), user_upserted(user_id, "Ada Lovelace", 2))
    assert (await player_cmi(service, *enrollment))["cmi.learner_name"] == "Ada King"
    assert await service.scalar(sa.select(users.c.revision).where(
        users.c.tenant_id == TENANT_ID, users.c.user_id == user_id)) == 3


async def test_a_repeated_revision_changes_nothing(service: ScormService) -> None:
    user_id = next_id()
    enrollment = await launch_of(service, user_id)
    await handled(service, user_upserted(user_id, "Ada King", 2))
    await handled(service, user_upserted(user_id, "Someone Else", 2))  # same revision, another event id
    assert (await player_cmi(service, *enrollment))["cmi.learner_name"] == "Ada King"


async def test_an_open_launch_keeps_the_name_it_started_with(service: ScormService) -> None:
    user_id = next_id()
    enrollment = await launch_of(service, user_id)
    await handled(service, user_upserted(user_id, "Ada Byron", 1))
    token = (await service.launch(*enrollment))[1]["data"]["runtime_token"]
    await handled(service, user_upserted(user_id, "Ada King", 2))
    assert (await reloaded_cmi(service, token))["cmi.learner_name"] == "Ada Byron"


async def test_an_unknown_user_launches_with_an_empty_name(service: ScormService) -> None:
    user_id = next_id()
    cmi = await player_cmi(service, *await launch_of(service, user_id))
    assert (cmi["cmi.learner_name"], cmi["cmi.learner_id"]) == ("", str(user_id))


async def test_another_tenants_user_with_the_same_id_does_not_name_the_learner(service: ScormService) -> None:
    user_id = next_id()
    await handled(service, user_upserted(user_id, "Globex Person", 1, tenant_id=OTHER_TENANT_ID,
                                         tenant=OTHER_TENANT))
    cmi = await player_cmi(service, *await launch_of(service, user_id))
    assert cmi["cmi.learner_name"] == ""
