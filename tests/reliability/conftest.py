"""Fault injection on the real topology: every service its own process, real PostgreSQL and RabbitMQ.

These tests stop and start the shared RabbitMQ and PostgreSQL servers: they must not run at the same time as
other tests (CI runs the suite serially). Every restart happens in a ``finally``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv

#: these tests drive hundreds of learners through one key: the per-key rate limit is not what they test
UNLIMITED = {"LEARN_GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "LEARN_GATEWAY_RATE_LIMIT_BURST": "100000"}


@pytest.fixture(scope="module")
def module_env(postgres_url: str, amqp_url: str, tmp_path_factory) -> TestEnv:
    tmp = tmp_path_factory.mktemp("reliability")
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp / "data")
    env.data_dir.mkdir()
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_cluster(module_env: TestEnv) -> AsyncIterator[Cluster]:
    """One cluster per module; tests keep to their own tenants. Use it through ``healthy_cluster``."""
    try:
        # a 20 s consistency bound (under the gateway's 30 s read timeout, so a slow catch-up answers 503
        # not_yet_consistent, not 504): building the sweep's data under a loaded CI answered 503 at 5 s
        extra = {**UNLIMITED, "LEARN_CONSISTENCY_WAIT": "20"}
        async with running_cluster(module_env, module_env.data_dir.parent / "cluster", extra_env=extra) as c:
            yield c
    finally:
        await module_env.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def healthy_cluster(shared_cluster: Cluster) -> Cluster:
    """The module's cluster with every service up, whatever an earlier test did to it."""
    for name, svc in shared_cluster.services.items():
        if svc.proc is None or svc.proc.poll() is not None:
            shared_cluster.spawn(name)
    await shared_cluster.wait_ready(timeout=120)
    return shared_cluster
