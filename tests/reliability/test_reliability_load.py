"""The load test's short variant (issue 9): 50 concurrent clients on the mixed workload of ``bench/bench_load.py``,
through the gateway on the multi-process cluster, with zero errors. Latency and throughput are reported by
``make bench`` (docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import pytest

from bench.bench_load import MIX, measure
from tests.support.cluster import Cluster

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.slow
@pytest.mark.exclusive  # measures the system under load: another worker's tests would be part of the load
async def test_fifty_clients_on_the_mixed_workload_see_zero_errors(healthy_cluster: Cluster) -> None:
    result = await measure(healthy_cluster, "loadtest", seconds=8, clients=50, small=True)
    assert result["errors"] == 0, result["error_samples"]
    assert set(result["per_op"]) == set(MIX), result["per_op"]  # every kind of request was made
    assert result["completed_during_run"] > 0
