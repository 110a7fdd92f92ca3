"""Revoke and regenerate-pdf at client speed, right after template updates (issue 14, item 4): 200 calls through
the gateway on the real topology, while every template update re-renders the same certificates in the
background, with a template heavy enough (a ~0.9 MB logo) that every PDF and template message is larger than a
pipe buffer. Not one answer may be a 5xx, and nothing may be lost: every revoke is revoked, with its PDF."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from PIL import Image

from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv

pytestmark = pytest.mark.asyncio(loop_scope="module")

READING = {"title": "Read the rules", "kind": "reading", "required": True}
LEARNERS = 20
ROUNDS = 10  # x 20 calls = 200


def noisy_logo() -> str:
    image = Image.frombytes("RGB", (1000, 300), os.urandom(1000 * 300 * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="module")
def module_env(postgres_url: str, amqp_url: str, tmp_path_factory) -> TestEnv:
    tmp = tmp_path_factory.mktemp("certwrites")
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp / "data")
    env.data_dir.mkdir()
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(module_env: TestEnv) -> AsyncIterator[Cluster]:
    try:
        async with running_cluster(module_env, module_env.data_dir.parent / "cluster",
                                   extra_env={"LEARN_CERTIFICATES_RENDER_WORKERS": "2"}) as c:
            yield c
    finally:
        await module_env.cleanup()


async def test_200_revokes_and_regenerations_right_after_template_updates_answer_no_5xx(cluster: Cluster) -> None:
    c = cluster
    slug = "certwrites"
    key = await c.tenant_with_key(slug)
    status, body = await c.admin("POST", f"/tenants/{slug}/cert-templates",
                                 json={"name": "Heavy", "logo": noisy_logo(), "signatory_name": "Round 0"})
    assert status == 201, body
    template = body["data"]["id"]
    course, (activity,) = await c.course(key, slug, "heavy", [READING], certificate_template_id=template)
    learners = await c.learners(key, slug, course["id"], activity, list(range(1, LEARNERS + 1)))
    cmi = {"cmi.completion_status": "completed", "cmi.session_time": "PT30S"}
    for learner in learners:
        await c.runtime(learner.token, "commit", cmi)
        await c.runtime(learner.token, "finish", cmi)
    certs = await c.assert_one_certificate_each(key, course["id"], [lr.enrollment["id"] for lr in learners])

    statuses: Counter[int] = Counter()
    revoked: set[int] = set()
    to_revoke = [cert["id"] for cert in certs[: ROUNDS * 2]]
    for round_ in range(1, ROUNDS + 1):
        status, body = await c.admin("POST", f"/tenants/{slug}/cert-templates/{template}",
                                     json={"signatory_name": f"Round {round_}"})
        assert status == 200, body
        revoking = to_revoke[(round_ - 1) * 2: round_ * 2]
        calls = [c.api(key, "POST", f"/certificates/{cid}/revoke", json={"reason": f"round {round_}"})
                 for cid in revoking]
        regenerating = [cert["id"] for cert in certs if cert["id"] not in revoking][: 20 - len(revoking)]
        calls += [c.api(key, "POST", f"/certificates/{cid}/regenerate-pdf") for cid in regenerating]
        replies = await asyncio.gather(*calls)
        for (status, body), cid in zip(replies, revoking + regenerating, strict=True):
            statuses[status] += 1
            assert status < 500, (round_, cid, status, body)
            assert status == 200, (round_, cid, status, body)
            if cid in revoking:
                assert body["data"]["is_revoked"] is True
                revoked.add(cid)
    assert sum(statuses.values()) == ROUNDS * 20 and statuses == Counter({200: ROUNDS * 20})
    # Nothing lost: every revoked certificate is revoked, its PDF says so, and the public page agrees.
    for cid in sorted(revoked):
        status, body = await c.api(key, "GET", f"/certificates/{cid}")
        assert status == 200 and body["data"]["is_revoked"] is True
        status, pdf = await c.api(key, "GET", f"/certificates/{cid}/pdf")
        assert status == 200 and pdf.startswith(b"%PDF-") and len(pdf) == body["data"]["pdf"]["bytes"]
    assert len(revoked) == ROUNDS * 2
