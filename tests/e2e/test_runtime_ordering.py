"""The learner runtime through the gateway's content origin, as a browser hits it: a commit and a finish racing,
and tokens that end with their purpose. On the real topology (PostgreSQL + RabbitMQ, a process per service) and
on the embedded default (SQLite files, one process).

Ordering (docs/scorm-runtime.md): the commits of one launch are totally ordered. A commit and a finish sent
together both apply in the order the runtime received them, or the commit arrived after the finish and is
refused with ``410 launch_ended``; either way nothing is lost (an accepted commit's data is in the attempt, the
finish's ``time_ended_at`` too) and nothing reopens a finished launch.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.cluster import Cluster
from tests.support.env import TestEnv

TRIALS = 100
SLUG_COUNTER = iter(range(1, 10_000))


class EmbeddedSystem(Cluster):
    """``python -m services run`` (what ``make run`` starts): SQLite files and the in-process bus, one process."""

    def environ(self) -> dict[str, str]:
        env = super().environ()
        for name in ("LEARN_POSTGRES_URL", "LEARN_AMQP_URL", "LEARN_DATABASE_PREFIX", "LEARN_AMQP_NAMESPACE"):
            env.pop(name, None)
        env["LEARN_DATA_DIR"] = str(self.workdir / "data")
        return env

    async def start(self, timeout: float = 90) -> None:
        self.http = aiohttp.ClientSession()
        svc = self.services["gateway"]
        log = svc.log_path.open("ab")
        svc.proc = subprocess.Popen([sys.executable, "-m", "services", "run"], cwd=self.workdir,
                                    env=self.environ(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        await self.wait_ready(timeout)


@pytest.fixture
async def embedded(test_env: TestEnv, tmp_path: Path) -> AsyncIterator[EmbeddedSystem]:
    system = EmbeddedSystem(test_env, tmp_path / "embedded")
    try:
        await system.start()
        yield system
    finally:
        await system.stop()


async def post(system: Cluster, token: str, action: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    assert system.http is not None
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    async with system.http.post(f"{system.content_url}/learn/runtime/{token}/{action}", **kwargs) as resp:
        return resp.status, await resp.json()


async def a_learner_with_a_video(system: Cluster) -> tuple[str, int, int, str]:
    """A tenant, a learner enrolled in a course whose required reading is never done (so the enrollment stays
    active, every launch in normal mode), and the video activity the trials launch."""
    slug = f"race{next(SLUG_COUNTER)}x{id(system) % 10_000}"
    key = await system.tenant_with_key(slug)
    await system.user(slug, 1, "Ada Learner")
    course, (video, _reading) = await system.course(key, slug, f"{slug}-course", [
        {"title": "Watch", "kind": "video", "required": True},
        {"title": "Read", "kind": "reading", "required": True},
    ])
    enrollment = await system.enroll(key, 1, course["id"])
    return key, enrollment["id"], video["id"], slug


async def race_commit_and_finish(system: Cluster, trials: int = TRIALS) -> None:
    key, enrollment_id, activity_id, _ = await a_learner_with_a_video(system)
    expected: dict[int, float | None] = {}  # attempt id -> the score it must carry (None: commit refused)
    orders = {"commit_first": 0, "finish_first": 0}
    for trial in range(trials):
        launch = await system.launch(key, enrollment_id, activity_id)
        token = launch["runtime_token"]
        score = (trial % 90 + 10) / 100
        cmi = {"cmi.completion_status": "completed", "cmi.success_status": "passed",
               "cmi.score.scaled": str(score), "cmi.session_time": "PT10S"}
        # The player's page-hide save and the content's Terminate: sent together, on two connections. The finish
        # leaves 0-9 ms after the commit (it needs less work to reach the launch's lock, so at a 0 ms offset it
        # nearly always wins): the trials sweep the window where the two overlap, and both orders occur.
        async def finish_after(offset: float) -> tuple[int, dict[str, Any]]:
            await asyncio.sleep(offset)
            return await post(system, token, "finish")

        (c_status, c_body), (f_status, f_body) = await asyncio.gather(
            post(system, token, "commit", {"cmi": cmi}), finish_after((trial % 10) / 1000))
        assert f_status == 200 and f_body["data"]["finished"] is True, (trial, f_status, f_body)
        if c_status == 200:
            assert c_body["data"]["sequence"] < f_body["data"]["sequence"], (trial, c_body, f_body)
            expected[launch["attempt_id"]] = score
            orders["commit_first"] += 1
        else:
            assert (c_status, c_body["error"]["code"]) == (410, "launch_ended"), (trial, c_status, c_body)
            assert "finished" in c_body["error"]["message"]
            expected[launch["attempt_id"]] = None
            orders["finish_first"] += 1
        # Nothing reopens a finished launch: a later commit is refused, a repeated finish changes nothing.
        status, body = await post(system, token, "commit", {"cmi": cmi})
        assert (status, body["error"]["code"]) == (410, "launch_ended"), body
        status, body = await post(system, token, "finish")
        assert status == 200 and body["data"]["sequence"] == f_body["data"]["sequence"], body
    # The race is real: both orders happened.
    assert orders["commit_first"] > 0 and orders["finish_first"] > 0, orders

    # The attempts follow from runtime.committed through the bus: wait for the last of them, then check all.
    async def settled() -> dict[int, dict[str, Any]] | None:
        status, body = await system.api(key, "GET", f"/attempts?enrollment_id={enrollment_id}"
                                                    f"&activity_id={activity_id}&limit=100")
        assert status == 200, body
        found = {a["id"]: a for a in body["data"]}
        if set(found) != set(expected) or any(a["time_ended_at"] is None for a in found.values()):
            return None
        return found

    attempts = await system.eventually(settled, timeout=60, message=f"{trials} attempts ended")
    lost = []
    for attempt_id, wanted in expected.items():
        attempt = attempts[attempt_id]
        if wanted is None:
            ok = attempt["score_scaled"] is None and attempt["status"] == "not_attempted"
        else:
            ok = attempt["score_scaled"] == pytest.approx(wanted) and attempt["status"] == "passed" and (
                attempt["total_time_seconds"] == pytest.approx(10))
        if not ok:
            lost.append((attempt_id, wanted, attempt))
    assert lost == [], f"{len(lost)} of {trials} trials lost a commit or a finish: {lost[:3]}"


async def test_a_commit_and_a_finish_racing_lose_nothing_on_postgresql(cluster: Cluster) -> None:
    await race_commit_and_finish(cluster)


async def test_a_commit_and_a_finish_racing_lose_nothing_on_the_embedded_default(embedded: EmbeddedSystem) -> None:
    await race_commit_and_finish(embedded)


async def test_tokens_end_while_the_tenant_is_suspended_and_when_the_enrollment_is_cancelled(cluster: Cluster) -> None:
    await tokens_end_with_their_purpose(cluster)


async def test_tokens_end_on_the_embedded_default_too(embedded: EmbeddedSystem) -> None:
    await tokens_end_with_their_purpose(embedded)


async def tokens_end_with_their_purpose(cluster: Cluster) -> None:
    """Through the gateway: the admin API's suspension and the public API's cancel reach the runtime by events
    (``tenant.updated``, ``enrollment.cancelled``), so the answers change as soon as the scorm service applies
    them; the test waits for that, then checks every runtime path."""
    key, enrollment_id, activity_id, slug_name = await a_learner_with_a_video(cluster)
    launch = await cluster.launch(key, enrollment_id, activity_id)
    token = launch["runtime_token"]
    cmi = {"cmi.completion_status": "incomplete"}
    assert (await post(cluster, token, "commit", {"cmi": cmi}))[0] == 200

    async def commit_answers(expected: int) -> bool:
        return (await post(cluster, token, "commit", {"cmi": cmi}))[0] == expected

    async def all_ended() -> None:
        assert cluster.http is not None
        async with cluster.http.get(f"{cluster.content_url}/learn/player/{token}") as resp:
            page = await resp.text()
            assert resp.status == 410 and resp.headers["Content-Type"].startswith("text/html"), page
        async with cluster.http.get(f"{cluster.content_url}/learn/content/{token}/_learn/activity.html") as resp:
            assert resp.status == 410 and (await resp.json())["error"]["code"] == "launch_ended"
        for action in ("commit", "finish"):
            status, body = await post(cluster, token, action, {"cmi": cmi})
            assert (status, body["error"]["code"]) == (410, "launch_ended"), body

    status, body = await cluster.admin("POST", f"/tenants/{slug_name}", json={"status": "suspended"})
    assert status == 200 and body["data"]["status"] == "suspended", body
    await cluster.eventually(lambda: commit_answers(410), message="the suspension reached the runtime")
    await all_ended()
    status, body = await cluster.admin("POST", f"/tenants/{slug_name}", json={"status": "active"})
    assert status == 200, body
    await cluster.eventually(lambda: commit_answers(200), message="the reactivation reached the runtime")

    status, body = await cluster.api(key, "POST", f"/enrollments/{enrollment_id}/cancel")
    assert status == 200, body
    await cluster.eventually(lambda: commit_answers(410), message="the cancel reached the runtime")
    await all_ended()
