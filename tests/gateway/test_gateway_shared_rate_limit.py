"""The per-key rate limit across gateway replicas (issue 18, ADR 0019).

Two gateway processes on one database, behind a small proxy that sends requests to each in turn, in front of
echo services. With ``LEARN_REDIS_URL`` the key's limit holds at its configured rate across both; with Redis
unreachable each replica limits on its own (2x the rate) and ``learn_gateway_rate_limit_fallbacks_total`` counts
every request it decided alone.

The rate is judged against the time the test measured, not a fixed one: a key with burst ``B`` and rate ``r``
gets at most ``B + r * T`` requests through in ``T`` seconds, and, as long as requests keep coming faster than the
rate, at least that much minus 10 %. The burst is two seconds of the rate, so a stall of the loaded machine shorter
than that costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from services.gateway.keys import RedisRateLimiter
from tests.gateway.conftest import ADMIN_TOKEN, Echo
from tests.support.cluster import REPO, free_port
from tests.support.env import TestEnv
from tests.support.infra import wait_until

REDIS_URL = os.environ.get("LEARN_TEST_REDIS_URL", "redis://127.0.0.1:6379")
RATE, BURST, SECONDS = 20.0, 40, 3.0
COURSES = "/api/v1/learn/courses"


def fallbacks_here() -> float:
    return REGISTRY.get_sample_value("learn_gateway_rate_limit_fallbacks_total") or 0.0


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, removed afterwards. Redis must be up (LEARN_TEST_REDIS_URL)."""
    prefix = f"learn-test-{secrets.token_hex(6)}:"
    client = Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:  # a failure, not a skip: the shared rate limit is not tested without Redis
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (set LEARN_TEST_REDIS_URL): {exc!r}")
    yield prefix
    async for key in client.scan_iter(match=prefix + "*"):
        await client.delete(key)
    await client.aclose()


# --- the GCRA script and the fallback, on their own ---------------------------------------------------------


