from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv


@pytest.fixture
async def cluster(test_env: TestEnv, tmp_path) -> AsyncIterator[Cluster]:
    async with running_cluster(test_env, tmp_path / "cluster") as c:
        yield c


@pytest.fixture(scope="module")
def module_env(postgres_url: str, amqp_url: str, tmp_path_factory) -> TestEnv:
    """One isolated database prefix and AMQP namespace for a whole module (its tests use distinct tenants)."""
    tmp = tmp_path_factory.mktemp("e2e")
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp / "data")
    env.data_dir.mkdir()
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_cluster(module_env: TestEnv) -> AsyncIterator[Cluster]:
    """One cluster for every test of a module (starting one costs seconds); tests keep to their own tenants.

    Modules using it mark their tests ``pytest.mark.asyncio(loop_scope="module")``.
    """
    try:
        async with running_cluster(module_env, module_env.data_dir.parent / "cluster") as c:
            yield c
    finally:
        await module_env.cleanup()
