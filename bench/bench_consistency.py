"""Read-your-writes (issue 14, ADR 0010): what the causal-token mechanism adds to a request.

One cluster on the real PostgreSQL and RabbitMQ, two gateways in front of the same services: one with the mechanism
(the default), one with ``LEARN_GATEWAY_CONSISTENCY=false`` (the behaviour before it). Requests alternate between
them, one at a time, so both see the same machine load.

- **No wait needed**: ``GET /courses/{id}`` on a tenant with nothing pending, through each gateway.
- **Wait needed**: ``PUT user`` then at once ``POST /enrollments`` for that user. The second call waits until the
  enrollment service applied ``user.upserted``; its latency minus that of enrolling an already-known user is the
  wait, i.e. the event pipeline's commit → effect time as a client pays it. Without the mechanism the same
  sequence fails (the enrollment service does not know the user yet): the failure rate is reported too.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.cluster import Cluster, ServiceProcess, free_port, running_cluster
from tests.support.env import TestEnv
from tests.support.infra import amqp_url, postgres_url, wait_until

UNLIMITED = {"LEARN_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "LEARN_GATEWAY_RATE_LIMIT_BURST": "1000000",
             "LEARN_GATEWAY_ACCESS_LOG": "false"}
READING = {"title": "Read", "kind": "reading", "required": True}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values), 2), "p99_ms": round(pct(values, 99), 2), "n": len(values)}


async def _timed(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[float, int]:
    started = time.perf_counter()
    async with http.request(method, url, **kw) as resp:
        await resp.read()
        return (time.perf_counter() - started) * 1000, resp.status


async def _run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = TestEnv(postgres_url=postgres_url(), amqp_url=amqp_url(), data_dir=Path(tmp) / "data")
        env.data_dir.mkdir()
        try:
            async with running_cluster(env, Path(tmp) / "cluster", extra_env=dict(UNLIMITED)) as c:
                return await _measure(c, n)
        finally:
            await env.cleanup()


async def _measure(c: Cluster, n: int) -> dict[str, Any]:
    off = ServiceProcess("gateway_off", free_port(), c.workdir / "logs" / "gateway_off.log")
    c.services["gateway_off"] = off
    c.extra_env.update({"LEARN_GATEWAY_PORT": str(off.port), "LEARN_GATEWAY_CONSISTENCY": "false",
                        "LEARN_GATEWAY_CONTENT_PORT": "0"})  # no second content listener (the first has the port)
    c.spawn_as("gateway_off", "gateway")
    for name in ("LEARN_GATEWAY_PORT", "LEARN_GATEWAY_CONSISTENCY", "LEARN_GATEWAY_CONTENT_PORT"):
        del c.extra_env[name]
    assert c.http is not None
    http = c.http

    async def off_ready() -> bool:
        try:
            async with http.get(off.url + "/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await wait_until(off_ready, timeout=60, interval=0.2, message="second gateway ready")
    slug = "bench-consistency"
    key = await c.tenant_with_key(slug)
    course, _ = await c.course(key, slug, "bench-course", [READING])
    auth = {"Authorization": f"Bearer {key}"}
    admin = {"Authorization": f"Bearer {c.admin_token}"}
    gateways = {"with the mechanism": c.gateway_url, "without (before issue 14)": off.url}

    # Nothing pending: reads through each gateway, interleaved.
    reads: dict[str, list[float]] = {name: [] for name in gateways}
    for _ in range(50):  # warm both
        for url in gateways.values():
            await _timed(http, "GET", f"{url}/api/v1/learn/courses/{course['id']}", headers=auth)
    for _ in range(n):
        for name, url in gateways.items():
            ms, status = await _timed(http, "GET", f"{url}/api/v1/learn/courses/{course['id']}", headers=auth)
            assert status == 200
            reads[name].append(ms)

    # A wait needed: upsert a user, then enroll them at once. Known users give the no-wait baseline.
    known = list(range(1, n + 1))
    for uid in known:
        await c.user(slug, uid, f"Known {uid}")
    await asyncio.sleep(1)  # the baseline must not wait: let every upsert reach the enrollment service first
    baseline: list[float] = []
    after_upsert: list[float] = []
    failures_without = 0
    for i in range(n):
        ms, status = await _timed(http, "POST", f"{c.gateway_url}/api/v1/learn/enrollments", headers=auth,
                                  json={"user_id": known[i], "course_id": course["id"]})
        assert status == 201
        baseline.append(ms)
        uid = 10_000 + i
        await _timed(http, "PUT", f"{c.gateway_url}/admin/api/v1/tenants/{slug}/users/{uid}", headers=admin,
                     json={"name": f"New {uid}", "email": f"n{uid}@example.com"})
        ms, status = await _timed(http, "POST", f"{c.gateway_url}/api/v1/learn/enrollments", headers=auth,
                                  json={"user_id": uid, "course_id": course["id"]})
        assert status == 201, status
        after_upsert.append(ms)
        uid = 50_000 + i
        await _timed(http, "PUT", f"{off.url}/admin/api/v1/tenants/{slug}/users/{uid}", headers=admin,
                     json={"name": f"Off {uid}", "email": f"o{uid}@example.com"})
        _, status = await _timed(http, "POST", f"{off.url}/api/v1/learn/enrollments", headers=auth,
                                 json={"user_id": uid, "course_id": course["id"]})
        failures_without += status != 201
    with_, without = summary(reads["with the mechanism"]), summary(reads["without (before issue 14)"])
    waits = [a - statistics.median(baseline) for a in after_upsert]
    return {
        "n": n,
        "read_no_wait": {"with": with_, "without": without,
                         "added_p50_ms": round(with_["p50_ms"] - without["p50_ms"], 2),
                         "added_p99_ms": round(with_["p99_ms"] - without["p99_ms"], 2)},
        "enroll_known_user": summary(baseline),
        "enroll_right_after_upsert": summary(after_upsert),
        "wait": summary(waits),
        "failures_without_mechanism": f"{failures_without} of {n}",
    }


def run(n: int = 300) -> dict[str, Any]:
    return asyncio.run(_run(n))


def markdown(r: dict[str, Any]) -> str:
    read = r["read_no_wait"]
    return "\n".join([
        "Two gateways in front of the same services, requests alternating one at a time (module docstring of "
        "`bench/bench_consistency.py`).",
        "",
        "| case | p50 ms | p99 ms | n |",
        "|---|---|---|---|",
        f"| GET course, nothing pending, with the mechanism | {read['with']['p50_ms']} | {read['with']['p99_ms']} "
        f"| {read['with']['n']} |",
        f"| GET course, without it (before issue 14) | {read['without']['p50_ms']} | {read['without']['p99_ms']} "
        f"| {read['without']['n']} |",
        f"| POST enrollment, user known long ago | {r['enroll_known_user']['p50_ms']} | "
        f"{r['enroll_known_user']['p99_ms']} | {r['enroll_known_user']['n']} |",
        f"| POST enrollment right after PUT user (waits for user.upserted) | {r['enroll_right_after_upsert']['p50_ms']}"
        f" | {r['enroll_right_after_upsert']['p99_ms']} | {r['enroll_right_after_upsert']['n']} |",
        f"| the wait itself (difference to the known-user median) | {r['wait']['p50_ms']} | {r['wait']['p99_ms']} "
        f"| {r['wait']['n']} |",
        "",
        f"- Added latency when no wait is needed: p50 {read['added_p50_ms']:+} ms, p99 {read['added_p99_ms']:+} ms "
        "(target: within noise).",
        f"- The same PUT user → POST enrollment sequence without the mechanism: "
        f"{r['failures_without_mechanism']} failed (400: the user is not known yet).",
        "- Target for the wait: p99 ≤ the event pipeline's p99 commit → effect (section 'Event pipeline').",
    ])
