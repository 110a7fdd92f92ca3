"""The certificates API: list, get, verify, revoke, regenerate-pdf, and the bad-input rows of issue 6."""

from __future__ import annotations

import pytest

from tests.certificates.test_certificates_harness import ids, pdf_text, running_service


@pytest.fixture
async def service(test_env):
    async with running_service(test_env) as service:
        yield service


async def _issue(service, **fields) -> dict:
    enrollment = next(ids)
    await service.publish(service.completion(enrollment, **fields))
    return await service.issued(enrollment)


async def test_the_list_filters_by_user_and_course_and_pages_newest_first(service):
    first = await _issue(service, user_id=501)
    second = await _issue(service, user_id=502)
    third = await _issue(service, user_id=501)
    _, body = await service.call("GET", "/api/v1/learn/certificates?user_id=501", expect=200)
    assert [c["id"] for c in body["data"]] == [third["id"], first["id"]]
    _, page = await service.call("GET", "/api/v1/learn/certificates?course_id=42&limit=2", expect=200)
    assert [c["id"] for c in page["data"]] == [third["id"], second["id"]]
    _, rest = await service.call("GET", f"/api/v1/learn/certificates?course_id=42&limit=2&cursor={page['next_cursor']}",
                                 expect=200)
    assert [c["id"] for c in rest["data"]] == [first["id"]] and rest["next_cursor"] is None
    status, wrong = await service.call("GET", f"/api/v1/learn/certificates?limit=2&cursor={page['next_cursor']}")
    assert status == 400 and wrong["error"]["code"] == "invalid_argument"
    status, bad = await service.call("GET", "/api/v1/learn/certificates?user_id=abc")
    assert status == 400 and bad["error"]["code"] == "invalid_argument"


async def test_another_tenants_certificate_answers_like_a_missing_one(service):
    cert = await _issue(service)
    for path in (f"/api/v1/learn/certificates/{cert['id']}",
                 f"/api/v1/learn/certificates/verify/{cert['verification_id']}",
                 f"/api/v1/learn/certificates/{cert['id']}/pdf"):
        status, body = await service.call("GET", path, tenant_id=2, tenant="globex")
        assert status == 404 and body["error"]["code"] == "certificate_not_found", path
        assert body["error"]["message"] == "Certificate not found."


@pytest.mark.parametrize("path", [
    "/api/v1/learn/certificates/999999999",
    "/api/v1/learn/certificates/abc",
    "/api/v1/learn/certificates/verify/" + "x" * 40,
    "/api/v1/learn/certificates/verify/short",
    "/api/v1/learn/certificates/999999999/pdf",
])
async def test_an_unknown_id_or_vid_is_certificate_not_found(service, path):
    status, body = await service.call("GET", path)
    assert status == 404 and body["error"]["code"] == "certificate_not_found"


async def test_unknown_ids_on_revoke_and_regenerate_are_certificate_not_found(service):
    for path, body in (("/api/v1/learn/certificates/999999999/revoke", {"reason": "x"}),
                       ("/api/v1/learn/certificates/999999999/regenerate-pdf", None)):
        status, answer = await service.call("POST", path, json=body)
        assert status == 404 and answer["error"]["code"] == "certificate_not_found"


async def test_verify_works_before_and_after_revoke(service, events):
    cert = await _issue(service)
    verify = f"/api/v1/learn/certificates/verify/{cert['verification_id']}"
    _, before = await service.call("GET", verify, expect=200)
    assert before["data"]["id"] == cert["id"] and before["data"]["is_revoked"] is False

    _, revoked = await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke",
                                    json={"reason": "Issued in error"}, expect=200)
    assert revoked["data"]["is_revoked"] is True and revoked["data"]["revoked_reason"] == "Issued in error"
    assert revoked["data"]["revoked_at"] is not None

    _, after = await service.call("GET", verify, expect=200)
    assert after["data"]["is_revoked"] is True and after["data"]["verification_id"] == cert["verification_id"]
    event = (await events.wait_for("certificate.revoked"))[0]
    assert event.data["certificate_id"] == cert["id"] and event.data["reason"] == "Issued in error"


