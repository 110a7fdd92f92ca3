"""The product's journeys, end to end through the gateway, every service its own process on real PostgreSQL and
RabbitMQ (issue 9, items 2-5). The tests share one cluster; each keeps to its own tenant.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import pypdf
import pytest
import pytest_asyncio
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from tests.support.cluster import Cluster
from tests.support.scorm_packages import FIXTURES

pytestmark = pytest.mark.asyncio(loop_scope="module")

READING = {"title": "Read the rules", "kind": "reading", "required": True}


def pdf_text(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


async def get_ok(cluster: Cluster, key: str, path: str) -> Any:
    status, body = await cluster.api(key, "GET", path)
    assert status == 200, body
    return body["data"]


async def test_scorm_course_to_verified_then_revoked_certificate(shared_cluster: Cluster) -> None:
    c = shared_cluster
    key = await c.tenant_with_key("golfclub")
    await c.user("golfclub", 7, "Grace Hopper", "grace@example.com")

    # upload a real SCORM package
    package = await c.upload_scorm("golfclub", FIXTURES / "golf_scorm12_singlesco.zip", title="Golf")
    assert package["status"] == "ready", package
    assert package["scorm_version"] == "1.2"
    sco = package["scos"][0]
    assert (await get_ok(c, key, f"/scorm-packages/{package['id']}"))["scos"][0]["identifier"] == sco["identifier"]

    # a course with a scorm activity and a required reading activity, published
    course, (golf, reading) = await c.course(key, "golfclub", "golf-explained", [
        {"title": "Golf", "kind": "scorm", "required": True, "scorm_package_id": package["id"],
         "sco_identifier": sco["identifier"]},
        READING,
    ], title="Golf Explained", credit_hours=1.5, credit_kind="CEU")
    assert course["status"] == "published"

    # enroll and launch; the SCO commits CMI data (SCORM 1.2) through the runtime endpoints
    enrollment = await c.enroll(key, 7, course["id"], source="journey")
    assert enrollment["progress"] == {"required_total": 2, "required_done": 0}
    launch = await c.launch(key, enrollment["id"], golf["id"])
    # the player and the package are on the content origin, and only there
    assert launch["launch_url"] == f"{c.content_url}/learn/player/{launch['runtime_token']}"
    status, page = await c.request("GET", f"/learn/player/{launch['runtime_token']}", origin=c.content_url)
    assert status == 200 and b"learn-runtime-state" in page
    status, content = await c.request("GET", f"/learn/content/{launch['runtime_token']}/{sco['launch_url']}",
                                      origin=c.content_url)
    assert status == 200 and content
    status, refused = await c.request("GET", f"/learn/player/{launch['runtime_token']}")
    assert status == 404 and refused["error"]["code"] == "not_found"
    cmi = {"cmi.core.lesson_status": "incomplete", "cmi.core.lesson_location": "page2",
           "cmi.core.session_time": "00:02:00"}
    assert (await c.runtime(launch["runtime_token"], "commit", cmi))["status"] == "incomplete"
    cmi = {**cmi, "cmi.core.lesson_status": "passed", "cmi.core.score.raw": "92", "cmi.core.session_time": "00:05:00"}
    await c.runtime(launch["runtime_token"], "commit", cmi)
    finished = await c.runtime(launch["runtime_token"], "finish", cmi)
    assert finished["finished"] is True and finished["status"] == "passed"

    async def scorm_attempt_passed() -> dict[str, Any] | None:
        attempts = await get_ok(c, key, f"/attempts?enrollment_id={enrollment['id']}&activity_id={golf['id']}")
        return attempts[0] if attempts and attempts[0]["status"] == "passed" else None

    attempt = await c.eventually(scorm_attempt_passed, message="the SCORM attempt passed")
    assert attempt["id"] == launch["attempt_id"] and attempt["score_raw"] == 92 and attempt["passed"] is True
    assert (await get_ok(c, key, f"/enrollments/{enrollment['id']}"))["status"] == "active"  # reading still due

    # the required reading activity completes the enrollment
    await c.complete_activity(key, enrollment["id"], reading)
    completed = await c.wait_status(key, enrollment["id"], "completed")
    assert completed["progress"] == {"required_total": 2, "required_done": 2}

    # a certificate is issued, once
    certificates = await c.eventually(lambda: c.certificates_of(key, user_id=7), message="the certificate")
    assert len(certificates) == 1
    cert = certificates[0]
    assert (cert["enrollment_id"], cert["course_id"], cert["user_id"]) == (enrollment["id"], course["id"], 7)
    assert cert["recipient_name"] == "Grace Hopper" and cert["course_title"] == "Golf Explained"
    assert cert["credit"] == {"hours": 1.5, "kind": "CEU"}
    assert len(cert["verification_id"]) == 40 and cert["is_revoked"] is False
    assert cert["verification_url"] == f"{c.gateway_url}/verify/{cert['verification_id']}"

    # verify by vid, and through the public page (no key)
    assert (await get_ok(c, key, f"/certificates/verify/{cert['verification_id']}"))["id"] == cert["id"]
    status, html = await c.request("GET", f"/verify/{cert['verification_id']}")
    assert status == 200
    assert b"Valid certificate" in html and b"Grace Hopper" in html and b"Golf Explained" in html
    valid_page = html

    # the PDF says what the certificate is
    status, pdf = await c.api(key, "GET", f"/certificates/{cert['id']}/pdf")
    assert status == 200 and len(pdf) == cert["pdf"]["bytes"]
    text = pdf_text(pdf)
    for expected in ("Grace Hopper", "Golf Explained", cert["verification_id"], "CEU"):
        assert expected in text

    # revoke, and every way of verifying says so
    status, body = await c.api(key, "POST", f"/certificates/{cert['id']}/revoke", json={"reason": "Issued in error"})
    assert status == 200, body
    assert body["data"]["is_revoked"] is True and body["data"]["revoked_reason"] == "Issued in error"
    assert body["data"]["verification_id"] == cert["verification_id"]
    verified = await get_ok(c, key, f"/certificates/verify/{cert['verification_id']}")
    assert verified["is_revoked"] is True and verified["revoked_at"] is not None
    status, html = await c.request("GET", f"/verify/{cert['verification_id']}")
    assert status == 200 and b"Revoked" in html and b"Valid certificate" not in html
    status, pdf = await c.api(key, "GET", f"/certificates/{cert['id']}/pdf")
    assert status == 200 and "REVOKED" in pdf_text(pdf).upper()
    status, body = await c.api(key, "POST", f"/certificates/{cert['id']}/revoke", json={"reason": "again"})
    assert status == 400 and body["error"]["code"] == "invalid_argument"
    # checked last, so that the journey above runs whatever the wording: the page title reads as a sentence
    assert b"certificate certificate" not in valid_page.lower()


async def test_template_edit_regenerates_every_live_certificate_with_the_same_urls(shared_cluster: Cluster) -> None:
    c = shared_cluster
    slug = "brandco"
    key = await c.tenant_with_key(slug)
    status, body = await c.admin("POST", f"/tenants/{slug}/cert-templates", json={
        "name": "House style", "is_default": True, "title_text": "Certificate of Achievement",
        "body_text": "{recipient_name} completed {course_title}", "primary_color": "#123456"})
    assert status == 201, body
    template = body["data"]
    course, (reading,) = await c.course(key, slug, "safety", [READING], title="Safety Basics")
    learners = {21: "Ada Lovelace", 22: "Alan Turing", 23: "Edsger Dijkstra"}
    await asyncio.gather(*(c.user(slug, uid, name) for uid, name in learners.items()))

    async def certify(user_id: int) -> None:
        enrollment = await c.enroll(key, user_id, course["id"])
        await c.complete_activity(key, enrollment["id"], reading)

    await asyncio.gather(*(certify(uid) for uid in learners))

    async def all_issued() -> list[dict[str, Any]] | None:
        found = await c.certificates_of(key, course_id=course["id"])
        return found if len(found) == len(learners) else None

    before = {cert["id"]: cert for cert in await c.eventually(all_issued, message="three certificates")}
    assert {cert["template_id"] for cert in before.values()} == {template["id"]}
    revoked_id = min(before)
    status, body = await c.api(key, "POST", f"/certificates/{revoked_id}/revoke", json={"reason": "Fraud"})
    assert status == 200, body
    revoked_pdf = body["data"]["pdf"]

    status, body = await c.admin("POST", f"/tenants/{slug}/cert-templates/{template['id']}",
                                 json={"title_text": "Certificate of Excellence"})
    assert status == 200, body
    assert body["data"]["version"] > template["version"]

    live = [cid for cid in before if cid != revoked_id]

    async def regenerated() -> dict[int, dict[str, Any]] | None:
        now = {cert["id"]: cert for cert in await c.certificates_of(key, course_id=course["id"])}
        done = all(now[cid]["pdf"]["version"] > before[cid]["pdf"]["version"] for cid in live)
        return now if done else None

    after = await c.eventually(regenerated, timeout=60, message="the live certificates regenerated")
    for cid in live:
        assert after[cid]["verification_id"] == before[cid]["verification_id"]
        assert after[cid]["verification_url"] == before[cid]["verification_url"]
        assert after[cid]["pdf"]["sha256"] != before[cid]["pdf"]["sha256"]
        status, pdf = await c.api(key, "GET", f"/certificates/{cid}/pdf")
        assert status == 200
        text = pdf_text(pdf)
        assert "Certificate of Excellence" in text and before[cid]["verification_id"] in text
        status, html = await c.request("GET", f"/verify/{before[cid]['verification_id']}")
        assert status == 200 and b"Valid certificate" in html
    # the revoked certificate keeps the PDF that says it was revoked
    assert after[revoked_id]["pdf"] == revoked_pdf
    assert after[revoked_id]["is_revoked"] is True


async def test_cohort_grant_enrolls_in_each_published_course_once(shared_cluster: Cluster) -> None:
    c = shared_cluster
    slug = "cohortco"
    key = await c.tenant_with_key(slug)
    no_grant_key = await c.tenant_with_key("cohortco-ro", scopes=("learn:read", "learn:write"))
    await c.user(slug, 31, "Katherine Johnson")
    (first, _), (second, _), (draft, _) = await asyncio.gather(
        c.course(key, slug, "orbits", [READING]),
        c.course(key, slug, "re-entry", [READING]),
        c.course(key, slug, "moon-shot", [READING], publish=False),
    )
    status, body = await c.admin("POST", f"/tenants/{slug}/cohorts",
                                 json={"name": "Spring intake", "course_ids": [first["id"], second["id"], draft["id"]]})
    assert status == 201, body
    cohort = body["data"]

    async def granted() -> tuple[int, dict[str, Any]] | None:
        status, body = await c.api(key, "POST", "/cohorts/grant", json={"user_id": 31, "cohort_id": cohort["id"]})
        if status in (200, 201) and len(body["data"]["enrollments"]) == 2:
            return status, body["data"]
        assert status in (200, 201, 400), body  # the user or courses may not have reached enrollment yet
        return None

    _, grant = await c.eventually(granted, message="the grant to cover both published courses")
    assert grant["cohort_id"] == cohort["id"] and grant["user_id"] == 31 and grant["granted_at"]
    enrollments = sorted(grant["enrollments"], key=lambda e: e["course_id"])
    assert [e["course_id"] for e in enrollments] == sorted([first["id"], second["id"]])
    assert {e["source"] for e in enrollments} == {"cohort"}
    assert {e["status"] for e in enrollments} == {"active"}

    # repeating it changes nothing
    status, body = await c.api(key, "POST", "/cohorts/grant", json={"user_id": 31, "cohort_id": cohort["id"]})
    assert status == 200, body
    assert body["data"]["granted_at"] == grant["granted_at"]
    assert sorted(e["id"] for e in body["data"]["enrollments"]) == sorted(e["id"] for e in enrollments)
    listed = await get_ok(c, key, "/enrollments?user_id=31")
    assert sorted(e["id"] for e in listed) == sorted(e["id"] for e in enrollments)

    # the grant needs its own scope; an unknown cohort is a 404
    status, body = await c.api(no_grant_key, "POST", "/cohorts/grant", json={"user_id": 31, "cohort_id": cohort["id"]})
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    assert "learn:cohorts:grant" in body["error"]["message"]
    status, body = await c.api(key, "POST", "/cohorts/grant", json={"user_id": 31, "cohort_id": 987654})
    assert status == 404 and body["error"]["code"] == "cohort_not_found"


# --- an external subscriber ---------------------------------------------------------------------------------

ASYNCAPI = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text())
CLOUDEVENT_ATTRIBUTE = re.compile(r"[a-z0-9]{1,20}")


def schema_of(event_type: str) -> dict[str, Any]:
    """The AsyncAPI document's schema for a whole message (envelope and data) of ``event_type``."""
    (message,) = ASYNCAPI["channels"][event_type]["messages"].values()
    name = message["$ref"].rsplit("/", 1)[1]
    # the document is the root, so that the payload's references resolve inside it
    return {**ASYNCAPI, "$ref": ASYNCAPI["components"]["messages"][name]["payload"]["$ref"]}


