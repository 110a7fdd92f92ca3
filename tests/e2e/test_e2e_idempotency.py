"""``Idempotency-Key`` through the gateway, on every write of the public and the admin API (issue 14, item 2),
on the real topology (every service its own process, PostgreSQL and RabbitMQ) and on the embedded default
(``python -m services run``: SQLite and the in-process bus).

For each route: the first request with a key answers as usual; the same request again replays that answer
(status, body, ``Location``/``Content-Type``) with ``Idempotent-Replayed: true`` and without doing it twice; the
same key on another body or route is ``422 idempotency_key_reused``. Then: a key in flight is ``409``, keys of two
tenants are independent, expired keys are swept, malformed keys are refused at the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from tests.support.cluster import REPO, Cluster, running_cluster
from tests.support.env import TestEnv
from tests.support.infra import wait_until
from tests.support.scorm_packages import FIXTURES
from tests.test_embedded import free_ports

pytestmark = pytest.mark.asyncio(loop_scope="module")


READING = {"title": "Read the rules", "kind": "reading", "required": True}
REPLAYED = "Idempotent-Replayed"


class Embedded(Cluster):
    """The embedded default, driven through its gateway like the real cluster (same client helpers)."""

    proc: subprocess.Popen[bytes] | None = None

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
        ports = free_ports(5)
        for name, port in zip(("gateway", "catalog", "enrollment", "certificates", "scorm"), ports, strict=True):
            self.services[name].port = port
            env[f"LEARN_{name.upper()}_PORT"] = str(port)
        env["LEARN_WEBHOOKS_PORT"] = str(free_ports(1)[0])  # never the default 8086: another system may hold it
        env.update({"LEARN_DATA_DIR": str(self.workdir / "data"), "LEARN_ADMIN_TOKEN": self.admin_token,
                    "LEARN_PUBLIC_URL": self.gateway_url, "LEARN_LOG_LEVEL": "warning",
                    "LEARN_CONTENT_URL": self.content_url, "LEARN_GATEWAY_CONTENT_PORT": str(self.content_port),
                    "LEARN_CERTIFICATES_RENDER_WORKERS": "1", **self.extra_env})
        return env

    async def start(self, timeout: float = 90) -> None:
        self.http = aiohttp.ClientSession()
        log = (self.workdir / "logs" / "embedded.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services", "run"], cwd=REPO, env=self.environ(),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        async def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "the embedded system exited"
            try:
                assert self.http is not None
                async with self.http.get(self.gateway_url + "/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, timeout=timeout, interval=0.3, message="embedded system ready")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        if self.http is not None:
            await self.http.close()


@pytest.fixture(scope="module")
def module_env(postgres_url: str, amqp_url: str, tmp_path_factory) -> TestEnv:
    tmp = tmp_path_factory.mktemp("idempotency")
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp / "data")
    env.data_dir.mkdir()
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["cluster", "embedded"])
async def system(request, module_env: TestEnv) -> AsyncIterator[Cluster]:
    workdir = module_env.data_dir.parent / request.param
    extra = {"LEARN_IDEMPOTENCY_SWEEP_INTERVAL": "0.5"}
    if request.param == "cluster":
        try:
            async with running_cluster(module_env, workdir, extra_env=extra) as c:
                yield c
        finally:
            await module_env.cleanup()
    else:
        embedded = Embedded(module_env, workdir, extra_env=extra)
        try:
            await embedded.start()
            yield embedded
        finally:
            await embedded.stop()


# --- the client ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def replayed(self) -> bool:
        return self.headers.get(REPLAYED) == "true"


async def send(c: Cluster, method: str, path: str, token: str, key: str | None, json: Any = None,
               data: bytes | None = None, content_type: str | None = None) -> Reply:
    assert c.http is not None
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if content_type:
        headers["Content-Type"] = content_type
    async with c.http.request(method, c.gateway_url + path, json=json, data=data, headers=headers) as resp:
        body = await resp.json() if "json" in resp.headers.get("Content-Type", "") else await resp.read()
        return Reply(resp.status, body, resp.headers)


def new_key() -> str:
    return "idem-" + secrets.token_hex(10)


async def first_success(call: Callable[[], Awaitable[Reply]], timeout: float = 60) -> Reply:
    """The first answer that is 2xx. While a read model catches up the service answers 400/404, which are not
    stored with the key: the client sends the same request with the same key again, as it should."""
    async def attempt() -> Reply | None:
        reply = await call()
        if 200 <= reply.status < 300:
            return reply
        assert reply.status in (400, 404, 503), reply.body
        assert not reply.replayed
        return None

    return await wait_until(attempt, timeout=timeout, interval=0.2, message="a 2xx answer")


async def check(c: Cluster, method: str, path: str, token: str, body: Any = None, *,
                other: tuple[str, str, Any] | None = None, expect: tuple[int, ...] = (200, 201),
                data: bytes | None = None, content_type: str | None = None) -> Reply:
    """The three promises on one route; returns the first answer."""
    key = new_key()

    def call(m: str = method, p: str = path, b: Any = body) -> Awaitable[Reply]:
        return send(c, m, p, token, key, json=b, data=data, content_type=content_type)

    first = await first_success(call)
    assert first.status in expect and not first.replayed, (path, first.status, first.body)
    again = await call()
    assert again.replayed, (path, again.status, again.body)
    assert again.status == first.status
    assert again.body["data"] == first.body["data"] and again.body["request_id"] != first.body["request_id"]
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert again.headers.get("X-Request-Id") == again.body["request_id"]
    om, op, ob = other or (method, path, {"__another_body__": True})
    reused = await send(c, om, op, token, key, json=ob)
    assert reused.status == 422 and reused.body["error"]["code"] == "idempotency_key_reused", (path, reused.body)
    return first


async def tenant(c: Cluster, slug: str) -> str:
    return await c.tenant_with_key(slug)


# --- every route of item 2 ------------------------------------------------------------------------------------


async def test_admin_directory_writes(system: Cluster) -> None:
    c, admin = system, system.admin_token
    slug = "idem-dir"
    created = await check(c, "POST", "/admin/api/v1/tenants", admin, {"slug": slug, "name": "Dir", "plan": "pro"},
                          other=("POST", "/admin/api/v1/tenants", {"slug": slug + "x", "name": "D", "plan": "pro"}))
    assert created.status == 201 and created.body["data"]["slug"] == slug
    await check(c, "POST", f"/admin/api/v1/tenants/{slug}", admin, {"name": "Directory"},
                other=("POST", f"/admin/api/v1/tenants/{slug}", {"name": "Another"}))
    # API keys: see test_an_api_key_replay_never_shows_the_secret_again.
    status, key = await c.admin("POST", f"/tenants/{slug}/api-keys", json={"name": "shop", "scopes": ["learn:read"]})
    assert status == 201, key
    await check(c, "POST", f"/admin/api/v1/tenants/{slug}/api-keys/{key['data']['id']}/revoke", admin, None)
    await check(c, "PUT", f"/admin/api/v1/tenants/{slug}/users/42", admin,
                {"name": "Ada", "email": "ada@example.com"},
                other=("PUT", f"/admin/api/v1/tenants/{slug}/users/42", {"name": "Bob", "email": "b@example.com"}))
    status, user = await c.admin("GET", f"/tenants/{slug}/users/42")
    assert status == 200 and user["data"]["name"] == "Ada" and user["data"]["revision"] == 1


async def test_an_api_key_replay_never_shows_the_secret_again(system: Cluster) -> None:
    c = system
    await c.admin("POST", "/tenants", json={"slug": "idem-secret", "name": "S", "plan": "pro"})
    key = new_key()
    body = {"name": "shop", "scopes": ["learn:read"]}
    first = await send(c, "POST", "/admin/api/v1/tenants/idem-secret/api-keys", c.admin_token, key, json=body)
    again = await send(c, "POST", "/admin/api/v1/tenants/idem-secret/api-keys", c.admin_token, key, json=body)
    assert first.status == again.status == 201 and again.replayed
    assert first.body["data"]["key"].startswith("mc_live_") and "key" not in again.body["data"]
    assert again.body["data"] == {k: v for k, v in first.body["data"].items() if k != "key"}
    status, keys = await c.admin("GET", "/tenants/idem-secret/api-keys")
    assert status == 200 and len(keys["data"]) == 1, "the replay made a second key"
    reused = await send(c, "POST", "/admin/api/v1/tenants/idem-secret/api-keys", c.admin_token, key,
                        json={**body, "name": "other"})
    assert reused.status == 422 and reused.body["error"]["code"] == "idempotency_key_reused"


async def test_public_course_writes_and_admin_tree_writes(system: Cluster) -> None:
    c = system
    slug = "idem-courses"
    key = await tenant(c, slug)
    created = await check(c, "POST", "/api/v1/learn/courses", key, {"slug": "one", "title": "One"},
                          other=("POST", "/api/v1/learn/courses", {"slug": "two", "title": "Two"}))
    assert created.status == 201
    course = created.body["data"]["id"]
    status, listed = await c.api(key, "GET", "/courses")
    assert status == 200 and [x["slug"] for x in listed["data"]] == ["one"], "the replay created another course"
    await check(c, "POST", f"/api/v1/learn/courses/{course}", key, {"title": "One, again"},
                other=("POST", f"/api/v1/learn/courses/{course}", {"title": "Other"}))
    admin, base = c.admin_token, f"/admin/api/v1/tenants/{slug}"
    module = await check(c, "POST", f"{base}/courses/{course}/modules", admin, {"title": "M1"}, expect=(201,))
    module_id = module.body["data"]["id"]
    await check(c, "POST", f"{base}/modules/{module_id}", admin, {"title": "M1 renamed"})
    lesson = await check(c, "POST", f"{base}/modules/{module_id}/lessons", admin, {"title": "L1"}, expect=(201,))
    lesson_id = lesson.body["data"]["id"]
    await check(c, "POST", f"{base}/lessons/{lesson_id}", admin, {"title": "L1 renamed"})
    activity = await check(c, "POST", f"{base}/lessons/{lesson_id}/activities", admin, READING, expect=(201,))
    spare = await check(c, "POST", f"{base}/lessons/{lesson_id}/activities", admin,
                        {"title": "Spare", "kind": "reading", "required": False}, expect=(201,))
    await check(c, "POST", f"{base}/activities/{activity.body['data']['id']}", admin, {"title": "Read them"})
    await check(c, "POST", f"{base}/lessons/{lesson_id}/activities/reorder", admin,
                {"ids": [spare.body["data"]["id"], activity.body["data"]["id"]]})
    await check(c, "DELETE", f"{base}/activities/{spare.body['data']['id']}", admin, None,
                other=("DELETE", f"{base}/activities/{activity.body['data']['id']}", None))
    status, tree = await c.admin("GET", f"/tenants/{slug}/courses/{course}")
    assert status == 200, tree
    lessons = tree["data"]["modules"][0]["lessons"]
    assert len(tree["data"]["modules"]) == 1 and len(lessons) == 1 and len(lessons[0]["activities"]) == 1
    # Lifecycle: another transition with the same key is another route.
    published = await check(c, "POST", f"/api/v1/learn/courses/{course}/publish", key, None,
                            other=("POST", f"/api/v1/learn/courses/{course}/unpublish", None))
    assert published.body["data"]["status"] == "published"
    await check(c, "POST", f"/api/v1/learn/courses/{course}/unpublish", key, None,
                other=("POST", f"/api/v1/learn/courses/{course}/archive", None))
    archived = await check(c, "POST", f"/api/v1/learn/courses/{course}/archive", key, None)
    assert archived.body["data"]["status"] == "archived"


async def test_enrollment_cohort_launch_and_certificate_writes(system: Cluster) -> None:
    c = system
    slug = "idem-learn"
    key = await tenant(c, slug)
    for user in (1, 2, 3):
        await c.user(slug, user, f"Learner {user}")
    course, (activity,) = await c.course(key, slug, "learn", [READING])
    enrolled = await check(c, "POST", "/api/v1/learn/enrollments", key, {"user_id": 1, "course_id": course["id"]},
                           other=("POST", "/api/v1/learn/enrollments", {"user_id": 2, "course_id": course["id"]}))
    assert enrolled.status == 201
    enrollment = enrolled.body["data"]["id"]
    status, listed = await c.api(key, "GET", f"/enrollments?user_id=2&course_id={course['id']}")
    assert status == 200 and listed["data"] == [], "the reused key enrolled user 2"
    launch = await check(c, "POST", f"/api/v1/learn/enrollments/{enrollment}/launches", key,
                         {"activity_id": activity["id"]}, expect=(201,))
    assert launch.body["data"]["runtime_token"]
    status, cohort = await c.admin("POST", f"/tenants/{slug}/cohorts", json={"name": "C", "course_ids": [course["id"]]})
    assert status == 201, cohort
    granted = await check(c, "POST", "/api/v1/learn/cohorts/grant", key,
                          {"user_id": 3, "cohort_id": cohort["data"]["id"]},
                          other=("POST", "/api/v1/learn/cohorts/grant",
                                 {"user_id": 2, "cohort_id": cohort["data"]["id"]}))
    assert granted.status in (200, 201)
    admin, base = c.admin_token, f"/admin/api/v1/tenants/{slug}"
    made = await check(c, "POST", f"{base}/cohorts", admin, {"name": "D", "course_ids": [course["id"]]},
                       expect=(201,))
    await check(c, "POST", f"{base}/cohorts/{made.body['data']['id']}", admin, {"name": "D renamed"})
    # A certificate, by completing the course; then revoke and regenerate, public and admin.
    await c.complete_activity(key, enrollment, activity)
    await c.wait_status(key, enrollment, "completed", timeout=60)
    (cert,) = await c.eventually(lambda: _certificates(c, key, course["id"]), timeout=60, message="certificate")
    regenerated = await check(c, "POST", f"/api/v1/learn/certificates/{cert['id']}/regenerate-pdf", key, None,
                              other=("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke", {"reason": "x"}))
    assert regenerated.body["data"]["pdf"]["version"] == 2
    await check(c, "POST", f"{base}/certificates/{cert['id']}/regenerate-pdf", admin, None)
    revoked = await check(c, "POST", f"/api/v1/learn/certificates/{cert['id']}/revoke", key, {"reason": "fraud"},
                          other=("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke", {"reason": "other"}))
    assert revoked.body["data"]["is_revoked"] is True and revoked.body["data"]["pdf"]["version"] == 4
    # The admin API's revoke, on the certificate of the learner the cohort grant enrolled.
    status, third = await c.api(key, "GET", f"/enrollments?user_id=3&course_id={course['id']}")
    assert status == 200 and len(third["data"]) == 1, third
    await c.complete_activity(key, third["data"][0]["id"], activity)
    await c.wait_status(key, third["data"][0]["id"], "completed", timeout=60)
    both = await c.eventually(lambda: _certificates(c, key, course["id"], 2), timeout=60, message="2 certificates")
    (other_cert,) = [x for x in both if x["id"] != cert["id"]]
    admin_revoked = await check(c, "POST", f"{base}/certificates/{other_cert['id']}/revoke", admin, {"reason": "a"},
                                other=("POST", f"{base}/certificates/{other_cert['id']}/revoke", {"reason": "b"}))
    assert admin_revoked.body["data"]["is_revoked"] is True and admin_revoked.body["data"]["revoked_reason"] == "a"
    template = await check(c, "POST", f"{base}/cert-templates", admin, {"name": "Brand"}, expect=(201,))
    await check(c, "POST", f"{base}/cert-templates/{template.body['data']['id']}", admin, {"name": "Brand 2"})
    other_enrollment = await c.enroll(key, 2, course["id"])
    cancelled = await check(c, "POST", f"/api/v1/learn/enrollments/{other_enrollment['id']}/cancel", key, None)
    assert cancelled.body["data"]["status"] == "cancelled"


async def _certificates(c: Cluster, key: str, course_id: int, count: int = 1) -> list[dict[str, Any]] | None:
    found = await c.certificates_of(key, course_id=course_id)
    return found if len(found) >= count else None


async def test_a_scorm_upload(system: Cluster) -> None:
    c = system
    await c.admin("POST", "/tenants", json={"slug": "idem-scorm", "name": "S", "plan": "pro"})
    path = "/admin/api/v1/tenants/idem-scorm/scorm-packages?title=Golf"
    zipped = (FIXTURES / "golf_scorm12_singlesco.zip").read_bytes()
    other = FIXTURES / "golf_scorm2004_2nd_singlesco.zip"
    key = new_key()
    first = await send(c, "POST", path, c.admin_token, key, data=zipped, content_type="application/zip")
    again = await send(c, "POST", path, c.admin_token, key, data=zipped, content_type="application/zip")
    assert first.status == again.status == 201 and again.replayed and not first.replayed
    assert again.body["data"]["id"] == first.body["data"]["id"]
    reused = await send(c, "POST", path, c.admin_token, key, data=other.read_bytes(), content_type="application/zip")
    assert reused.status == 422 and reused.body["error"]["code"] == "idempotency_key_reused"
    status, listed = await c.admin("GET", "/tenants/idem-scorm/scorm-packages")
    assert status == 200 and len(listed["data"]) == 1, "the replay stored a second package"


# --- the rest of the rule --------------------------------------------------------------------------------------


async def test_keys_of_two_tenants_are_independent(system: Cluster) -> None:
    c = system
    one, two = await tenant(c, "idem-iso-a"), await tenant(c, "idem-iso-b")
    key = new_key()
    body = {"slug": "same", "title": "Same"}
    a = await send(c, "POST", "/api/v1/learn/courses", one, key, json=body)
    b = await send(c, "POST", "/api/v1/learn/courses", two, key, json=body)
    assert (a.status, b.status) == (201, 201) and not a.replayed and not b.replayed
    assert a.body["data"]["id"] != b.body["data"]["id"]
    # The admin's keys are per tenant too.
    user = {"name": "Ada", "email": "ada@example.com"}
    for slug in ("idem-iso-a", "idem-iso-b"):
        reply = await send(c, "PUT", f"/admin/api/v1/tenants/{slug}/users/7", c.admin_token, key, json=user)
        assert reply.status == 201 and not reply.replayed


async def test_a_burst_of_one_request_does_it_once(system: Cluster) -> None:
    c = system
    key_ = await tenant(c, "idem-burst")
    key = new_key()
    replies = await asyncio.gather(*(send(c, "POST", "/api/v1/learn/courses", key_, key,
                                          json={"slug": "burst", "title": "Burst"}) for _ in range(12)))
    assert {r.status for r in replies} <= {201, 409}, [(r.status, r.body) for r in replies]
    done = [r for r in replies if r.status == 201]
    assert len([r for r in done if not r.replayed]) == 1 and len({r.body["data"]["id"] for r in done}) == 1
    for r in replies:
        if r.status == 409:
            assert r.body["error"]["code"] == "idempotency_key_in_flight" and r.headers["Retry-After"] == "1"
    status, listed = await c.api(key_, "GET", "/courses")
    assert status == 200 and len(listed["data"]) == 1


@pytest.mark.parametrize("bad", ["", "x" * 256, "clé-unicode", "tab\tinside"])
async def test_a_malformed_key_is_refused_at_the_gateway(system: Cluster, bad: str) -> None:
    c = system
    key = await c.tenant_with_key(f"idem-bad-{secrets.token_hex(3)}")
    reply = await send(c, "POST", "/api/v1/learn/courses", key, bad, json={"slug": "bad", "title": "Bad"})
    assert reply.status == 400 and reply.body["error"]["code"] == "invalid_argument", reply.body
    assert "Idempotency-Key" in reply.body["error"]["message"]
    status, listed = await c.api(key, "GET", "/courses")
    assert status == 200 and listed["data"] == []


# --- in flight and expiry (PostgreSQL: the test holds a row lock, reads the service's table) -------------------


async def _catalog(c: Cluster) -> asyncpg.Connection:
    url = c.env.common().database_url("catalog").replace("postgresql+asyncpg://", "postgresql://")
    return await asyncpg.connect(url)


# The shared rule's 409 and sweep on SQLite: tests/shared/test_idempotency.py.
@pytest.mark.parametrize("system", ["cluster"], indirect=True)
async def test_a_key_in_flight_is_409_until_its_request_answers(system: Cluster) -> None:
    c = system
    key_ = await tenant(c, "idem-flight")
    status, body = await c.api(key_, "POST", "/courses", json={"slug": "slow", "title": "Slow"})
    assert status == 201
    course = body["data"]["id"]
    key = new_key()
    conn = await _catalog(c)
    try:
        lock = conn.transaction()
        await lock.start()
        await conn.execute("SELECT 1 FROM courses WHERE id = $1 FOR UPDATE", course)
        first = asyncio.ensure_future(send(c, "POST", f"/api/v1/learn/courses/{course}", key_, key,
                                           json={"title": "Slower"}))
        await c.eventually(lambda: conn.fetchval("SELECT 1 FROM idempotency_records WHERE key = $1", key),
                           message="the first request claimed its key")
        second = await send(c, "POST", f"/api/v1/learn/courses/{course}", key_, key, json={"title": "Slower"})
        assert second.status == 409 and second.body["error"]["code"] == "idempotency_key_in_flight"
        assert second.headers["Retry-After"] == "1"
        await lock.rollback()
        done = await first
        assert done.status == 200 and not done.replayed
        third = await send(c, "POST", f"/api/v1/learn/courses/{course}", key_, key, json={"title": "Slower"})
        assert third.status == 200 and third.replayed and third.body["data"] == done.body["data"]
    finally:
        await conn.close()


@pytest.mark.parametrize("system", ["cluster"], indirect=True)
async def test_expired_keys_are_swept_and_can_be_used_again(system: Cluster) -> None:
    c = system
    key_ = await tenant(c, "idem-expiry")
    key = new_key()
    first = await send(c, "POST", "/api/v1/learn/courses", key_, key, json={"slug": "a", "title": "A"})
    assert first.status == 201
    conn = await _catalog(c)
    try:
        await conn.execute("UPDATE idempotency_records SET expires_at = now() - interval '1 second' "
                           "WHERE key = $1", key)
        # The sweeper runs every 0.5 s here (LEARN_IDEMPOTENCY_SWEEP_INTERVAL); by default every 10 minutes.
        await c.eventually(lambda: _gone(conn, key), message="the expired key swept")
    finally:
        await conn.close()
    again = await send(c, "POST", "/api/v1/learn/courses", key_, key, json={"slug": "b", "title": "B"})
    assert again.status == 201 and not again.replayed and again.body["data"]["slug"] == "b"


async def _gone(conn: asyncpg.Connection, key: str) -> bool:
    return await conn.fetchval("SELECT count(*) FROM idempotency_records WHERE key = $1", key) == 0
