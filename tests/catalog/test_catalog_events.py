"""Course events on the real broker, and the scorm_package read model that publishing checks against."""

from __future__ import annotations

import aio_pika
import pytest

from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import new_event
from shared.bus.topology import queue
from shared.events.scorm import ScoInfo, ScormPackageArchived, ScormPackageFailed, ScormPackageReady
from tests.catalog.conftest import CatalogApi, Tenant, new_tenant
from tests.support.infra import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_course_created_is_published_with_the_course_snapshot(catalog):
    course = await catalog.create_course("evented", credit_hours=1.5, credit_kind="CEU",
                                         certificate_template_id=4)
    [event] = await catalog.wait_for_events("course.created")
    assert event.routing_key == f"{catalog.tenant.slug}.course.created"
    assert (event.source, event.subject, event.tenantid) == ("/learn/catalog", f"course/{course['id']}",
                                                             catalog.tenant.id)
    assert event.requestid and event.requestid.startswith("req_")
    data = event.data
    assert (data["course_id"], data["slug"], data["status"], data["version_number"], data["revision"]) == (
        course["id"], "evented", "draft", 1, 1)
    assert data["credit"] == {"hours": 1.5, "kind": "CEU", "expires_after_months": None}
    assert data["certificate_template_id"] == 4 and data["owner_id"] == 1


async def test_course_updated_carries_the_new_fields_and_a_higher_revision(catalog):
    course = await catalog.create_course("to-rename")
    await catalog.public("POST", f"/courses/{course['id']}", {"title": "Renamed", "credit_hours": 3})
    [event] = await catalog.wait_for_events("course.updated")
    assert (event.data["title"], event.data["credit"]["hours"], event.data["revision"]) == ("Renamed", 3, 2)


async def test_a_rejected_change_publishes_nothing(catalog):
    course = await catalog.create_course("stays")
    await catalog.transition(course["id"], "publish")  # no activity: rejected
    await catalog.public("POST", f"/courses/{course['id']}", {"title": "T", "slug": "Bad Slug"})
    marker = await catalog.create_course("marker")  # events of one course arrive in order: wait for this one
    await wait_until(lambda: any(e.data["course_id"] == marker["id"] for e in catalog.events("course.created")))
    assert catalog.events("course.published") == [] and catalog.events("course.updated") == []


async def test_course_published_carries_the_whole_tree_and_what_consumers_need(catalog):
    course = await catalog.create_course("full", completion_rule="all_required", credit_hours=2.5,
                                         credit_kind="CEU", credit_expires_after_months=12,
                                         certificate_template_id=9)
    m1 = await catalog.add_module(course["id"], "M1")
    m2 = await catalog.add_module(course["id"], "M2")
    l1 = await catalog.add_lesson(m1["id"], "L1")
    await catalog.add_lesson(m2["id"], "L2")
    a1 = await catalog.add_activity(l1["id"], "Watch", kind="video")
    a2 = await catalog.add_activity(l1["id"], "Quiz", kind="assessment", required=False, passing_score_scaled=0.7)
    published = (await catalog.transition(course["id"], "publish")).data
    [event] = await catalog.wait_for_events("course.published")
    data = event.data
    assert (data["title"], data["status"], data["completion_rule"], data["certificate_template_id"]) == (
        "Course full", "published", "all_required", 9)
    assert data["credit"] == {"hours": 2.5, "kind": "CEU", "expires_after_months": 12}
    assert data["version_number"] == 1
    assert data["published_at"].replace("+00:00", "Z") == published["version"]["published_at"]
    assert data["modules"] == [
        {"module_id": m1["id"], "title": "M1", "position": 1, "lessons": [
            {"lesson_id": l1["id"], "title": "L1", "position": 1, "activities": [
                {"activity_id": a1["id"], "title": "Watch", "position": 1, "kind": "video", "required": True,
                 "scorm_package_id": None, "sco_identifier": None, "passing_score_scaled": None,
                 "complete_on_launch": None},
                {"activity_id": a2["id"], "title": "Quiz", "position": 2, "kind": "assessment",
                 "required": False, "scorm_package_id": None, "sco_identifier": None,
                 "passing_score_scaled": 0.7, "complete_on_launch": None},
            ]},
        ]},
        {"module_id": m2["id"], "title": "M2", "position": 2, "lessons": [
            {"lesson_id": l1["id"] + 1, "title": "L2", "position": 1, "activities": []},
        ]},
    ]


async def test_every_tree_change_moves_the_revision(catalog):
    course = await catalog.create_course("revised")
    module = await catalog.add_module(course["id"])  # 2
    lesson = await catalog.add_lesson(module["id"])  # 3
    await catalog.add_activity(lesson["id"])  # 4
    await catalog.admin("POST", f"/modules/{module['id']}", {"title": "Renamed"})  # 5
    await catalog.transition(course["id"], "publish")  # 6
    [event] = await catalog.wait_for_events("course.published")
    assert event.data["revision"] == 6