async def test_a_revoked_certificates_pdf_says_so(service):
    cert = await _issue(service)
    _, revoked = await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke",
                                    json={"reason": "Academic misconduct"}, expect=200)
    pdf = revoked["data"]["pdf"]
    assert pdf["version"] == 2 and pdf["sha256"] != cert["pdf"]["sha256"]
    text = pdf_text(await service.pdf(cert["id"]))
    assert "REVOKED" in text and "Academic misconduct" in text


@pytest.mark.parametrize("body", [{}, {"reason": None}, {"reason": ""}, {"reason": "   "}])
async def test_revoke_without_a_reason_is_missing_field(service, body):
    cert = await _issue(service)
    status, answer = await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke", json=body)
    assert status == 400 and answer["error"]["code"] == "missing_field" and "reason" in answer["error"]["message"]
    assert (await service.certificate(cert["id"]))["is_revoked"] is False


async def test_revoking_twice_is_invalid_argument(service):
    cert = await _issue(service)
    path = f"/api/v1/learn/certificates/{cert['id']}/revoke"
    await service.call("POST", path, json={"reason": "first"}, expect=200)
    status, body = await service.call("POST", path, json={"reason": "second"})
    assert status == 400 and body["error"]["code"] == "invalid_argument"
    assert (await service.certificate(cert["id"]))["revoked_reason"] == "first"


async def test_revoke_rejects_unknown_fields(service):
    cert = await _issue(service)
    status, body = await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke",
                                      json={"reason": "x", "is_revoked": False})
    assert status == 400 and body["error"]["code"] == "invalid_argument"


async def test_regenerate_pdf_bumps_the_version_and_keeps_the_verification_id_and_url(service, events):
    cert = await _issue(service)
    _, body = await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/regenerate-pdf", expect=200)
    again = body["data"]
    assert again["pdf"]["version"] == 2
    assert again["verification_id"] == cert["verification_id"]
    assert again["verification_url"] == cert["verification_url"] and again["pdf"]["url"] == cert["pdf"]["url"]
    assert (await service.certificate(cert["id"]))["pdf"]["version"] == 2
    assert cert["verification_id"] in pdf_text(await service.pdf(cert["id"]))
    event = (await events.wait_for("certificate.pdf_regenerated"))[0]
    assert event.data["certificate_id"] == cert["id"] and event.data["pdf_version"] == 2


async def test_reads_need_learn_read_and_writes_need_learn_write(service):
    cert = await _issue(service)
    status, body = await service.call("GET", f"/api/v1/learn/certificates/{cert['id']}", scopes="learn:write")
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    status, body = await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/revoke",
                                      json={"reason": "x"}, scopes="learn:read")
    assert status == 403 and body["error"]["code"] == "insufficient_scope"


async def test_the_admin_search_finds_a_certificate_by_verification_id(service):
    cert = await _issue(service, user_id=777)
    await _issue(service, user_id=778)
    _, body = await service.admin("GET", f"/certificates?verification_id={cert['verification_id']}", expect=200)
    assert [c["id"] for c in body["data"]] == [cert["id"]]
    _, body = await service.admin("GET", "/certificates?user_id=777", expect=200)
    assert [c["id"] for c in body["data"]] == [cert["id"]]
    status, body = await service.call("GET", "/admin/v1/certificates")  # an API key is not an admin
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    status, body = await service.admin("GET", "/certificates?verification_id=nope")
    assert status == 400 and body["error"]["code"] == "invalid_argument"


async def test_the_admin_api_reads_revokes_and_regenerates_like_the_public_one(service):
    cert = await _issue(service)
    _, got = await service.admin("GET", f"/certificates/{cert['id']}", expect=200)
    assert got["data"]["verification_id"] == cert["verification_id"]
    async with service.client.get(f"/admin/v1/certificates/{cert['id']}/pdf",
                                  headers=service.headers(scopes="admin")) as resp:
        assert resp.status == 200 and cert["verification_id"] in pdf_text(await resp.read())
    _, again = await service.admin("POST", f"/certificates/{cert['id']}/regenerate-pdf", expect=200)
    assert again["data"]["pdf"]["version"] == 2
    _, revoked = await service.admin("POST", f"/certificates/{cert['id']}/revoke", json={"reason": "Fraud"},
                                     expect=200)
    assert revoked["data"]["is_revoked"] is True
    status, body = await service.admin("GET", "/certificates/424242")
    assert status == 404 and body["error"]["code"] == "certificate_not_found"
