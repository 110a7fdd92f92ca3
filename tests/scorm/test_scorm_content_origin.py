"""The scorm service's part of the content origin (issue 15): launch URLs on LEARN_CONTENT_URL, the framing policy
of pages and package files, and, with one content origin per tenant, a token refused on another tenant's host."""

from __future__ import annotations

from services.scorm.context import SCORM_KEY
from tests.scorm.test_scorm_service_harness import TENANT, ScormService, scorm_fixture  # noqa: F401

H_CONTENT_TENANT = "X-Learn-Content-Tenant"


async def test_pages_and_package_files_are_framed_only_by_the_content_and_admin_origins(scorm: ScormService
                                                                                         ) -> None:
    launch, _ = await scorm.launched(kind="reading", title="Read the rules")
    admin = scorm.app[SCORM_KEY].settings.common.public_origin
    token = launch["runtime_token"]
    for path in (f"/learn/player/{token}", f"/learn/content/{token}/_learn/activity.html"):
        async with scorm.client.get(path, headers=scorm.runtime_headers()) as resp:
            assert resp.status == 200, path
            assert resp.headers["Content-Security-Policy"].endswith(f"frame-ancestors 'self' {admin}"), path
            assert resp.headers["X-Content-Type-Options"] == "nosniff" and "Set-Cookie" not in resp.headers


async def test_a_token_is_refused_on_another_tenants_content_origin(scorm: ScormService) -> None:
    launch, _ = await scorm.launched(kind="reading", title="Read the rules")
    token = launch["runtime_token"]
    for path in (f"/learn/player/{token}", f"/learn/content/{token}/_learn/activity.html"):
        async with scorm.client.get(path, headers={**scorm.runtime_headers(), H_CONTENT_TENANT: "rival"}) as resp:
            assert resp.status == 404, path
            assert (await resp.json())["error"]["code"] == "not_found"
        async with scorm.client.get(path, headers={**scorm.runtime_headers(), H_CONTENT_TENANT: TENANT}) as resp:
            assert resp.status == 200, path