async def test_republishing_publishes_the_new_version_with_the_edited_tree(catalog):
    course = await catalog.publishable_course()
    await catalog.transition(course["id"], "publish")
    await catalog.transition(course["id"], "unpublish")
    tree = (await catalog.admin("GET", f"/courses/{course['id']}")).data
    await catalog.add_activity(tree["modules"][0]["lessons"][0]["id"], "Extra")
    await catalog.transition(course["id"], "publish")
    first, second = await catalog.wait_for_events("course.published", 2)
    [unpublished] = await catalog.wait_for_events("course.unpublished")
    assert (first.data["version_number"], unpublished.data["version_number"], second.data["version_number"]) == (
        1, 2, 2)
    assert unpublished.data["status"] == "draft"
    assert second.data["revision"] > unpublished.data["revision"] > first.data["revision"]
    titles = [a["title"] for a in second.data["modules"][0]["lessons"][0]["activities"]]
    assert titles == ["Activity", "Extra"]
    assert len(first.data["modules"][0]["lessons"][0]["activities"]) == 1


async def test_course_archived_is_published(catalog):
    course = await catalog.create_course("gone")
    await catalog.transition(course["id"], "archive")
    [event] = await catalog.wait_for_events("course.archived")
    assert (event.data["course_id"], event.data["status"]) == (course["id"], "archived")


# --- scorm_package.ready / failed -> the read model publishing checks -------------------------------------


async def deliver(catalog: CatalogApi, tenant: Tenant, event_type: str, payload) -> None:
    """Publish an event on the test's broker namespace, as the scorm service would."""
    env = catalog.env
    bus = AmqpBus(env.amqp_url, service="test", namespace=env.namespace, delivery_limit=3)
    await bus.connect(retry_forever=False)
    try:
        connection = await aio_pika.connect(env.amqp_url)
        async with connection:  # the queue exists before the message, whether or not the consumer is up yet
            await bus.declare_queue(await connection.channel(), queue("catalog", "scorm_packages"))
        event = new_event(event_type, payload, service="scorm", tenant=tenant.slug, tenant_id=tenant.id)
        await bus.publish_many([OutgoingMessage(event.routing_key, event.to_bytes(), event.id)])
    finally:
        await bus.close()


def ready(package_id: int, *scos: str) -> ScormPackageReady:
    return ScormPackageReady(package_id=package_id, title=f"Package {package_id}", scorm_version="2004-4th",
                             scos=[ScoInfo(identifier=s, title=s.upper(), launch_url=f"{s}.html", position=i)
                                   for i, s in enumerate(scos, start=1)])


async def known_packages(catalog: CatalogApi) -> list[dict]:
    return (await catalog.admin("GET", "/scorm-scos")).data


async def scorm_course(catalog: CatalogApi, package_id: int, sco: str) -> dict:
    course = await catalog.create_course(f"scorm-{package_id}-{sco}")
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    await catalog.add_activity(lesson["id"], "SCO", kind="scorm", scorm_package_id=package_id, sco_identifier=sco)
    return course


async def test_ready_packages_and_their_scos_are_listed_for_the_admin_ui(catalog):
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(11, "intro", "quiz"))
    packages = await wait_until(lambda: known_packages(catalog), message="package 11 in the read model")
    assert packages == [{"id": 11, "title": "Package 11", "scorm_version": "2004-4th", "scos": [
        {"identifier": "intro", "title": "INTRO", "position": 1, "tracked": True},
        {"identifier": "quiz", "title": "QUIZ", "position": 2, "tracked": True}]}]


async def test_a_course_whose_scorm_activity_names_a_ready_sco_publishes(catalog):
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(21, "intro"))
    await wait_until(lambda: known_packages(catalog), message="package 21")
    course = await scorm_course(catalog, 21, "intro")
    published = await catalog.transition(course["id"], "publish")
    assert published.status == 200, published.body
    [event] = await catalog.wait_for_events("course.published")
    activity = event.data["modules"][0]["lessons"][0]["activities"][0]
    assert (activity["kind"], activity["scorm_package_id"], activity["sco_identifier"]) == ("scorm", 21, "intro")


async def test_a_scorm_activity_naming_an_unknown_package_blocks_publishing(catalog):
    course = await scorm_course(catalog, 31, "intro")
    resp = await catalog.transition(course["id"], "publish")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "31" in resp.error["message"] and "ready" in resp.error["message"]


async def test_a_scorm_activity_naming_a_sco_the_package_lacks_blocks_publishing(catalog):
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(41, "intro"))
    await wait_until(lambda: known_packages(catalog), message="package 41")
    course = await scorm_course(catalog, 41, "outro")
    resp = await catalog.transition(course["id"], "publish")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
    assert "outro" in resp.error["message"]


async def test_a_package_that_failed_after_all_cannot_back_a_course(catalog):
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(51, "intro"))
    await wait_until(lambda: known_packages(catalog), message="package 51 ready")
    course = await scorm_course(catalog, 51, "intro")
    await deliver(catalog, catalog.tenant, "scorm_package.failed",
                  ScormPackageFailed(package_id=51, title="Broken", error="no imsmanifest.xml"))
    await wait_until(lambda: _empty(known_packages(catalog)), message="package 51 failed")
    resp = await catalog.transition(course["id"], "publish")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")


