"""The public verification page ``/verify/{vid}``: no tenant headers, a clear status, safe HTML."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime

import pytest

from tests.certificates.test_certificates_harness import TENANT_NAME, ids, running_service


@pytest.fixture
async def service(test_env):
    async with running_service(test_env) as service:
        yield service


async def _page(service, vid: str) -> tuple[int, str, dict]:
    # Only the internal credential, as the gateway forwards the public page: no tenant, no scopes.
    headers = {"X-Learn-Internal": service.env.internal_secret}
    async with service.client.get(f"/verify/{vid}", headers=headers) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def _issue(service, **fields) -> dict:
    enrollment = next(ids)
    await service.publish(service.completion(enrollment, **fields))
    return await service.issued(enrollment)


async def test_the_page_shows_recipient_course_issuer_dates_and_a_valid_status(service):
    cert = await _issue(service, months=24)
    status, html, headers = await _page(service, cert["verification_id"])
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for text in ("Zoë Łukasiewicz-Ångström", "Intro to Mobieus", TENANT_NAME, "Valid certificate",
                 "2 June 2026", "2 June 2028", "2.5 CEU", cert["verification_id"]):
        assert text in html, text
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
    assert "<title>Valid certificate · Zoë Łukasiewicz-Ångström</title>" in html


async def test_a_revoked_certificate_is_shown_as_revoked_without_its_reason(service):
    cert = await _issue(service)
    await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke",
                       json={"reason": "internal investigation 42"}, expect=200)
    status, html, _ = await _page(service, cert["verification_id"])
    assert status == 200 and "Revoked" in html and "status-revoked" in html
    assert "<title>Revoked certificate · " in html
    assert "Valid certificate" not in html and "internal investigation 42" not in html


async def test_an_expired_certificate_is_shown_as_expired(service):
    cert = await _issue(service, completed_at=datetime(2020, 1, 15, tzinfo=UTC), months=12)
    status, html, _ = await _page(service, cert["verification_id"])
    assert status == 200 and "Expired" in html and "expired on 15 January 2021" in html
    assert "Valid certificate" not in html


@pytest.mark.parametrize("vid", ["x" * 40, "short", "%3Cscript%3E"])
async def test_an_unknown_vid_gets_a_not_found_page(service, vid):
    status, html, headers = await _page(service, vid)
    assert status == 404 and "Certificate not found" in html
    assert "Content-Security-Policy" in headers


async def test_the_page_has_no_script_and_a_csp_that_allows_only_its_own_stylesheet(service):
    cert = await _issue(service)
    _, html, headers = await _page(service, cert["verification_id"])
    assert "<script" not in html.lower()
    assert not re.search(r"<[^>]+\son\w+=", html)  # no inline event handlers either
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"


async def test_names_are_escaped(service):
    cert = await _issue(service, name='<script>alert("x")</script> & Co', title="<b>Course</b>")
    _, html, _ = await _page(service, cert["verification_id"])
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html
    assert "&lt;b&gt;Course&lt;/b&gt;" in html


async def test_the_page_needs_the_gateways_credential(service):
    cert = await _issue(service)
    async with service.client.get(f"/verify/{cert['verification_id']}") as resp:
        assert resp.status == 401