def assert_valid_cloudevent(routing_key: str, content_type: str | None, raw: bytes, slug: str) -> dict[str, Any]:
    assert content_type == "application/cloudevents+json"
    event = json.loads(raw)
    # CloudEvents 1.0: required context attributes, non-empty; attribute names lower-case alphanumeric
    for attribute in ("specversion", "id", "source", "type"):
        assert isinstance(event.get(attribute), str) and event[attribute], (attribute, event)
    assert event["specversion"] == "1.0"
    assert all(CLOUDEVENT_ATTRIBUTE.fullmatch(name) for name in event), sorted(event)
    assert datetime.fromisoformat(event["time"]).tzinfo is not None
    # our profile (CONTRACT §7) as published in docs/asyncapi.yaml
    tenant, _, event_type = routing_key.partition(".")
    assert tenant == slug == event["tenant"]
    assert event["type"] == f"io.mobieus.learn.{event_type}.v1"
    validator = Draft202012Validator(schema_of(event_type), format_checker=FormatChecker())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(event)]
    assert not errors, (event_type, errors)
    return dict(event)


@pytest_asyncio.fixture(loop_scope="module")
async def subscriber_of_wavecorp(shared_cluster: Cluster) -> AsyncIterator[tuple[str, list[tuple[str, str | None,
                                                                                                bytes]]]]:
    """Tenant ``wavecorp`` (its API key) and its AMQP subscriber made through the admin API, as an operator would
    (``learnctl subscribers create``): a RabbitMQ user that may only bind ``wavecorp.*`` keys, consuming
    ``wavecorp.#`` into a list."""
    c = shared_cluster
    key = await c.tenant_with_key("wavecorp")
    status, body = await c.admin("POST", "/tenants/wavecorp/event-subscribers", json={"name": "audit"})
    assert status == 201, body
    subscriber = body["data"]
    received: list[tuple[str, str | None, bytes]] = []
    try:
        connection = await aio_pika.connect(subscriber["amqp_url"])
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(subscriber["exchange"], ensure=False)
            queue = await channel.declare_queue(f"wavecorp.audit-{c.env.token}", auto_delete=True)
            await queue.bind(exchange, routing_key="wavecorp.#")

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    received.append((message.routing_key or "", message.content_type, message.body))

            await queue.consume(on_message)
            yield key, received
    finally:
        status, body = await c.admin("DELETE", "/tenants/wavecorp/event-subscribers/audit")
        assert status == 200, body