async def test_the_script_lets_the_burst_through_then_refuses(redis_prefix: str) -> None:
    limiter = RedisRateLimiter.from_url(REDIS_URL, rate=0.01, burst=5, prefix=redis_prefix, timeout=5)
    other = RedisRateLimiter.from_url(REDIS_URL, rate=0.01, burst=5, prefix=redis_prefix, timeout=5)
    try:
        before = fallbacks_here()
        # Two limiters (two replicas) on one key share one bucket: 5 in all, whichever replica answers.
        decisions = [await (limiter if i % 2 else other).take(1, 0.0) for i in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
        assert all(d.retry_after >= 1 for d in decisions[5:])
        assert (await limiter.take(2, 0.0)).allowed  # another key has its own bucket
        assert fallbacks_here() == before
    finally:
        await limiter.close()
        await other.close()


async def test_an_unreachable_redis_falls_back_to_this_process_and_counts_it() -> None:
    limiter = RedisRateLimiter.from_url(f"redis://127.0.0.1:{free_port()}", rate=0.01, burst=3, timeout=0.5)
    try:
        before = fallbacks_here()
        decisions = [await limiter.take(1, 100.0) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]  # this process's own bucket
        assert fallbacks_here() == before + 4
    finally:
        await limiter.close()


class RedisDoor:
    """A TCP forwarder in front of the shared Redis that the test opens and closes (Redis itself keeps running)."""

    def __init__(self, port: int):
        self.port = port
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        host, port = REDIS_URL.removeprefix("redis://").split("/")[0].rsplit(":", 1)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        async def link(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            redis_r, redis_w = await asyncio.open_connection(host, int(port))
            self.links |= {client_w, redis_w}
            await asyncio.gather(pipe(client_r, redis_w), pipe(redis_r, client_w))

        self.server = await asyncio.start_server(link, "127.0.0.1", self.port)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.links:
            writer.close()
        self.links.clear()
        await self.server.wait_closed()


async def test_the_shared_limit_comes_back_when_redis_does(redis_prefix: str) -> None:
    door = RedisDoor(free_port())
    await door.open()
    client = Redis.from_url(f"redis://127.0.0.1:{door.port}", socket_timeout=2, socket_connect_timeout=2)
    limiter = RedisRateLimiter(0.01, 100, client, prefix=redis_prefix, retry_after=0.0)
    try:
        start = fallbacks_here()
        assert (await limiter.take(1, 0.0)).remaining == 99  # shared: Redis holds the bucket
        await door.close()
        alone = await limiter.take(1, 0.0)
        assert alone.allowed and alone.remaining == 99  # this process's own, full bucket
        assert fallbacks_here() == start + 1
        await door.open()
        assert (await limiter.take(1, 0.0)).remaining == 98  # Redis again, where the bucket was left
        assert fallbacks_here() == start + 1
    finally:
        await limiter.close()
        if door.server is not None and door.server.is_serving():
            await door.close()


# --- two replicas behind one address --------------------------------------------------------------------------


@dataclass
class Replicas:
    proxy_url: str
    gateway_urls: list[str]
    key: str


class AlternatingProxy:
    """Sends each request to the next gateway in turn (what a round-robin load balancer does)."""

    def __init__(self, upstreams: list[str]):
        self.upstreams = upstreams
        self.turn = 0
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert self.session is not None
        base = self.upstreams[self.turn % len(self.upstreams)]
        self.turn += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with self.session.request(request.method, base + request.rel_url.raw_path_qs, headers=headers,
                                        data=await request.read()) as upstream:
            body = await upstream.read()
            keep = {k: v for k, v in upstream.headers.items()
                    if k.lower() in ("content-type", "retry-after", "ratelimit", "ratelimit-policy")}
            return web.Response(status=upstream.status, body=body, headers=keep)


async def _echoes() -> tuple[dict[str, str], list[Any]]:
    urls, runners = {}, []
    for name in ("catalog", "enrollment", "certificates", "scorm", "webhooks"):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", Echo(name).handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        urls[name] = f"http://127.0.0.1:{port}"
        runners.append(runner)
    return urls, runners


@contextlib.asynccontextmanager
async def replicas(env: TestEnv, workdir: Path, redis_url: str, prefix: str) -> AsyncIterator[Replicas]:
    echo_urls, runners = await _echoes()
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    proxy = AlternatingProxy([f"http://127.0.0.1:{p}" for p in ports])
    proxy_runner: web.AppRunner | None = None
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
        base.update(env.environ())
        base.update({
            "LEARN_ADMIN_TOKEN": ADMIN_TOKEN, "LEARN_GATEWAY_CONTENT_PORT": "0", "LEARN_LOG_LEVEL": "warning",
            "LEARN_GATEWAY_ACCESS_LOG": "false", "LEARN_GATEWAY_RATE_LIMIT_PER_SECOND": str(RATE),
            "LEARN_GATEWAY_RATE_LIMIT_BURST": str(BURST), "LEARN_REDIS_URL": redis_url, "LEARN_REDIS_PREFIX": prefix,
            **{f"LEARN_GATEWAY_{name.upper()}_URL": url for name, url in echo_urls.items()},
        })
        async with aiohttp.ClientSession() as http:
            for i, port in enumerate(ports):  # one after the other: the first applies the migrations
                log = (workdir / f"gateway{i}.log").open("ab")
                procs.append(subprocess.Popen([sys.executable, "-m", "services.gateway", "serve"], cwd=REPO,
                                              env={**base, "LEARN_GATEWAY_PORT": str(port)}, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
                log.close()

                async def up(url: str = f"http://127.0.0.1:{port}/healthz") -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(url) as resp:
                            return resp.status == 200
                    return False

                await wait_until(up, timeout=60, interval=0.2, message=f"gateway replica {i} up")
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            gw = f"http://127.0.0.1:{ports[0]}/admin/api/v1"
            async with http.post(f"{gw}/tenants", json={"slug": "acme", "name": "Acme", "plan": "pro"},
                                 headers=admin) as resp:
                assert resp.status == 201, await resp.text()
            async with http.post(f"{gw}/tenants/acme/api-keys", json={"name": "k", "scopes": ["learn:read"]},
                                 headers=admin) as resp:
                assert resp.status == 201, await resp.text()
                key = (await resp.json())["data"]["key"]
        proxy.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        proxy_runner = web.AppRunner(app)
        await proxy_runner.setup()
        proxy_port = free_port()
        await web.TCPSite(proxy_runner, "127.0.0.1", proxy_port).start()
        yield Replicas(f"http://127.0.0.1:{proxy_port}", [f"http://127.0.0.1:{p}" for p in ports], key)
    finally:
        if proxy_runner is not None:
            await proxy_runner.cleanup()
        if proxy.session is not None:
            await proxy.session.close()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 15)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        for runner in runners:
            await runner.cleanup()


@dataclass
class Run:
    allowed: int
    refused: int
    seconds: float
    other: list[int]


async def hammer(url: str, key: str, seconds: float, concurrency: int = 8) -> Run:
    """Requests through the proxy as fast as ``concurrency`` clients can for ``seconds``; counts the answers."""
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        started = time.monotonic()
        deadline = started + seconds

        async def client() -> None:
            while time.monotonic() < deadline:
                async with http.get(url + COURSES, headers=headers) as resp:
                    await resp.read()
                    statuses.append(resp.status)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return Run(statuses.count(200), statuses.count(429), elapsed, [s for s in statuses if s not in (200, 429)])


async def fallbacks(http: aiohttp.ClientSession, gateway_url: str) -> float:
    async with http.get(gateway_url + "/metrics") as resp:
        text = await resp.text()
    found = re.search(r"^learn_gateway_rate_limit_fallbacks_total ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, "the fallback counter is exported"
    return float(found.group(1))


async def test_two_replicas_with_redis_hold_the_keys_rate(test_env: TestEnv, tmp_path: Path,
                                                         redis_prefix: str) -> None:
    async with replicas(test_env, tmp_path, REDIS_URL, redis_prefix) as r:
        run = await hammer(r.proxy_url, r.key, SECONDS)
        async with aiohttp.ClientSession() as http:
            assert [await fallbacks(http, url) for url in r.gateway_urls] == [0.0, 0.0]
    ceiling = BURST + RATE * run.seconds
    assert not run.other, run
    assert run.refused > run.allowed, run  # the clients asked for more than the rate: the limit was tested
    assert 0.9 * ceiling <= run.allowed <= 1.1 * ceiling, (run, ceiling)


async def test_two_replicas_without_redis_limit_each_on_its_own_and_count_it(test_env: TestEnv,
                                                                             tmp_path: Path) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}"
    async with replicas(test_env, tmp_path, unreachable, "learn-test-none:") as r:
        run = await hammer(r.proxy_url, r.key, SECONDS)
        async with aiohttp.ClientSession() as http:
            counted = [await fallbacks(http, url) for url in r.gateway_urls]
    ceiling = BURST + RATE * run.seconds  # one replica's
    assert not run.other, run
    assert run.refused > 0, run
    # Each replica let its own share through: about twice the key's rate in all.
    assert 1.8 * ceiling <= run.allowed <= 2.2 * ceiling, (run, ceiling)
    # Every request was decided by the replica alone, and counted as such (the proxy alternates: half each).
    assert sum(counted) == run.allowed + run.refused, counted
    assert all(c >= (run.allowed + run.refused) // 2 - 1 for c in counted), counted
