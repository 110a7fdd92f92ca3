"""Two gateway replicas behind one address: a client that echoes ``Consistency-Token`` reads its writes on
whichever replica answers (ADR 0010)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.client.conftest import UNLIMITED, Client
from tests.support.cluster import Cluster, ServiceProcess, free_port, running_cluster
from tests.support.env import TestEnv
from tests.support.infra import wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def two_gateways(client_env: TestEnv) -> AsyncIterator[tuple[Cluster, str]]:
    try:
        async with running_cluster(client_env, client_env.data_dir.parent / "replicas",
                                   extra_env=dict(UNLIMITED)) as cluster:
            second = ServiceProcess("gateway2", free_port(), cluster.workdir / "logs" / "gateway2.log")
            cluster.services["gateway2"] = second
            env_port = second.port
            cluster.extra_env["LEARN_GATEWAY_PORT"] = str(env_port)
            cluster.extra_env["LEARN_GATEWAY_CONTENT_PORT"] = str(free_port())  # its own content listener too
            cluster.spawn_as("gateway2", "gateway")
            del cluster.extra_env["LEARN_GATEWAY_PORT"], cluster.extra_env["LEARN_GATEWAY_CONTENT_PORT"]
            await cluster.wait_ready()

            async def second_ready() -> bool:
                assert cluster.http is not None
                try:
                    async with cluster.http.get(second.url + "/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(second_ready, timeout=60, interval=0.2, message="second gateway ready")
            yield cluster, second.url
    finally:
        await client_env.cleanup()


async def test_an_echoing_client_reads_its_writes_on_either_replica(two_gateways: tuple[Cluster, str]) -> None:
    cluster, second_url = two_gateways
    async with aiohttp.ClientSession() as http:
        client = Client(http, cluster.gateway_url, cluster.admin_token, content_url=cluster.content_url, echo=True)
        slug, key = await client.tenant()
        course, activity = await client.published_course(slug, key)
        ids = itertools.count(1)
        bases = itertools.cycle([cluster.gateway_url, second_url])
        for _ in range(100):
            user_id = next(ids)
            status, body, _ = await client.request(
                "PUT", f"/admin/api/v1/tenants/{slug}/users/{user_id}", key=cluster.admin_token,
                json={"name": "Ada", "email": "ada@example.com"}, base_url=next(bases))
            assert status == 201, body
            status, body, _ = await client.request("POST", "/api/v1/learn/enrollments", key=key,
                                                   json={"user_id": user_id, "course_id": course["id"]},
                                                   base_url=next(bases))
            assert status == 201, body
            status, body, _ = await client.request(
                "POST", f"/api/v1/learn/enrollments/{body['data']['id']}/launches", key=key,
                json={"activity_id": activity["id"]}, base_url=next(bases))
            assert status == 201, body


async def test_replicas_share_what_they_recorded_so_a_plain_client_mostly_reads_its_writes_too(
        two_gateways: tuple[Cluster, str]) -> None:
    """Best effort without the token: each replica NOTIFYs the events it recorded and the others adopt them
    (ADR 0010). Without that, not one of these sequences succeeded (the first failed at once); the token is what
    guarantees it, so this only asserts that the hint works nearly always."""
    cluster, second_url = two_gateways
    async with aiohttp.ClientSession() as http:
        client = Client(http, cluster.gateway_url, cluster.admin_token, content_url=cluster.content_url, echo=False)
        slug, key = await client.tenant()
        course, _ = await client.published_course(slug, key)
        succeeded = 0
        for user_id in range(1, 101):
            status, body, _ = await client.request(
                "PUT", f"/admin/api/v1/tenants/{slug}/users/{user_id}", key=cluster.admin_token,
                json={"name": "Ada", "email": "ada@example.com"})
            assert status == 201, body
            status, body, _ = await client.request("POST", "/api/v1/learn/enrollments", key=key,
                                                   json={"user_id": user_id, "course_id": course["id"]},
                                                   base_url=second_url)
            assert status in (201, 400), body
            succeeded += status == 201
        assert succeeded >= 90, f"{succeeded} of 100 enrolled at once through the other replica"