async def test_external_subscriber_sees_the_journey_as_valid_cloudevents(
        shared_cluster: Cluster, subscriber_of_wavecorp: tuple[str, list[tuple[str, str | None, bytes]]]) -> None:
    c, (key, received) = shared_cluster, subscriber_of_wavecorp
    other_key = await c.tenant_with_key("wavecorp-rival")
    await asyncio.gather(c.user("wavecorp", 41, "Hedy Lamarr"), c.user("wavecorp-rival", 41, "Someone Else"))
    course, (reading,) = await c.course(key, "wavecorp", "radio", [READING], title="Radio")
    await c.course(other_key, "wavecorp-rival", "radio", [READING])  # same keys' suffixes, another tenant

    enrollment = await c.enroll(key, 41, course["id"])
    status, _ = await c.api(key, "POST", "/enrollments", json={"user_id": 41, "course_id": course["id"]})
    assert status == 200
    launch = await c.launch(key, enrollment["id"], reading["id"])
    status, committed = await c.request("POST", f"/learn/runtime/{launch['runtime_token']}/commit",
                                        json={"cmi": {"cmi.completion_status": "completed"}}, origin=c.content_url)
    assert status == 200, committed
    await c.wait_status(key, enrollment["id"], "completed")
    (cert,) = await c.eventually(lambda: c.certificates_of(key, user_id=41), message="the certificate")

    journey = {"user.upserted", "course.created", "course.published", "enrollment.created", "runtime.committed",
               "attempt.updated", "enrollment.completed", "certificate.issued"}

    def seen() -> set[str]:
        return {key.partition(".")[2] for key, _, _ in received}

    await c.eventually(lambda: journey <= seen(), message=f"the journey's events (missing {journey - seen()})")
    events: dict[str, dict[str, Any]] = {}
    for routing_key, content_type, raw in received:
        event = assert_valid_cloudevent(routing_key, content_type, raw, "wavecorp")
        assert events.setdefault(event["id"], event) == event  # a redelivered id carries the same event
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events.values():
        by_type.setdefault(event["type"].split(".", 3)[3].rsplit(".", 1)[0], []).append(event)

    created = by_type["enrollment.created"]
    assert [e["data"]["enrollment_id"] for e in created] == [enrollment["id"]]  # the repeated enroll sent nothing
    (completed,) = by_type["enrollment.completed"]
    assert completed["subject"] == f"enrollment/{enrollment['id']}"
    assert completed["data"]["user"]["name"] == "Hedy Lamarr"
    (issued,) = by_type["certificate.issued"]
    assert issued["data"]["verification_id"] == cert["verification_id"]
    assert issued["source"] == "/learn/certificates" and completed["source"] == "/learn/enrollment"
    # the work a request caused carries its request id, through every hop
    request_id = committed["request_id"]
    assert request_id in {e["requestid"] for e in by_type["runtime.committed"]}
    assert request_id in {e["requestid"] for e in by_type["attempt.updated"]}
    assert completed["requestid"] == issued["requestid"] == request_id
