from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv


@pytest.fixture
async def cluster(test_env: TestEnv, tmp_path) -> AsyncIterator[Cluster]:
    async with running_cluster(test_env, tmp_path / "cluster") as c:
        yield c
