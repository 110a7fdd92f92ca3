"""A typed client generated from the OpenAPI document, used as an API consumer would (issue 17).

openapi-python-client generates a client from the document (no generator warning allowed: the two media types
it does not know are mapped in docs/openapi-python-client.yaml, see docs/clients.md); then, against the running
system (every service its own process), only the generated typed API drives the seed's enroll-on-purchase flow,
the learner runtime, the certificate, the SCORM list with a ready, a processing and a failed package, and one
answer of each error class. Every answer must parse into its typed model, with no ``Unset`` and no ``None`` for a
field the document says is always present, and nothing the document does not declare (``additional_properties``).
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.ext.asyncio import create_async_engine

from services.gateway.openapi import build_document
from tests.openapi.conformance import RECORDER
from tests.support.cluster import REPO, running_cluster
from tests.support.env import TestEnv
from tests.support.scorm_packages import debug_package, zip_bytes

CONFIG = REPO / "docs" / "openapi-python-client.yaml"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def generate(tmp: Path) -> Any:
    spec = tmp / "openapi.json"
    spec.write_text(json.dumps(build_document()))
    out = subprocess.run([str(GENERATOR), "generate", "--path", str(spec), "--meta", "none", "--output-path",
                          str(tmp / "learn_client"), "--config", str(CONFIG)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    said = out.stdout + out.stderr
    assert "warning" not in said.lower(), said
    sys.path.insert(0, str(tmp))
    try:
        return importlib.import_module("learn_client")
    finally:
        sys.path.remove(str(tmp))


class Typed:
    """Checks a parsed answer against the document's component of the same name, recursively."""

    def __init__(self, lc: Any):
        self.lc = lc
        self.schemas = build_document()["components"]["schemas"]
        self.unset = importlib.import_module("learn_client.types").Unset

    def check(self, obj: Any, where: str = "") -> None:
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                self.check(item, f"{where}[{i}]")
            return
        assert not isinstance(obj, self.unset), f"{where}: Unset"
        if not attrs.has(type(obj)):
            return
        name = type(obj).__name__
        schema = self.schemas[name]
        assert not obj.additional_properties, f"{where} {name}: undeclared {sorted(obj.additional_properties)}"
        sent = obj.to_dict()
        for prop in schema.get("required", []):
            assert prop in sent, f"{where} {name}.{prop}: Unset"
            nullable = any(s.get("type") == "null" for s in schema["properties"][prop].get("anyOf", []))
            if not nullable and schema["properties"][prop].get("type") != "null":
                assert sent[prop] is not None, f"{where} {name}.{prop}: None"
        for field in attrs.fields(type(obj)):
            if field.name != "additional_properties":
                self.check(getattr(obj, field.name), f"{where}.{field.name}")


async def test_a_generated_python_client_walks_the_seed_flow_typed(postgres_url, amqp_url, tmp_path):
    lc = generate(tmp_path)
    models = importlib.import_module("learn_client.models")
    api = {name: importlib.import_module(f"learn_client.api.{tag}.{name}") for tag, names in {
        "catalog": ("create_course", "publish_course", "list_courses", "get_course", "update_course",
                    "list_course_modules", "list_module_lessons", "list_lesson_activities"),
        "enrollment": ("create_enrollment", "get_enrollment", "list_enrollments", "get_attempt"),
        "scorm": ("launch_activity", "commit_runtime", "finish_runtime", "list_scorm_packages",
                  "get_scorm_package"),
        "certificates": ("list_certificates", "get_certificate", "get_certificate_pdf",
                         "list_certificate_templates", "get_certificate_template"),
    }.items() for name in names}
    typed = Typed(lc)
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp_path / "data")
    env.data_dir.mkdir()
    # A tight per-key limit (burst 60, 2/s) so that one key can be made to see a 429.
    limits = {"LEARN_GATEWAY_RATE_LIMIT_PER_SECOND": "2", "LEARN_GATEWAY_RATE_LIMIT_BURST": "60"}
    try:
        async with running_cluster(env, tmp_path / "cluster", extra_env=limits) as cluster:
            await _walk(cluster, env, lc, models, api, typed)
    finally:
        await env.cleanup()