async def test_another_tenants_package_cannot_back_a_course(catalog):
    other = new_tenant("other")
    await deliver(catalog, other, "scorm_package.ready", ready(61, "intro"))
    await wait_until(lambda: _data(catalog.admin("GET", "/scorm-scos", tenant=other)), message="package 61")
    course = await scorm_course(catalog, 61, "intro")
    resp = await catalog.transition(course["id"], "publish")
    assert (resp.status, resp.error["code"]) == (400, "invalid_argument")


async def test_a_later_ready_event_replaces_the_packages_scos(catalog):
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(71, "old"))
    await wait_until(lambda: known_packages(catalog), message="package 71")
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(71, "new"))

    async def scos() -> list[str]:
        return [s["identifier"] for p in await known_packages(catalog) for s in p["scos"]]

    await wait_until(lambda: _equals(scos(), ["new"]), message="package 71 re-imported")


# --- archived packages and untracked items (issue 20) -------------------------------------------------------------


def archived(package_id: int, *versions: int) -> ScormPackageArchived:
    return ScormPackageArchived(package_id=package_id, package_ids=[package_id, *versions],
                                title=f"Package {package_id}", archived_at="2026-12-05T08:00:00Z")


async def test_an_archived_package_leaves_the_picker_and_blocks_publishing_for_good(catalog):
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(81, "intro"))
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(82, "intro").model_copy(
        update={"version_of": 81}))
    await wait_until(lambda: _equals(_ids(known_packages(catalog)), [82, 81]), message="packages 81 and 82")
    on_first, on_version = await scorm_course(catalog, 81, "intro"), await scorm_course(catalog, 82, "intro")
    await deliver(catalog, catalog.tenant, "scorm_package.archived", archived(81, 82))
    await wait_until(lambda: _empty(known_packages(catalog)), message="packages 81 and 82 archived")
    for course, package_id in ((on_first, 81), (on_version, 82)):
        resp = await catalog.transition(course["id"], "publish")
        assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
        assert f"SCORM package {package_id}, which is archived" in resp.error["message"], resp.error
    # Archiving is final: a ready event delivered late (a version's import that ended before the archive) does not
    # bring the package back.
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(82, "intro").model_copy(
        update={"version_of": 81}))
    await deliver(catalog, catalog.tenant, "scorm_package.ready", ready(83, "marker"))
    await wait_until(lambda: _equals(_ids(known_packages(catalog)), [83]), message="the marker package")
    resp = await catalog.transition(on_version["id"], "publish")
    assert resp.status == 400 and "archived" in resp.error["message"]


def assets(package_id: int, *items: tuple[str, bool]) -> ScormPackageReady:
    return ScormPackageReady(package_id=package_id, title=f"Package {package_id}", scorm_version="2004-3rd",
                             scos=[ScoInfo(identifier=i, title=i, launch_url=f"{i}.html", position=n, tracked=t)
                                   for n, (i, t) in enumerate(items, start=1)])


async def test_complete_on_launch_is_for_items_that_do_not_track(catalog):
    await deliver(catalog, catalog.tenant, "scorm_package.ready", assets(91, ("handout", False), ("quiz", True)))
    await wait_until(lambda: known_packages(catalog), message="package 91")
    [package] = await known_packages(catalog)
    assert [(s["identifier"], s["tracked"]) for s in package["scos"]] == [("handout", False), ("quiz", True)]

    course = await catalog.create_course("col-ok")
    lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
    handout = await catalog.add_activity(lesson["id"], "Handout", kind="scorm", scorm_package_id=91,
                                         sco_identifier="handout", complete_on_launch=False)
    assert handout["complete_on_launch"] is False
    await catalog.add_activity(lesson["id"], "Quiz", kind="scorm", scorm_package_id=91, sco_identifier="quiz")
    published = await catalog.transition(course["id"], "publish")
    assert published.status == 200, published.body
    [event] = await catalog.wait_for_events("course.published")
    activities = event.data["modules"][0]["lessons"][0]["activities"]
    sent = [(a["sco_identifier"], a["complete_on_launch"]) for a in activities]
    assert sent == [("handout", False), ("quiz", None)]

    # On a SCO (named, or the first SCO an activity without sco_identifier launches) the option would be ignored:
    # publishing says so.
    for name, sco in (("col-sco", "quiz"), ("col-first", None)):
        course = await catalog.create_course(name)
        lesson = await catalog.add_lesson((await catalog.add_module(course["id"]))["id"])
        await catalog.add_activity(lesson["id"], "Quiz", kind="scorm", scorm_package_id=91, sco_identifier=sco,
                                   complete_on_launch=True)
        resp = await catalog.transition(course["id"], "publish")
        assert (resp.status, resp.error["code"]) == (400, "invalid_argument")
        assert "complete_on_launch" in resp.error["message"] and "'quiz'" in resp.error["message"], resp.error


async def _ids(coro) -> list[int]:
    return [p["id"] for p in await coro]


async def _data(response_coro) -> list:
    return (await response_coro).data


async def _empty(coro) -> bool:
    return not await coro


async def _equals(coro, expected) -> bool:
    return await coro == expected
