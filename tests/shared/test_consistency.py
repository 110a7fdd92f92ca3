"""Read-your-writes plumbing (ADR 0010): the bounded wait in a service, and the gateway's tracker and token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from services.catalog.app import create_app
from services.catalog.config import CatalogSettings
from services.gateway.domain import CausalTracker
from shared.bus.tables import inbox
from shared.consistency import H_AFTER, MAX_AFTER_IDS, AppliedEvents, parse_pairs, wait_applied
from shared.service import DB_KEY
from tests.support.env import TestEnv

QUEUE = "catalog.scorm_packages"


@pytest.fixture
async def catalog(test_env: TestEnv) -> AsyncIterator[TestClient]:
    settings = CatalogSettings(common=test_env.common(consistency_wait=0.3), consumers_enabled=False,
                               relay_enabled=False)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


async def test_a_service_answers_503_not_yet_consistent_when_an_awaited_event_never_comes(
        catalog: TestClient, test_env: TestEnv) -> None:
    headers = test_env.internal_headers() | {H_AFTER: f"{QUEUE}=never-applied-event"}
    started = time.monotonic()
    resp = await catalog.get("/api/v1/learn/courses", headers=headers)
    body = await resp.json()
    assert resp.status == 503, body
    assert body["error"]["code"] == "not_yet_consistent"
    assert "never-applied-event" in body["error"]["message"] and "retry" in body["error"]["message"]
    assert resp.headers["Retry-After"] == "1"
    assert 0.25 < time.monotonic() - started < 3


async def test_a_service_answers_at_once_when_the_event_is_in_its_inbox(catalog: TestClient,
                                                                         test_env: TestEnv) -> None:
    db = catalog.server.app[DB_KEY]
    async with db.transaction() as session:
        await session.execute(sa.insert(inbox).values(consumer=QUEUE, event_id="applied-event"))
    headers = test_env.internal_headers() | {H_AFTER: f"{QUEUE}=applied-event"}
    resp = await catalog.get("/api/v1/learn/courses", headers=headers)
    assert resp.status == 200, await resp.text()


async def test_queues_of_other_services_and_malformed_parts_are_ignored(catalog: TestClient,
                                                                          test_env: TestEnv) -> None:
    headers = test_env.internal_headers() | {H_AFTER: "enrollment.users=x;garbage;catalog.scorm_packages="}
    resp = await catalog.get("/api/v1/learn/courses", headers=headers)
    assert resp.status == 200, await resp.text()


async def test_a_local_consumer_commit_ends_the_wait_at_once(catalog: TestClient) -> None:
    applied = AppliedEvents()
    engine = catalog.server.app[DB_KEY].engine
    waiting = asyncio.create_task(wait_applied(engine, [(QUEUE, "e1")], timeout=5, recheck=10, applied=applied))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    started = time.monotonic()
    applied.mark(QUEUE, ["e1"])
    assert await waiting == []
    assert time.monotonic() - started < 0.5  # woken, not polled (the re-read interval here is 10 s)


def test_the_tracker_sends_each_service_what_its_queues_owe_and_forgets_on_confirmation() -> None:
    tracker = CausalTracker("secret")
    tracker.record("acme", [("user.upserted", "u1"), ("course.updated", "c1")])
    after, owed = tracker.after_header("acme", "enrollment")
    assert after is not None
    assert sorted(parse_pairs(after)) == [("enrollment.courses", "c1"), ("enrollment.users", "u1")]
    assert tracker.after_header("other", "enrollment") == (None, {})
    tracker.confirm("acme", owed)
    assert tracker.after_header("acme", "enrollment") == (None, {})
    assert parse_pairs(tracker.after_header("acme", "scorm")[0]) == [("scorm.users", "u1")]


def test_events_nobody_consumes_are_not_tracked() -> None:
    tracker = CausalTracker("secret")
    # every real event type has a consumer since the webhooks service takes them all: use one that has none
    tracker.record("acme", [("nobody.listens", "x")])
    assert tracker.token("acme") is None


def test_a_token_carries_pending_events_to_another_replica_of_the_same_tenant_only() -> None:
    first, second = CausalTracker("secret"), CausalTracker("secret")
    first.record("acme", [("enrollment.created", "e1")])
    token = first.token("acme")
    assert token
    second.absorb("other", token)
    assert second.after_header("other", "scorm") == (None, {})
    second.absorb("acme", token)
    assert parse_pairs(second.after_header("acme", "scorm")[0]) == [("scorm.enrollments", "e1")]


def test_a_forged_or_tampered_token_is_ignored() -> None:
    first, other_secret = CausalTracker("secret"), CausalTracker("another")
    first.record("acme", [("enrollment.created", "e1")])
    token = first.token("acme")
    assert token
    other_secret.absorb("acme", token)
    assert other_secret.token("acme") is None
    body, _, mac = token.rpartition(".")
    tampered = CausalTracker("secret")
    tampered.absorb("acme", body[:-2] + "AA." + mac)
    tampered.absorb("acme", "not a token")
    assert tampered.token("acme") is None


def test_pending_events_expire_after_the_window() -> None:
    tracker = CausalTracker("secret", window=0.0)
    tracker.record("acme", [("enrollment.created", "e1")])
    assert tracker.after_header("acme", "scorm") == (None, {})


def test_a_service_is_sent_only_what_it_owes_however_much_other_services_owe() -> None:
    tracker = CausalTracker("secret")
    # 1000 writes owed to the enrollment service (and others), then one the catalog consumes: a catalog read is
    # sent just that one, and an enrollment read the newest MAX_AFTER_IDS, newest first.
    tracker.record("acme", [("user.upserted", f"u{i}") for i in range(1000)])
    tracker.record("acme", [("scorm_package.ready", "p1")])
    assert tracker.owed("acme", "catalog") == {"catalog.scorm_packages": ["p1"]}
    owed = tracker.owed("acme", "enrollment")
    assert owed["enrollment.users"][0] == "u999"
    assert sum(len(ids) for ids in owed.values()) == MAX_AFTER_IDS
    # Confirming them drops them from the next request's list, and the next older ones take their place.
    tracker.confirm("acme", owed)
    assert tracker.owed("acme", "enrollment")["enrollment.users"][0] == f"u{999 - MAX_AFTER_IDS}"


def test_the_token_changes_with_what_is_pending_and_is_none_once_nothing_is() -> None:
    tracker = CausalTracker("secret")
    tracker.record("acme", [("enrollment.created", "e1")])
    first = tracker.token("acme")
    assert first and tracker.token("acme") == first  # the same pending set: the same token
    tracker.record("acme", [("enrollment.created", "e2")])
    second = tracker.token("acme")
    assert second and second != first
    other = CausalTracker("secret")
    other.absorb("acme", second)
    assert sorted(parse_pairs(other.after_header("acme", "scorm")[0])) == [("scorm.enrollments", "e1"),
                                                                          ("scorm.enrollments", "e2")]
    for service in ("scorm", "enrollment", "certificates", "webhooks", "catalog"):
        owed = tracker.owed("acme", service)
        tracker.confirm("acme", owed)
    assert tracker.token("acme") is None
