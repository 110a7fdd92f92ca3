"""The path of ``POST /api/v1/learn/enrollments`` through the code, as it runs (docs/architecture.md, "Measured"):
through the gateway (its request pipeline) and then the enrollment service; each hop crosses at most five files,
top to bottom, never back to a file it left."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from services.enrollment import api
from services.gateway.app import create_app as gateway_app
from services.gateway.config import GatewaySettings
from services.gateway.pipeline import Gateway
from tests.enrollment.conftest import activity
from tests.gateway.conftest import ADMIN_TOKEN
from tests.support.callpath import CallPath, recording


async def test_an_enroll_request_crosses_five_files_per_hop_top_to_bottom(service, ids):
    enrollment_url = str(service.client.server.make_url("")).rstrip("/")
    gateway = TestClient(TestServer(gateway_app(GatewaySettings(
        common=service.env.common(), admin_token=ADMIN_TOKEN, enrollment_url=enrollment_url))))
    await gateway.start_server()
    try:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        resp = await gateway.post("/admin/api/v1/tenants", json={"slug": "acme", "name": "Acme", "plan": "pro"},
                                  headers=admin)
        assert resp.status == 201 and (await resp.json())["data"]["id"] == 1  # the tenant the service knows
        resp = await gateway.post("/admin/api/v1/tenants/acme/api-keys", headers=admin,
                                  json={"name": "k", "scopes": ["learn:read", "learn:write"]})
        key = (await resp.json())["data"]["key"]
        course, user = next(ids), next(ids)
        await service.given_course_and_user(course, user, [activity(1)])

        edge, enrollment = CallPath(Gateway.public_api), CallPath(api.create_enrollment)
        with recording(edge, enrollment):
            resp = await gateway.post("/api/v1/learn/enrollments", json={"user_id": user, "course_id": course},
                                      headers={"Authorization": f"Bearer {key}"})
            assert resp.status == 201, await resp.text()
    finally:
        await gateway.close()

    # The enrollment service: api → handlers → domain / store / events, never back up.
    assert enrollment.files[:2] == ["services/enrollment/api.py", "services/enrollment/handlers.py"], enrollment.files
    assert len(enrollment.files) <= 5, enrollment.files
    # The gateway's hop (its lean pipeline, ADR 0003): pipeline → keys, proxy → domain, store (a cold key cache,
    # the replicas' read-your-writes fan-out): five files at most, top to bottom too.
    assert edge.files[0] == "services/gateway/pipeline.py", edge.files
    assert len(edge.files) <= 5, edge.files
    for path in (edge, enrollment):
        assert path.returns() == [] and path.climbs() == [], (path.files, path.returns(), path.climbs())