async def _ok(call: Any, expected: int, model: Any, typed: Typed, **kw: Any) -> Any:
    resp = await call.asyncio_detailed(**kw)
    assert resp.status_code == expected, (resp.status_code, resp.content[:500])
    assert isinstance(resp.parsed, model), type(resp.parsed)
    typed.check(resp.parsed, model.__name__)
    return resp.parsed


async def _error(call: Any, expected: int, code: str, models: Any, typed: Typed, **kw: Any) -> Any:
    resp = await call.asyncio_detailed(**kw)
    assert resp.status_code == expected, (resp.status_code, resp.content[:500])
    assert isinstance(resp.parsed, models.Error), type(resp.parsed)
    typed.check(resp.parsed, "Error")
    assert resp.parsed.error.code == models.ErrorCode(code)
    return resp


async def _walk(cluster: Any, env: TestEnv, lc: Any, models: Any, api: dict[str, Any], typed: Typed) -> None:
    key = await cluster.tenant_with_key("acme", scopes=("learn:read", "learn:write"))

    async def another_key(*scopes: str) -> str:
        status, body = await cluster.admin("POST", "/tenants/acme/api-keys", json={"name": "c", "scopes": scopes})
        assert status == 201, body
        return str(body["data"]["key"])

    read_only, burst_key = await another_key("learn:read"), await another_key("learn:read")
    await cluster.user("acme", 123, "Ada Buyer", "ada@example.com")
    hooks = {"event_hooks": {"response": [RECORDER.record_httpx]}}  # answers checked against the document too
    client = lc.AuthenticatedClient(base_url=cluster.gateway_url, token=key, timeout=30, httpx_args=hooks)
    runtime = lc.Client(base_url=cluster.content_url, timeout=30, httpx_args=hooks)

    # 1. the seed: create a course, give it an activity (admin API), publish it, enroll the buyer
    course = (await _ok(api["create_course"], 201, models.CourseResponse, typed, client=client,
                        body=models.CourseCreate(slug="intro-to-mobieus", title="Intro to Mobieus",
                                                 completion_rule=models.CompletionRule.ALL_REQUIRED,
                                                 credit_hours=2.5, credit_kind="CEU"))).data
    assert course.status == models.CourseStatus.DRAFT and course.credit.hours == 2.5
    status, body = await cluster.admin("POST", f"/tenants/acme/courses/{course.id}/modules", json={"title": "M1"})
    module_id = body["data"]["id"]
    status, body = await cluster.admin("POST", f"/tenants/acme/modules/{module_id}/lessons", json={"title": "L1"})
    lesson_id = body["data"]["id"]
    status, body = await cluster.admin("POST", f"/tenants/acme/lessons/{lesson_id}/activities",
                                       json={"title": "Read this", "kind": "reading", "required": True})
    assert status == 201, body
    activity_id = body["data"]["id"]
    await _ok(api["update_course"], 200, models.CourseResponse, typed, client=client, id=course.id,
              body=models.CourseUpdate(subtitle="The basics"))
    published = (await _ok(api["publish_course"], 200, models.CourseResponse, typed, client=client,
                           id=course.id)).data
    assert published.version.status == models.CourseStatus.PUBLISHED
    await _ok(api["list_course_modules"], 200, models.ModuleList, typed, client=client, id=course.id)
    await _ok(api["list_module_lessons"], 200, models.LessonList, typed, client=client, mid=module_id)
    activities = await _ok(api["list_lesson_activities"], 200, models.ActivityList, typed, client=client,
                           lid=lesson_id)
    assert activities.data[0].kind == models.ActivityKind.READING and activities.data[0].scorm_package_id is None
    await _ok(api["get_course"], 200, models.CourseResponse, typed, client=client, id=course.id)

    purchase = models.EnrollmentCreate(user_id=123, course_id=course.id, source="stripe_purchase")

    async def enrolled() -> Any:
        resp = await api["create_enrollment"].asyncio_detailed(client=client, body=purchase,
                                                               idempotency_key="checkout-1")
        return resp if resp.status_code == 201 else None

    first = await cluster.eventually(enrolled, message="the enrollment")
    assert isinstance(first.parsed, models.EnrollmentResponse)
    typed.check(first.parsed)
    enrollment = first.parsed.data
    assert enrollment.status == models.EnrollmentStatus.ACTIVE and enrollment.course_version == 1
    again = await _ok(api["create_enrollment"], 200, models.EnrollmentResponse, typed, client=client, body=purchase)
    assert again.data.id == enrollment.id
    listed = await _ok(api["list_courses"], 200, models.CourseList, typed, client=client)
    assert [c.id for c in listed.data] == [course.id] and listed.next_cursor is None
    await _ok(api["list_enrollments"], 200, models.EnrollmentList, typed, client=client, course_id=course.id)

    # 2. the learner: launch, commit and finish through the runtime (content origin, no key)
    launch = (await _ok(api["launch_activity"], 201, models.LaunchResponse, typed, client=client,
                        id=enrollment.id, body=models.LaunchCreate(activity_id=activity_id))).data
    cmi = models.RuntimeCommitCmi.from_dict({"cmi.completion_status": "completed", "cmi.session_time": "PT30S"})
    committed = (await _ok(api["commit_runtime"], 200, models.RuntimeCommittedResponse, typed, client=runtime,
                           token=launch.runtime_token, body=models.RuntimeCommit(cmi=cmi))).data
    assert committed.attempt_id == launch.attempt_id and committed.finished is False
    finished = (await _ok(api["finish_runtime"], 200, models.RuntimeCommittedResponse, typed, client=runtime,
                          token=launch.runtime_token, body=models.RuntimeFinish())).data
    assert finished.finished is True
    await _ok(api["get_attempt"], 200, models.AttemptResponse, typed, client=client, id=launch.attempt_id)

    # 3. the certificate the completion issues, and its PDF
    async def certified() -> Any:
        page = await _ok(api["list_certificates"], 200, models.CertificateList, typed, client=client,
                         course_id=course.id)
        return page.data or None

    (certificate,) = await cluster.eventually(certified, message="the certificate")
    got = (await _ok(api["get_certificate"], 200, models.CertificateResponse, typed, client=client,
                     id=certificate.id)).data
    assert got.pdf.template_version >= 0 and len(got.verification_id) == 40
    pdf = await api["get_certificate_pdf"].asyncio_detailed(client=client, id=certificate.id)
    assert pdf.status_code == 200 and pdf.parsed.payload.read().startswith(b"%PDF-")
    logo = io.BytesIO()
    Image.new("RGB", (32, 32), "#1f3a93").save(logo, "PNG")
    status, body = await cluster.admin("POST", "/tenants/acme/cert-templates", json={
        "name": "Branded", "logo": base64.b64encode(logo.getvalue()).decode(), "signatory_name": "Grace Hopper"})
    assert status == 201, body
    template = (await _ok(api["get_certificate_template"], 200, models.CertificateTemplateResponse, typed,
                          client=client, id=body["data"]["id"])).data
    assert template.logo.content_type == "image/png" and template.background_pdf is None
    await _ok(api["list_certificate_templates"], 200, models.CertificateTemplateList, typed, client=client)
    done = (await _ok(api["get_enrollment"], 200, models.EnrollmentResponse, typed, client=client,
                      id=enrollment.id)).data
    assert done.status == models.EnrollmentStatus.COMPLETED and done.completed_at is not None

    # 4. SCORM packages: ready, failed, and one held in processing
    ready = await cluster.upload_scorm("acme", debug_package("1.2", status="passed"), title="Ready")
    unsafe = zip_bytes({"imsmanifest.xml": b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x "y">]><manifest/>',
                        "index.html": b"x"})
    failed = await cluster.upload_scorm("acme", unsafe, title="Broken")
    held = await cluster.upload_scorm("acme", debug_package("2004", status="passed"), title="Held")
    assert (ready["status"], failed["status"], held["status"]) == ("ready", "failed", "ready")
    engine = create_async_engine(env.common().database_url("scorm"))
    try:  # as it is while the importer works on it (no API can hold a package there)
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE scorm_packages SET status = 'processing', scorm_version = NULL, "
                                       "organization_identifier = NULL WHERE id = :id"), {"id": held["id"]})
    finally:
        await engine.dispose()
    packages = (await _ok(api["list_scorm_packages"], 200, models.ScormPackageList, typed, client=client)).data
    by_status = {p.status: p for p in packages}
    assert set(by_status) == {models.ScormPackageStatus.READY, models.ScormPackageStatus.FAILED,
                              models.ScormPackageStatus.PROCESSING}
    assert by_status[models.ScormPackageStatus.READY].scorm_version == models.ScormVersion.V1_2
    assert by_status[models.ScormPackageStatus.PROCESSING].scorm_version is None
    assert by_status[models.ScormPackageStatus.FAILED].scorm_version is None
    assert by_status[models.ScormPackageStatus.FAILED].error
    detail = (await _ok(api["get_scorm_package"], 200, models.ScormPackageDetailResponse, typed, client=client,
                        id=ready["id"])).data
    assert detail.scos and detail.scos[0].launch_url

    # 5. one answer of each error class, typed as Error with its code
    await _error(api["create_course"], 400, "invalid_argument", models, typed, client=client,
                 body=models.CourseCreate(slug="Not A Slug", title="x"))
    stranger = lc.AuthenticatedClient(base_url=cluster.gateway_url, token="mc_live_" + "x" * 40, httpx_args=hooks)
    denied = await _error(api["list_courses"], 401, "invalid_api_key", models, typed, client=stranger)
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")
    reader = lc.AuthenticatedClient(base_url=cluster.gateway_url, token=read_only, httpx_args=hooks)
    await _error(api["publish_course"], 403, "insufficient_scope", models, typed, client=reader, id=course.id)
    await _error(api["get_course"], 404, "course_not_found", models, typed, client=client, id=999_999)
    await _error(api["create_enrollment"], 422, "idempotency_key_reused", models, typed, client=client,
                 idempotency_key="checkout-1", body=models.EnrollmentCreate(user_id=123, course_id=course.id))
    await _error(api["commit_runtime"], 410, "launch_ended", models, typed, client=runtime,
                 token=launch.runtime_token, body=models.RuntimeCommit(cmi=cmi))
    burst = lc.AuthenticatedClient(base_url=cluster.gateway_url, token=burst_key, httpx_args=hooks)
    answers = await asyncio.gather(*(api["get_course"].asyncio_detailed(client=burst, id=course.id)
                                     for _ in range(80)))
    limited = [a for a in answers if a.status_code == 429]
    assert limited and isinstance(limited[0].parsed, models.Error)
    typed.check(limited[0].parsed)
    assert limited[0].parsed.error.code == models.ErrorCode.RATE_LIMITED and limited[0].headers["Retry-After"]
    cluster.kill("certificates")
    down = await api["get_certificate"].asyncio_detailed(client=client, id=certificate.id)
    assert down.status_code in (502, 503), down.content
    assert isinstance(down.parsed, models.Error)
    typed.check(down.parsed)
    assert down.parsed.error.code == models.ErrorCode.SERVICE_UNAVAILABLE
