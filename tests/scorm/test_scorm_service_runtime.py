"""Launches and the learner runtime through the service: tokens, the player, content, commits and events."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.scorm.context import SCORM_KEY
from services.scorm.handlers import INLINE_CHECK_ELEMENTS
from services.scorm.runtime.tokens import RuntimeTokens
from shared.service import DB_KEY
from tests.scorm.test_scorm_service_harness import (  # noqa: F401
    OTHER_TENANT,
    OTHER_TENANT_ID,
    ScormService,
    next_id,
    scorm_fixture,
)
from tests.support.scorm_packages import debug_package

GOLF_12 = "golf_scorm12_singlesco.zip"
GOLF_2004_ADVANCED = "golf_scorm2004_3rd_runtime_advanced.zip"


async def get(scorm: ScormService, path: str) -> tuple[int, dict[str, str], bytes]:
    async with scorm.client.get(path, headers=scorm.runtime_headers()) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def state_of(html: bytes) -> dict:
    found = re.search(rb'<script type="application/json" id="learn-runtime-state">(.*?)</script>', html, re.S)
    assert found, html[:500]
    return json.loads(found.group(1))


# --- launching -----------------------------------------------------------------------------------------


async def test_a_launch_answers_the_player_url_token_expiry_and_attempt(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    assert set(launch) == {"launch_url", "runtime_token", "expires_at", "attempt_id"}
    common = scorm.app[SCORM_KEY].settings.common
    assert launch["launch_url"] == f"{common.content_url}/learn/player/{launch['runtime_token']}"  # content origin
    assert not launch["launch_url"].startswith(common.public_origin)
    expires_at = datetime.fromisoformat(launch["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=3, minutes=59) < expires_at - datetime.now(UTC) <= timedelta(hours=4)
    assert isinstance(launch["attempt_id"], int) and launch["attempt_id"] > 0


async def test_a_launch_makes_the_attempt_exist_at_once(scorm: ScormService) -> None:
    launch, node = await scorm.launched(GOLF_12, user_id=77)
    (event,) = await scorm.attempt_events(launch["attempt_id"], 1)
    assert event.routing_key == "acme.runtime.committed"
    assert event.subject == f"attempt/{launch['attempt_id']}"
    data = event.data
    assert (data["sequence"], data["status"], data["standard"], data["finished"]) == (
        0, "not_attempted", "1.2", False)
    assert (data["activity_id"], data["user_id"], data["session_time_delta_seconds"]) == (
        node["activity_id"], 77, 0)


async def test_each_launch_is_a_new_attempt(scorm: ScormService) -> None:
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "video"}])
    await scorm.given_enrollment(enrollment_id, course_id)
    first = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    second = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    assert first["attempt_id"] != second["attempt_id"] and first["runtime_token"] != second["runtime_token"]


async def test_an_unknown_or_other_tenants_enrollment_is_not_found(scorm: ScormService) -> None:
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "video"}])
    await scorm.given_enrollment(enrollment_id, course_id)
    for path_id, tenant in ((next_id(), {}), (enrollment_id, {"tenant_id": OTHER_TENANT_ID,
                                                               "tenant": OTHER_TENANT})):
        _, body = await scorm.launch(path_id, activity_id, expect=404, **tenant)
        assert body["error"]["code"] == "enrollment_not_found"


async def test_an_activity_outside_the_enrolled_course_version_is_not_found(scorm: ScormService) -> None:
    course_id, enrollment_id, activity_id, later_activity = next_id(), next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "video"}])
    await scorm.given_course(course_id, [{"activity_id": later_activity, "kind": "video"}], version=2,
                             revision=2)
    await scorm.given_enrollment(enrollment_id, course_id, version=1)
    _, body = await scorm.launch(enrollment_id, later_activity, expect=404)
    assert body["error"]["code"] == "activity_not_found"
    await scorm.launch(enrollment_id, activity_id, expect=201)


@pytest.mark.parametrize("status", ["cancelled", "expired"])
async def test_an_enrollment_that_is_no_longer_active_cannot_launch(scorm: ScormService, status: str) -> None:
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "reading"}])
    if status == "expired":  # past expires_at before the expiry event arrives
        await scorm.given_enrollment(enrollment_id, course_id,
                                     expires_at=datetime.now(UTC) - timedelta(seconds=1))
    else:
        await scorm.given_enrollment(enrollment_id, course_id)
        await scorm.given_enrollment(enrollment_id, course_id, status=status, revision=2)
    _, body = await scorm.launch(enrollment_id, activity_id, expect=400)
    assert body["error"]["code"] == "invalid_argument" and status in body["error"]["message"]


async def test_a_completed_enrollment_launches_for_review_without_credit(scorm: ScormService) -> None:
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "link"}])
    await scorm.given_enrollment(enrollment_id, course_id, status="completed")
    launch = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    _, _, html = await get(scorm, f"/learn/player/{launch['runtime_token']}")
    cmi = state_of(html)["cmi"]
    assert (cmi["cmi.mode"], cmi["cmi.credit"]) == ("review", "no-credit")


async def test_an_archived_course_cannot_be_launched(scorm: ScormService) -> None:
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "video"}])
    await scorm.given_enrollment(enrollment_id, course_id)
    await scorm.archive_course(course_id, revision=2)

    async def refused() -> bool:
        status, _ = await scorm.launch(enrollment_id, activity_id, expect=None)
        return status == 400

    from tests.support.infra import wait_until

    await wait_until(refused, timeout=15, message="launch refused after archive")


async def test_a_package_that_is_not_ready_cannot_be_launched(scorm: ScormService) -> None:
    uploaded = await scorm.upload_fixture("edge/moodle_invalid_no_manifest.zip")
    failed = await scorm.until_imported(uploaded["id"])
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "scorm",
                                          "scorm_package_id": failed["id"]}])
    await scorm.given_enrollment(enrollment_id, course_id)
    _, body = await scorm.launch(enrollment_id, activity_id, expect=400)
    assert "is failed, not ready" in body["error"]["message"]


async def test_a_launch_needs_an_activity_id(scorm: ScormService) -> None:
    for body, code in (({}, "missing_field"), ({"activity_id": "7"}, "invalid_argument"),
                       ({"activity_id": 7, "user_id": 1}, "invalid_argument")):
        _, answer = await scorm.call("POST", f"/api/v1/learn/enrollments/{next_id()}/launches", json=body,
                                     expect=400)
        assert answer["error"]["code"] == code


# --- the player and the content ---------------------------------------------------------------------------


async def test_the_player_page_carries_the_launch_state_under_a_strict_csp(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12, user_id=77)
    status, headers, html = await get(scorm, f"/learn/player/{launch['runtime_token']}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # framed by nothing but its own (content) origin and the admin origin that previews it
    admin_origin = scorm.app[SCORM_KEY].settings.common.public_origin
    assert headers["Content-Security-Policy"] == f"default-src 'self'; frame-ancestors 'self' {admin_origin}"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    state = state_of(html)
    assert (state["standard"], state["launch_url"], state["title"]) == ("1.2", "shared/launchpage.html",
                                                                        "Golf Explained")
    assert state["commit_url"] == f"/learn/runtime/{launch['runtime_token']}/commit"
    assert state["cmi"]["cmi.core.student_id"] == "77" and state["cmi"]["cmi.core.entry"] == "ab-initio"
    assert b"<script>" not in html and b'src="/learn/static/player.js"' in html


async def test_2004_launches_carry_the_manifest_objectives_and_passing_score(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_2004_ADVANCED)
    _, _, html = await get(scorm, f"/learn/player/{launch['runtime_token']}")
    cmi = state_of(html)["cmi"]
    assert cmi["cmi.scaled_passing_score"] == "0.8"
    assert [cmi[f"cmi.objectives.{i}.id"] for i in range(5)] == [
        "PRIMARYOBJ", "obj_etiquette", "obj_handicapping", "obj_havingfun", "obj_playing"]


async def test_player_files_are_served_from_static(scorm: ScormService) -> None:
    status, headers, body = await get(scorm, "/learn/static/player.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"API_1484_11" in body
    assert (await get(scorm, "/learn/static/../app.py"))[0] == 404
    assert (await get(scorm, "/learn/static/nope.js"))[0] == 404


async def test_content_serves_the_launched_package_files_with_their_types(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    token = launch["runtime_token"]
    status, headers, body = await get(scorm, f"/learn/content/{token}/shared/launchpage.html")
    assert status == 200 and headers["Content-Type"] == "text/html" and b"Not implemented yet" in body
    status, headers, body = await get(scorm, f"/learn/content/{token}/Etiquette/course.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["shared/missing.html", "..%2F..%2Fimsmanifest.xml",
                                  "shared/%2e%2e/%2e%2e/x", "%00", "a\\b"])
async def test_content_outside_the_package_is_not_found(scorm: ScormService, path: str) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    status, _, body = await get(scorm, f"/learn/content/{launch['runtime_token']}/{path}")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


async def test_another_packages_files_cannot_be_reached_with_this_token(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    other, _ = await scorm.launched(debug_package("1.2"))
    assert (await get(scorm, f"/learn/content/{other['runtime_token']}/debug_sco.js"))[0] == 200
    assert (await get(scorm, f"/learn/content/{launch['runtime_token']}/debug_sco.js"))[0] == 404


async def test_a_non_scorm_activity_plays_the_built_in_page(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(kind="reading", title="Read the rules")
    _, _, html = await get(scorm, f"/learn/player/{launch['runtime_token']}")
    state = state_of(html)
    assert (state["standard"], state["launch_url"], state["title"]) == ("2004", "_learn/activity.html",
                                                                        "Read the rules")
    status, headers, page = await get(scorm, f"/learn/content/{launch['runtime_token']}/_learn/activity.html")
    assert status == 200 and b"Mark as complete" in page and b"/learn/static/activity.js" in page
    admin_origin = scorm.app[SCORM_KEY].settings.common.public_origin
    assert headers["Content-Security-Policy"] == f"default-src 'self'; frame-ancestors 'self' {admin_origin}"


# --- tokens ----------------------------------------------------------------------------------------------


def tampered(token: str) -> str:
    parts = token.split(".")
    parts[1] = str(int(parts[1]) + 1)  # another session, same MAC
    return ".".join(parts)


async def test_a_tampered_or_forged_token_is_refused_everywhere(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    forged = RuntimeTokens("not-the-secret").issue(launch["attempt_id"], 1, in_an_hour)
    for token in (tampered(launch["runtime_token"]), forged, "garbage"):
        for path in (f"/learn/player/{token}", f"/learn/content/{token}/shared/launchpage.html"):
            status, _, body = await get(scorm, path)
            assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", path
        answer = await scorm.runtime("commit", token, {"cmi": {}}, expect=401)
        assert answer["error"]["code"] == "invalid_api_key"


async def test_an_expired_token_is_refused(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    expired = RuntimeTokens(scorm.env.internal_secret).issue(launch["attempt_id"], 1,
                                                             datetime.now(UTC) - timedelta(seconds=1))
    status, _, body = await get(scorm, f"/learn/player/{expired}")
    assert status == 401 and "expired" in json.loads(body)["error"]["message"]
    answer = await scorm.runtime("commit", expired, {"cmi": {}}, expect=401)
    assert "expired" in answer["error"]["message"]


async def test_a_token_for_another_tenant_finds_nothing(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    moved = RuntimeTokens(scorm.env.internal_secret).issue(launch["attempt_id"], OTHER_TENANT_ID,
                                                           datetime.now(UTC) + timedelta(hours=1))
    assert (await get(scorm, f"/learn/player/{moved}"))[0] == 401


async def test_runtime_paths_still_need_the_gateways_credential(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    async with scorm.client.get(f"/learn/player/{launch['runtime_token']}") as resp:
        assert resp.status == 401


# --- commits and finishing ----------------------------------------------------------------------------------


async def test_12_commits_derive_the_attempt_and_count_session_time(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    token = launch["runtime_token"]
    await scorm.runtime("commit", token, {"cmi": {"cmi.core.lesson_status": "incomplete",
                                                  "cmi.core.session_time": "00:01:00"}})
    answer = await scorm.runtime("commit", token, {"cmi": {"cmi.core.lesson_status": "passed",
                                                           "cmi.core.score.raw": "85",
                                                           "cmi.core.session_time": "00:01:30.5"}})
    assert answer["data"] == {"attempt_id": launch["attempt_id"], "sequence": 2, "status": "passed",
                              "finished": False}
    events = await scorm.attempt_events(launch["attempt_id"], 3)
    one, two = events[1].data, events[2].data
    assert (one["sequence"], one["status"], one["session_time_delta_seconds"]) == (1, "incomplete", 60)
    assert (two["sequence"], two["status"], two["score_raw"], two["score_scaled"], two["passed"]) == (
        2, "passed", 85, 0.85, True)
    assert (two["completion_status"], two["success_status"], two["session_time_delta_seconds"]) == (
        "completed", "passed", 30.5)


async def test_the_mastery_score_decides_when_the_sco_reports_only_a_score(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12, passing_score_scaled="0.9")
    await scorm.runtime("commit", launch["runtime_token"], {"cmi": {"cmi.core.lesson_status": "completed",
                                                                    "cmi.core.score.raw": "85"}})
    event = (await scorm.attempt_events(launch["attempt_id"], 2))[1]
    assert (event.data["status"], event.data["passed"]) == ("failed", False)


async def test_2004_success_follows_the_scaled_passing_score(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_2004_ADVANCED)
    await scorm.runtime("commit", launch["runtime_token"], {"cmi": {
        "cmi.completion_status": "completed", "cmi.success_status": "passed", "cmi.score.scaled": "0.75",
        "cmi.session_time": "PT2M"}})
    event = (await scorm.attempt_events(launch["attempt_id"], 2))[1]
    assert (event.data["status"], event.data["score_scaled"], event.data["passed"]) == ("failed", 0.75, False)
    assert event.data["session_time_delta_seconds"] == 120


async def test_session_time_that_goes_backwards_adds_nothing(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    for reported in ("00:02:00", "00:01:00", "00:02:30"):
        await scorm.runtime("commit", launch["runtime_token"], {"cmi": {"cmi.core.session_time": reported}})
    events = await scorm.attempt_events(launch["attempt_id"], 4)
    assert [e.data["session_time_delta_seconds"] for e in events] == [0, 120, 0, 30]


async def test_finish_ends_the_attempt_once(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    token = launch["runtime_token"]
    snapshot = {"cmi": {"cmi.core.lesson_status": "completed", "cmi.core.session_time": "00:00:10"}}
    first = await scorm.runtime("finish", token, snapshot)
    again = await scorm.runtime("finish", token, snapshot)
    assert first["data"] == again["data"] == {"attempt_id": launch["attempt_id"], "sequence": 1,
                                              "status": "completed", "finished": True}
    events = await scorm.attempt_events(launch["attempt_id"], 2)
    finished = events[1].data
    assert finished["finished"] is True and finished["time_ended_at"] is not None
    assert finished["time_started_at"] == events[0].data["time_started_at"]
    answer = await scorm.runtime("commit", token, snapshot, expect=410)
    assert answer["error"]["code"] == "launch_ended" and "finished" in answer["error"]["message"]
    assert len(scorm.events.of_type("runtime.committed")) == 2


async def test_finish_without_a_body_keeps_the_last_snapshot(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    await scorm.runtime("commit", launch["runtime_token"], {"cmi": {"cmi.core.lesson_status": "browsed"}})
    await scorm.runtime("finish", launch["runtime_token"], None)
    events = await scorm.attempt_events(launch["attempt_id"], 3)
    assert (events[2].data["status"], events[2].data["finished"]) == ("browsed", True)


@pytest.mark.parametrize(("cmi", "words"), [
    ({"cmi.core.lesson_status": "done"}, "cmi.core.lesson_status"),
    ({"cmi.core.student_id": "1"}, "read-only"),
    ({"cmi.completion_status": "completed"}, "not a SCORM 1.2 data model element"),
    ({"cmi.core.score.raw": 85}, "must be a string"),
])
async def test_a_commit_the_data_model_refuses_is_400(scorm: ScormService, cmi: dict, words: str) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    answer = await scorm.runtime("commit", launch["runtime_token"], {"cmi": cmi}, expect=400)
    assert answer["error"]["code"] == "invalid_argument" and words in answer["error"]["message"]


def _statements_on_launches(scorm: ScormService) -> tuple[list[str], object]:
    """The SQL statements the service runs on ``runtime_sessions`` from now on (the relay and consumers of the same
    app touch other tables only); the listener, to remove."""
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "runtime_sessions" in statement:
            seen.append(" ".join(statement.split())[:80])

    sa.event.listen(scorm.app[DB_KEY].engine.sync_engine, "before_cursor_execute", before)
    return seen, before


async def test_a_normal_commit_claims_checks_and_writes_its_launch_in_two_statements(scorm: ScormService) -> None:
    """A commit of normal size is checked on the loop right after its claim: the launch is touched by the claim
    (which also reads whether the launch is live) and the write, nothing before (issue 21). A large one still has
    its standard read first and is checked in a worker thread before the claim."""
    launch, _ = await scorm.launched(GOLF_12)
    token = launch["runtime_token"]
    seen, listener = _statements_on_launches(scorm)
    try:
        await scorm.runtime("commit", token, {"cmi": {"cmi.core.lesson_status": "incomplete"}})
        assert [s.split()[0] for s in seen] == ["UPDATE", "UPDATE"], seen
        seen.clear()
        large = {"cmi.core.lesson_status": "incomplete",
                 **{f"cmi.interactions.{i}.id": f"q{i}" for i in range(INLINE_CHECK_ELEMENTS)}}
        answer = await scorm.runtime("commit", token, {"cmi": large})
        assert [s.split()[0] for s in seen] == ["SELECT", "UPDATE", "UPDATE"], seen
    finally:
        sa.event.remove(scorm.app[DB_KEY].engine.sync_engine, "before_cursor_execute", listener)
    assert answer["data"]["sequence"] == 2


@pytest.mark.parametrize("elements", [1, INLINE_CHECK_ELEMENTS + 1])
async def test_a_refused_body_is_400_whatever_the_state_of_its_launch(scorm: ScormService, elements: int) -> None:
    """Checked on the loop after the claim (normal size) or in a thread before it (large), a body the data model
    refuses is answered 400 before the launch's state is judged, and changes nothing: on a finished launch (a
    commit and a repeated finish) and on a launch whose enrollment was cancelled."""
    refused = {"cmi.core.lesson_status": "done",
               **{f"cmi.interactions.{i}.id": f"q{i}" for i in range(elements - 1)}}
    launch, _ = await scorm.launched(GOLF_12)
    token = launch["runtime_token"]
    await scorm.runtime("finish", token, {"cmi": {"cmi.core.lesson_status": "completed"}})
    for action in ("commit", "finish"):
        answer = await scorm.runtime(action, token, {"cmi": refused}, expect=400)
        assert "cmi.core.lesson_status" in answer["error"]["message"]
    assert (await scorm.runtime("finish", token, None))["data"]["sequence"] == 1  # nothing was claimed
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "reading"}])
    await scorm.given_enrollment(enrollment_id, course_id)
    other = (await scorm.launch(enrollment_id, activity_id))[1]["data"]["runtime_token"]
    await scorm.given_enrollment(enrollment_id, course_id, status="cancelled", revision=2)
    refused_2004 = {"cmi.completion_status": "done",
                    **{f"cmi.interactions.{i}.id": f"q{i}" for i in range(elements - 1)}}
    await scorm.runtime("commit", other, {"cmi": refused_2004}, expect=400)
    answer = await scorm.runtime("commit", other, {"cmi": {"cmi.completion_status": "completed"}}, expect=410)
    assert answer["error"]["code"] == "launch_ended" and "cancelled" in answer["error"]["message"]


async def test_a_commit_needs_its_cmi_and_nothing_else(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    assert (await scorm.runtime("commit", launch["runtime_token"], {}, expect=400))["error"]["code"] == (
        "missing_field")
    answer = await scorm.runtime("commit", launch["runtime_token"], {"cmi": {}, "status": "passed"},
                                 expect=400)
    assert answer["error"]["code"] == "invalid_argument"


async def test_reloading_the_player_resumes_the_launch(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    token = launch["runtime_token"]
    await scorm.runtime("commit", token, {"cmi": {"cmi.suspend_data": "page=7",
                                                  "cmi.core.lesson_location": "7",
                                                  "cmi.core.lesson_status": "incomplete"}})
    _, _, html = await get(scorm, f"/learn/player/{token}")
    cmi = state_of(html)["cmi"]
    assert (cmi["cmi.suspend_data"], cmi["cmi.core.lesson_location"], cmi["cmi.core.entry"]) == (
        "page=7", "7", "resume")


async def test_a_new_launch_after_a_suspended_one_resumes_its_data(scorm: ScormService) -> None:
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "video"}])
    await scorm.given_enrollment(enrollment_id, course_id)
    first = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    await scorm.runtime("finish", first["runtime_token"], {"cmi": {
        "cmi.location": "12", "cmi.exit": "suspend", "cmi.session_time": "PT1M"}})
    second = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    _, _, html = await get(scorm, f"/learn/player/{second['runtime_token']}")
    cmi = state_of(html)["cmi"]
    assert (cmi["cmi.location"], cmi["cmi.entry"], cmi["cmi.total_time"]) == ("12", "resume", "PT0H1M0S")


async def test_a_new_launch_after_a_normal_exit_starts_afresh(scorm: ScormService) -> None:
    course_id, enrollment_id, activity_id = next_id(), next_id(), next_id()
    await scorm.given_course(course_id, [{"activity_id": activity_id, "kind": "video"}])
    await scorm.given_enrollment(enrollment_id, course_id)
    first = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    await scorm.runtime("finish", first["runtime_token"],
                        {"cmi": {"cmi.location": "12", "cmi.exit": "normal"}})
    second = (await scorm.launch(enrollment_id, activity_id))[1]["data"]
    _, _, html = await get(scorm, f"/learn/player/{second['runtime_token']}")
    cmi = state_of(html)["cmi"]
    assert "cmi.location" not in cmi and cmi["cmi.entry"] == "ab-initio"


async def test_a_finished_launch_does_not_play_again(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(GOLF_12)
    await scorm.runtime("finish", launch["runtime_token"], {"cmi": {}})
    status, headers, body = await get(scorm, f"/learn/player/{launch['runtime_token']}")
    assert status == 410 and headers["Content-Type"].startswith("text/html")
    assert b"launch the activity again" in body and b"learn-runtime-state" not in body


# --- previews (the admin UI's "Preview" of a SCO) -------------------------------------------------------


async def preview(scorm: ScormService, package_id: int, body: dict, expect: int = 201, **tenant) -> dict:
    _, answer = await scorm.call("POST", f"/admin/v1/scorm-packages/{package_id}/preview", json=body,
                                 expect=expect, headers=scorm.headers(scopes="admin", **tenant))
    return answer


async def test_an_admin_previews_a_sco_in_browse_mode_without_an_attempt(scorm: ScormService) -> None:
    package = await scorm.ready_package("golf_scorm12_multisco_runtime_minimum.zip")
    launch = (await preview(scorm, package["id"], {"sco_identifier": "playing_par_item"}))["data"]
    assert set(launch) == {"launch_url", "runtime_token", "expires_at"}
    _, _, html = await get(scorm, f"/learn/player/{launch['runtime_token']}")
    state = state_of(html)
    assert (state["launch_url"], state["cmi"]["cmi.core.lesson_mode"], state["cmi"]["cmi.core.credit"]) == (
        "Playing/Par.html", "browse", "no-credit")
    answer = await scorm.runtime("finish", launch["runtime_token"],
                                 {"cmi": {"cmi.core.lesson_status": "passed"}})
    assert answer["data"]["status"] == "passed"
    # A real launch afterwards: its events arrive, the preview's never do.
    real, _ = await scorm.launched(GOLF_12)
    await scorm.attempt_events(real["attempt_id"], 1)
    preview_id = int(launch["runtime_token"].split(".")[1])
    assert [e for e in scorm.events.of_type("runtime.committed") if e.data["attempt_id"] == preview_id] == []


async def test_a_preview_needs_a_ready_package_of_the_tenant_and_a_known_sco(scorm: ScormService) -> None:
    package = await scorm.ready_package(GOLF_12)
    assert (await preview(scorm, 0, {}, expect=404))["error"]["code"] == "scorm_package_not_found"
    other = await preview(scorm, package["id"], {}, expect=404, tenant_id=OTHER_TENANT_ID,
                          tenant=OTHER_TENANT)
    assert other["error"]["code"] == "scorm_package_not_found"
    missing = await preview(scorm, package["id"], {"sco_identifier": "nope"}, expect=400)
    assert "no SCO 'nope'" in missing["error"]["message"]
