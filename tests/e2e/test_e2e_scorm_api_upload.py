"""SCORM import through the public API (issue 20), on the real cluster, through the gateway.

Every fixture package of tests/fixtures/scorm goes in twice in one parametrized test: through
``POST /api/v1/learn/scorm-packages`` with a ``learn:write`` key (``202``, ``Location``, the package found by the very
next GET) and through the admin UI's upload (a signed-in operator's session and CSRF token). Both must end with
the same outcome (version, title, SCO list, or the failure's reason), the one tests/scorm expects of the package.
The import is asynchronous by contract: after the ``202`` the client polls the package until it leaves
``processing``.

Then the upload's rules: multipart, ``Idempotency-Key``, ``?dedupe=true``, and the refusals (not a zip, empty,
another media type, over the size limit by length and while streaming, traversal entries, wrong scope, other
tenant).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
import secrets
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.scorm.test_scorm_service_packages import EDGE_PACKAGES, MAIN_PACKAGES, tiny_package, zip_of
from tests.support.cluster import Cluster, running_cluster
from tests.support.env import TestEnv
from tests.support.scorm_packages import FIXTURES

pytestmark = pytest.mark.asyncio(loop_scope="module")

UPLOAD_LIMIT = 1_500_000  # over every fixture (the largest is ~410 kB), small enough to test 413 cheaply
PACKAGES = "/api/v1/learn/scorm-packages"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upload_cluster(module_env: TestEnv) -> AsyncIterator[Cluster]:
    limits = {"LEARN_GATEWAY_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "LEARN_SCORM_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}
    try:
        async with running_cluster(module_env, module_env.data_dir.parent / "cluster", extra_env=limits) as c:
            yield c
    finally:
        await module_env.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tenant(upload_cluster: Cluster) -> tuple[str, str]:
    slug = f"up-{secrets.token_hex(3)}"
    return slug, await upload_cluster.tenant_with_key(slug)


async def upload(cluster: Cluster, key: str, body: Any, *, content_type: str | None = "application/zip",
                 query: str = "", headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """POST the body to the public upload route: (status, body, headers)."""
    assert cluster.http is not None
    all_headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    async with cluster.http.post(cluster.gateway_url + PACKAGES + query, data=body, headers=all_headers) as resp:
        payload = await resp.json() if "json" in resp.headers.get("Content-Type", "") else await resp.read()
        return resp.status, payload, resp.headers


async def outcome(cluster: Cluster, key: str, package_id: int) -> dict[str, Any]:
    """The package once its import ended (asynchronous by contract: poll until it leaves ``processing``)."""
    async def ended() -> dict[str, Any] | None:
        status, body = await cluster.api(key, "GET", f"/scorm-packages/{package_id}")
        assert status == 200, body
        return body["data"] if body["data"]["status"] != "processing" else None

    return dict(await cluster.eventually(ended, timeout=90, message=f"package {package_id} imported"))


async def via_api(cluster: Cluster, slug: str, key: str, data: bytes) -> int:
    status, body, headers = await upload(cluster, key, data)
    assert status == 202, body
    package = body["data"]
    assert package["status"] == "processing" and package["scorm_version"] is None and package["scos"] == []
    assert package["sha256"] == hashlib.sha256(data).hexdigest() and package["bytes"] == len(data)
    assert headers["Location"] == f"{PACKAGES}/{package['id']}"
    # Read-your-writes: the very next request finds the package (whatever its status by now).
    status, seen = await cluster.request("GET", headers["Location"], token=key)
    assert status == 200, seen
    assert seen["data"]["id"] == package["id"] and seen["data"]["sha256"] == package["sha256"]
    return int(package["id"])


async def ui_session(cluster: Cluster) -> tuple[aiohttp.ClientSession, str]:
    """A signed-in admin UI session and its CSRF token, as the browser has them."""
    session = aiohttp.ClientSession(base_url=cluster.gateway_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    page = await (await session.get("/admin/login")).text()
    login_token = re.search(r'name="login_token" value="([^"]+)"', page)
    assert login_token, page
    resp = await session.post("/admin/login", data={"login_token": login_token.group(1),
                                                    "token": cluster.admin_token, "next": "/admin"},
                              allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await (await session.get("/admin")).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    return session, csrf.group(1)


async def via_admin_ui(cluster: Cluster, slug: str, key: str, data: bytes) -> int:
    session, csrf = await ui_session(cluster)
    async with session:
        resp = await session.post(f"/admin/learn/scorm/upload?tenant={slug}", data=data,
                                  headers={"X-CSRF-Token": csrf, "Content-Type": "application/zip"})
        body = await resp.json()
        assert resp.status == 201, body
        return int(body["id"])


ALL_FIXTURES = [*MAIN_PACKAGES, *(f"edge/{name}" for name in EDGE_PACKAGES)]


@pytest.mark.parametrize("path", ["public_api", "admin_ui"])
@pytest.mark.parametrize("name", ALL_FIXTURES)
async def test_every_fixture_imports_the_same_through_the_api_and_the_admin_ui(
        upload_cluster: Cluster, tenant: tuple[str, str], name: str, path: str) -> None:
    slug, key = tenant
    data = (FIXTURES / name).read_bytes()
    send = via_api if path == "public_api" else via_admin_ui
    package = await outcome(upload_cluster, key, await send(upload_cluster, slug, key, data))
    assert package["sha256"] == hashlib.sha256(data).hexdigest()
    if name.startswith("edge/"):
        expected = EDGE_PACKAGES[name.removeprefix("edge/")]
        assert package["status"] == expected[0], package
        if expected[0] == "failed":
            assert expected[1] in package["error"], package["error"]
            assert package["scos"] == []
        else:
            assert (package["scorm_version"], len(package["scos"])) == expected[1:]
        return
    version, title, count, samples = MAIN_PACKAGES[name]
    assert package["status"] == "ready", package
    assert (package["scorm_version"], package["title"], len(package["scos"])) == (version, title, count)
    by_identifier = {sco["identifier"]: sco for sco in package["scos"]}
    for identifier, (sco_title, launch_url, parent) in samples.items():
        sco = by_identifier[identifier]
        assert (sco["title"], sco["launch_url"], sco["parent_identifier"]) == (sco_title, launch_url, parent)


async def test_a_multipart_upload_stores_the_zip_and_its_hash(upload_cluster: Cluster,
                                                              tenant: tuple[str, str]) -> None:
    _, key = tenant
    data = tiny_package()
    form = aiohttp.FormData()
    form.add_field("title", "From a form")
    form.add_field("file", data, filename="tiny.zip", content_type="application/zip")
    status, body, _ = await upload(upload_cluster, key, form, content_type=None)
    assert status == 202, body
    assert body["data"]["sha256"] == hashlib.sha256(data).hexdigest() and body["data"]["bytes"] == len(data)
    package = await outcome(upload_cluster, key, body["data"]["id"])
    assert (package["status"], package["title"], [s["identifier"] for s in package["scos"]]) == (
        "ready", "From a form", ["i1"])


async def test_a_form_without_a_file_part_is_400(upload_cluster: Cluster, tenant: tuple[str, str]) -> None:
    _, key = tenant
    form = aiohttp.FormData()
    form.add_field("title", "No file")
    form.add_field("other", b"PK\x03\x04", filename="x.zip", content_type="application/zip")
    status, body, _ = await upload(upload_cluster, key, form, content_type=None)
    assert status == 400 and body["error"]["code"] == "invalid_argument", body
    assert "'file'" in body["error"]["message"]


async def test_the_same_idempotency_key_replays_the_first_upload(upload_cluster: Cluster,
                                                                 tenant: tuple[str, str]) -> None:
    _, key = tenant
    data = tiny_package(**{"extra.txt": secrets.token_bytes(16)})
    idem = {"Idempotency-Key": secrets.token_hex(8)}
    first = await upload(upload_cluster, key, data, headers=idem)
    again = await upload(upload_cluster, key, data, headers=idem)
    assert first[0] == again[0] == 202
    assert again[1]["data"]["id"] == first[1]["data"]["id"]
    assert again[2]["Idempotent-Replayed"] == "true" and again[2]["Location"] == first[2]["Location"]
    other = await upload(upload_cluster, key, tiny_package(**{"other.txt": b"x"}), headers=idem)
    assert other[0] == 422 and other[1]["error"]["code"] == "idempotency_key_reused"
    status, listed = await upload_cluster.api(key, "GET", "/scorm-packages?limit=100")
    assert status == 200
    assert sum(p["sha256"] == first[1]["data"]["sha256"] for p in listed["data"]) == 1


async def test_dedupe_returns_the_package_with_the_same_bytes(upload_cluster: Cluster,
                                                              tenant: tuple[str, str]) -> None:
    _, key = tenant
    data = tiny_package(**{"dedupe.txt": secrets.token_bytes(16)})
    first_id = await via_api(upload_cluster, "", key, data)
    status, body, headers = await upload(upload_cluster, key, data, query="?dedupe=true")
    assert status == 200, body
    assert body["data"]["id"] == first_id and headers["Location"] == f"{PACKAGES}/{first_id}"
    status, body, _ = await upload(upload_cluster, key, data)  # without dedupe: a new package
    assert status == 202 and body["data"]["id"] != first_id
    status, body, _ = await upload(upload_cluster, key, data, query="?dedupe=maybe")
    assert status == 400 and body["error"]["code"] == "invalid_argument"
    # Another tenant's identical bytes are not "the same package".
    other_key = await upload_cluster.tenant_with_key(f"dd-{secrets.token_hex(3)}")
    status, body, _ = await upload(upload_cluster, other_key, data, query="?dedupe=true")
    assert status == 202 and body["data"]["id"] not in (first_id,)


async def test_a_failed_package_is_not_a_dedupe_target(upload_cluster: Cluster, tenant: tuple[str, str]) -> None:
    _, key = tenant
    broken = zip_of({"readme.txt": secrets.token_bytes(8)})  # no manifest: fails
    failed_id = await via_api(upload_cluster, "", key, broken)
    assert (await outcome(upload_cluster, key, failed_id))["status"] == "failed"
    status, body, _ = await upload(upload_cluster, key, broken, query="?dedupe=true")
    assert status == 202 and body["data"]["id"] != failed_id


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b"not a zip at all", "application/zip", 400, "invalid_argument"),
    (b"", "application/zip", 400, "invalid_argument"),
    (b"PK\x03\x04", "text/plain", 415, "unsupported_media_type"),
    (b'{"zip": true}', "application/json", 415, "unsupported_media_type"),
], ids=["not-a-zip", "empty", "text-plain", "json"])
async def test_bad_bodies_are_refused_and_create_nothing(upload_cluster: Cluster, body: bytes, content_type: str,
                                                         status: int, code: str) -> None:
    key = await upload_cluster.tenant_with_key(f"bad-{secrets.token_hex(3)}")
    got, answer, _ = await upload(upload_cluster, key, body, content_type=content_type)
    assert (got, answer["error"]["code"]) == (status, code), answer
    listed = await upload_cluster.api(key, "GET", "/scorm-packages")
    assert listed == (200, {**listed[1], "data": []})


async def test_over_the_limit_is_413_by_length_and_while_streaming(upload_cluster: Cluster) -> None:
    key = await upload_cluster.tenant_with_key(f"big-{secrets.token_hex(3)}")
    big = b"PK\x03\x04" + bytes(UPLOAD_LIMIT)
    status, body, _ = await upload(upload_cluster, key, big)
    assert status == 413 and body["error"]["code"] == "payload_too_large", body

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: cut off while streaming
        yield b"PK\x03\x04"
        for _ in range(UPLOAD_LIMIT // 65536 + 2):
            yield bytes(65536)

    status, body, _ = await upload(upload_cluster, key, chunked())
    assert status == 413 and body["error"]["code"] == "payload_too_large", body
    listed = await upload_cluster.api(key, "GET", "/scorm-packages")
    assert listed[0] == 200 and listed[1]["data"] == []


def _traversal_zip(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("imsmanifest.xml", tiny_manifest())
        archive.writestr("index.html", b"<html></html>")
        archive.writestr(zipfile.ZipInfo(name), b"evil")
    return buffer.getvalue()


def tiny_manifest() -> bytes:
    from tests.scorm.test_scorm_service_packages import MANIFEST_12
    return MANIFEST_12


@pytest.mark.parametrize("entry", ["../evil.html", "/etc/evil", "a/../../evil.html", "C:/evil.html"])
async def test_traversal_entries_fail_the_import_with_a_reason(upload_cluster: Cluster, tenant: tuple[str, str],
                                                                entry: str) -> None:
    _, key = tenant
    package = await outcome(upload_cluster, key, await via_api(upload_cluster, "", key, _traversal_zip(entry)))
    assert package["status"] == "failed" and package["scos"] == []
    assert package["error"], package


async def test_a_key_without_learn_write_is_403_and_another_tenant_sees_404(upload_cluster: Cluster,
                                                                           tenant: tuple[str, str]) -> None:
    slug, key = tenant
    status, body = await upload_cluster.admin("POST", f"/tenants/{slug}/api-keys",
                                              json={"name": "reader", "scopes": ["learn:read"]})
    assert status == 201, body
    reader = body["data"]["key"]
    status, answer, _ = await upload(upload_cluster, reader, tiny_package())
    assert status == 403 and answer["error"]["code"] == "insufficient_scope"
    assert "learn:write" in answer["error"]["message"]

    package_id = await via_api(upload_cluster, slug, key, tiny_package(**{"mine.txt": secrets.token_bytes(8)}))
    other = await upload_cluster.tenant_with_key(f"oth-{secrets.token_hex(3)}")
    status, answer = await upload_cluster.api(other, "GET", f"/scorm-packages/{package_id}")
    missing = await upload_cluster.api(other, "GET", "/scorm-packages/999999999")
    assert status == 404 and answer["error"]["code"] == "scorm_package_not_found"
    assert answer["error"]["message"] == missing[1]["error"]["message"]
    # and the owner's own read still works
    assert (await upload_cluster.api(key, "GET", f"/scorm-packages/{package_id}"))[0] == 200


async def test_uploads_in_parallel_each_get_their_own_package(upload_cluster: Cluster,
                                                              tenant: tuple[str, str]) -> None:
    _, key = tenant
    bodies = [tiny_package(**{"n.txt": str(i).encode()}) for i in range(4)]
    ids = await asyncio.gather(*(via_api(upload_cluster, "", key, body) for body in bodies))
    assert len(set(ids)) == 4
    for package_id in ids:
        assert (await outcome(upload_cluster, key, package_id))["status"] == "ready"


# --- versions and archiving -----------------------------------------------------------------------------------


def versioned_package(marker: bytes, item: str = "i1") -> bytes:
    manifest = tiny_manifest().replace(b'identifier="i1"', f'identifier="{item}"'.encode())
    return zip_of({"imsmanifest.xml": manifest, "index.html": b"<html>" + marker + b"</html>"})


async def content_of(cluster: Cluster, launch: dict[str, Any]) -> bytes:
    status, body = await cluster.request("GET", f"/learn/content/{launch['runtime_token']}/index.html",
                                         origin=cluster.content_url)
    assert status == 200, body
    return bytes(body)


async def test_a_new_version_keeps_attempts_in_progress_and_new_launches_get_it(upload_cluster: Cluster) -> None:
    c = upload_cluster
    slug = f"ver-{secrets.token_hex(3)}"
    key = await c.tenant_with_key(slug)
    first_id = await via_api(c, slug, key, versioned_package(b"version one"))
    assert (await outcome(c, key, first_id))["status"] == "ready"
    course, (activity,) = await c.course(key, slug, "versioned", [
        {"title": "Packaged", "kind": "scorm", "required": True, "scorm_package_id": first_id,
         "sco_identifier": "i1"}], title="Versioned course")
    for user_id in (1, 2):
        await c.user(slug, user_id, f"Learner {user_id}")
    early = await c.enroll(key, 1, course["id"])
    late = await c.enroll(key, 2, course["id"])

    started = await c.launch(key, early["id"], activity["id"])
    assert await content_of(c, started) == b"<html>version one</html>"
    # Mid-attempt: the player is open, with data committed and the attempt not finished.
    await c.runtime(started["runtime_token"], "commit", {"cmi.core.lesson_status": "incomplete",
                                                        "cmi.core.exit": "suspend", "cmi.suspend_data": "page=3"})

    assert c.http is not None
    async with c.http.post(f"{c.gateway_url}{PACKAGES}/{first_id}/versions", data=versioned_package(b"version two"),
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"}) as resp:
        status, body, headers = resp.status, await resp.json(), resp.headers
    assert status == 202, body
    second = body["data"]
    assert (second["version"], second["version_of"], second["status"]) == (2, first_id, "processing")
    assert headers["Location"] == f"{PACKAGES}/{second['id']}"
    assert (await outcome(c, key, second["id"]))["status"] == "ready"

    assert await content_of(c, started) == b"<html>version one</html>"  # the open player keeps its version
    await c.runtime(started["runtime_token"], "finish", {"cmi.core.lesson_status": "incomplete",
                                                        "cmi.core.exit": "suspend", "cmi.suspend_data": "page=3"})
    resumed = await c.launch(key, early["id"], activity["id"])  # mid-attempt (suspended): stays on version 1
    assert await content_of(c, resumed) == b"<html>version one</html>"
    fresh = await c.launch(key, late["id"], activity["id"])  # a new attempt: the newest version
    assert await content_of(c, fresh) == b"<html>version two</html>"
    # Once the early learner's attempt is over, their next launch gets the new version too.
    await c.runtime(resumed["runtime_token"], "finish", {"cmi.core.lesson_status": "completed",
                                                        "cmi.core.exit": ""})
    after = await c.launch(key, early["id"], activity["id"])
    assert await content_of(c, after) == b"<html>version two</html>"

    # A version without the SCO an activity launches fails, naming it; launches stay on version 2.
    async with c.http.post(f"{c.gateway_url}{PACKAGES}/{second['id']}/versions",
                           data=versioned_package(b"version three", item="other"),
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"}) as resp:
        third = (await resp.json())["data"]
        assert resp.status == 202 and third["version"] == 3 and third["version_of"] == first_id
    failed = await outcome(c, key, third["id"])
    assert failed["status"] == "failed" and "no SCO 'i1'" in failed["error"], failed
    again = await c.launch(key, late["id"], activity["id"])
    assert await content_of(c, again) == b"<html>version two</html>"

    # Archiving: refused while the published course uses it, naming the course; allowed once it is archived.
    status, body = await c.api(key, "DELETE", f"/scorm-packages/{first_id}")
    assert status == 409 and body["error"]["code"] == "scorm_package_in_use", body
    assert "'Versioned course'" in body["error"]["message"] and str(course["id"]) in body["error"]["message"]
    status, body = await c.api(key, "POST", f"/courses/{course['id']}/archive")
    assert status == 200, body
    status, body = await c.api(key, "DELETE", f"/scorm-packages/{second['id']}")
    assert status == 200 and body["data"]["archived_at"] is not None, body
    status, body = await c.api(key, "GET", f"/scorm-packages/{first_id}")
    assert status == 200 and body["data"]["archived_at"] is not None
    # The catalog knows it at once (read-your-writes): a course naming the archived package is not published.
    draft, _ = await c.course(key, slug, "after-archive", [
        {"title": "Late", "kind": "scorm", "required": True, "scorm_package_id": first_id}], publish=False)
    status, body = await c.api(key, "POST", f"/courses/{draft['id']}/publish")
    assert status == 400 and f"SCORM package {first_id}, which is archived" in body["error"]["message"], body
    async with c.http.post(f"{c.gateway_url}{PACKAGES}/{first_id}/versions", data=versioned_package(b"four"),
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"}) as resp:
        refused = await resp.json()
        assert resp.status == 400 and "archived" in refused["error"]["message"], refused


async def test_an_unused_package_is_archived_and_no_longer_a_dedupe_target(upload_cluster: Cluster) -> None:
    key = await upload_cluster.tenant_with_key(f"arc-{secrets.token_hex(3)}")
    data = versioned_package(secrets.token_hex(4).encode())
    package_id = await via_api(upload_cluster, "", key, data)
    assert (await outcome(upload_cluster, key, package_id))["status"] == "ready"
    idem = {"Idempotency-Key": secrets.token_hex(8)}
    status, body = await upload_cluster.api(key, "DELETE", f"/scorm-packages/{package_id}", headers=idem)
    assert status == 200 and body["data"]["archived_at"] is not None
    status, again = await upload_cluster.api(key, "DELETE", f"/scorm-packages/{package_id}", headers=idem)
    assert status == 200 and again["data"]["archived_at"] == body["data"]["archived_at"]
    status, answer, _ = await upload(upload_cluster, key, data, query="?dedupe=true")
    assert status == 202 and answer["data"]["id"] != package_id
    status, body = await upload_cluster.api(key, "DELETE", "/scorm-packages/999999999")
    assert status == 404 and body["error"]["code"] == "scorm_package_not_found"


# --- real packages' findings, through the whole system ----------------------------------------------------------


def _player_state(html: bytes) -> dict[str, Any]:
    import json
    found = re.search(rb'<script type="application/json" id="learn-runtime-state">(.*?)</script>', html, re.S)
    assert found, html[:300]
    return dict(json.loads(found.group(1)))


async def test_time_limits_reach_the_player_and_an_activity_without_sco_launches_the_first(
        upload_cluster: Cluster) -> None:
    c = upload_cluster
    slug = f"tl-{secrets.token_hex(3)}"
    key = await c.tenant_with_key(slug)
    manifest = tiny_manifest().replace(
        b"<title>Only SCO</title>",
        b"<title>Only SCO</title><adlcp:maxtimeallowed>00:20:00</adlcp:maxtimeallowed>"
        b"<adlcp:timelimitaction>exit,no message</adlcp:timelimitaction>")
    package_id = await via_api(c, slug, key, zip_of({"imsmanifest.xml": manifest, "index.html": b"<html/>"}))
    assert (await outcome(c, key, package_id))["status"] == "ready"
    # No sco_identifier: the docs say the first SCO launches (the API answered 400 missing_field before).
    course, (activity,) = await c.course(key, slug, "timed", [
        {"title": "Timed", "kind": "scorm", "required": True, "scorm_package_id": package_id}])
    assert activity["sco_identifier"] is None
    await c.user(slug, 5, "Tim Ed")
    enrollment = await c.enroll(key, 5, course["id"])
    launch = await c.launch(key, enrollment["id"], activity["id"])
    status, page = await c.request("GET", f"/learn/player/{launch['runtime_token']}", origin=c.content_url)
    assert status == 200
    cmi = _player_state(page)["cmi"]
    assert cmi["cmi.student_data.time_limit_action"] == "exit,no message"
    assert cmi["cmi.student_data.max_time_allowed"] == "00:20:00"


async def test_an_asset_only_package_publishes_launches_and_completes_on_launch(upload_cluster: Cluster) -> None:
    c = upload_cluster
    slug = f"as-{secrets.token_hex(3)}"
    key = await c.tenant_with_key(slug)
    data = (FIXTURES / "golf_scorm2004_3rd_onefilepersco_assets_only.zip").read_bytes()
    package = await outcome(c, key, await via_api(c, slug, key, data))
    assert package["status"] == "ready" and package["scos"] == []
    assert len(package["assets"]) == 18
    assert any(w.startswith("the package has no SCO") for w in package["warnings"]), package["warnings"]
    quiz = next(a for a in package["assets"] if a["identifier"] == "havingfun_quiz_item")
    assert quiz["launch_url"] == "shared/assessmenttemplate.html?questions=HavingFun"
    # Publishing used to fail late ("references SCO ... which package ... does not contain").
    course, (activity, first, handout) = await c.course(key, slug, "assets", [
        {"title": "Quiz", "kind": "scorm", "required": True, "scorm_package_id": package["id"],
         "sco_identifier": "havingfun_quiz_item"},
        {"title": "First", "kind": "scorm", "required": False, "scorm_package_id": package["id"]},
        # The option per activity: this one is opened, never completed by opening it.
        {"title": "Handout", "kind": "scorm", "required": False, "scorm_package_id": package["id"],
         "sco_identifier": "havingfun_quiz_item", "complete_on_launch": False},
    ])
    assert (activity["complete_on_launch"], handout["complete_on_launch"]) == (None, False)
    assert course["status"] == "published"
    await c.user(slug, 9, "Asset Learner")
    enrollment = await c.enroll(key, 9, course["id"])
    launch = await c.launch(key, enrollment["id"], activity["id"])
    status, page = await c.request("GET", f"/learn/player/{launch['runtime_token']}", origin=c.content_url)
    assert status == 200 and _player_state(page)["launch_url"].startswith("shared/assessmenttemplate.html")
    status, file = await c.request("GET", f"/learn/content/{launch['runtime_token']}/shared/assessmenttemplate.html",
                                   origin=c.content_url)
    assert status == 200 and b"<html" in bytes(file).lower()
    # Completed on launch: the only required activity is done, so is the enrollment.
    done = await c.wait_status(key, enrollment["id"], "completed", timeout=60)
    assert done["progress"] == {"required_done": 1, "required_total": 1}
    status, attempts = await c.api(key, "GET", f"/attempts?enrollment_id={enrollment['id']}")
    assert status == 200 and [a["status"] for a in attempts["data"]] == ["completed"]
    # The player's own commit (an asset never reports) does not take the completion back.
    committed = await c.runtime(launch["runtime_token"], "finish", {"cmi.completion_status": "incomplete"})
    assert committed["status"] == "completed"
    # No sco_identifier on an asset-only package: the first launchable item.
    other = await c.launch(key, enrollment["id"], first["id"])
    status, page = await c.request("GET", f"/learn/player/{other['runtime_token']}", origin=c.content_url)
    assert status == 200 and _player_state(page)["launch_url"] == package["assets"][0]["launch_url"]
    # complete_on_launch false: the launch's attempt is incomplete, and stays so whatever the player sends.
    opened = await c.launch(key, enrollment["id"], handout["id"])
    committed = await c.runtime(opened["runtime_token"], "finish", {"cmi.completion_status": "completed"})
    assert committed["status"] == "incomplete"

    async def handout_attempt() -> dict[str, Any] | None:
        status, body = await c.api(key, "GET", f"/attempts/{opened['attempt_id']}")
        assert status == 200, body
        return body["data"] if body["data"]["time_ended_at"] is not None else None

    attempt = await c.eventually(handout_attempt, message="the handout's finished attempt")
    assert attempt["status"] == "incomplete", attempt
    # A SCO reports its own progress: complete_on_launch on an activity that launches one is refused at publish.
    sco_package = await outcome(c, key, await via_api(c, slug, key, versioned_package(b"tracked")))
    draft, _ = await c.course(key, slug, "sco-col", [
        {"title": "SCO", "kind": "scorm", "required": True, "scorm_package_id": sco_package["id"],
         "complete_on_launch": True}], publish=False)
    status, body = await c.api(key, "POST", f"/courses/{draft['id']}/publish")
    assert status == 400 and "complete_on_launch" in body["error"]["message"], body


# --- resumable uploads (tus 1.0.0) ---------------------------------------------------------------------------


def big_package(size: int) -> bytes:
    """A valid package of about ``size`` bytes (a stored, incompressible media file)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", tiny_manifest())
        archive.writestr("index.html", b"<html>big</html>")
        archive.writestr(zipfile.ZipInfo("media/video.bin"), secrets.token_bytes(size), zipfile.ZIP_STORED)
    return buffer.getvalue()


async def tus(cluster: Cluster, key: str, method: str, path: str, *, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    assert cluster.http is not None
    all_headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0", **(headers or {})}
    async with cluster.http.request(method, cluster.gateway_url + path, data=data, headers=all_headers) as resp:
        body = await resp.json() if "json" in resp.headers.get("Content-Type", "") else await resp.read()
        return resp.status, body, resp.headers


async def drop_mid_patch(cluster: Cluster, key: str, path: str, offset: int, chunk: bytes, sent: int) -> None:
    """A PATCH whose connection dies after ``sent`` of the chunk's bytes (a flaky link)."""
    host, port = cluster.gateway_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = (f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {len(chunk)}\r\n\r\n")
    writer.write(head.encode() + chunk[:sent])
    await writer.drain()
    writer.close()  # the rest of the body never comes: the connection is gone mid-request
    await writer.wait_closed()


async def test_a_resumable_upload_survives_a_dropped_connection_and_starts_the_import(
        upload_cluster: Cluster) -> None:
    c = upload_cluster
    key = await c.tenant_with_key(f"tus-{secrets.token_hex(3)}")
    data = big_package(1_200_000)
    title = base64.b64encode(b"Resumed course").decode()
    status, body, headers = await tus(c, key, "POST", "/api/v1/learn/scorm-uploads",
                                      headers={"Upload-Length": str(len(data)), "Upload-Metadata": f"title {title}"})
    assert status == 201, body
    location = headers["Location"]
    assert headers["Upload-Offset"] == "0" and body["data"]["length"] == len(data)

    await drop_mid_patch(c, key, location, 0, data[:800_000], 500_000)
    status, _, headers = await tus(c, key, "HEAD", location)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    held = int(headers["Upload-Offset"])
    # What reached the server's disk before the drop (bytes still in a socket buffer when the link died are
    # lost, so it may be anything up to what was sent: tests/scorm/test_resumable.py pins the kept part).
    assert 0 <= held <= 500_000 and int(headers["Upload-Length"]) == len(data)
    # The server has exactly the bytes it says: a PATCH from elsewhere is refused.
    if held == 0:  # make the rest of the test meaningful: hold some bytes first
        status, _, headers = await tus(c, key, "PATCH", location, data=data[:300_000],
                                       headers={"Content-Type": "application/offset+octet-stream",
                                                "Upload-Offset": "0"})
        assert status == 204
        held = int(headers["Upload-Offset"])
    status, body, _ = await tus(c, key, "PATCH", location, data=data[held + 1:held + 10],
                                headers={"Content-Type": "application/offset+octet-stream",
                                         "Upload-Offset": str(held + 1)})
    assert status == 409 and body["error"]["code"] == "upload_offset_mismatch", body
    status, body, _ = await tus(c, key, "PATCH", location, data=data[held:held + 10],
                                headers={"Content-Type": "application/zip", "Upload-Offset": str(held)})
    assert status == 415, body

    status, _, headers = await tus(c, key, "PATCH", location, data=data[held:800_000],
                                   headers={"Content-Type": "application/offset+octet-stream",
                                            "Upload-Offset": str(held)})
    assert status == 204 and headers["Upload-Offset"] == "800000" and "Location" not in headers
    status, progress, _ = await tus(c, key, "GET", location)
    assert status == 200 and (progress["data"]["offset"], progress["data"]["package_id"]) == (800_000, None)
    status, _, headers = await tus(c, key, "PATCH", location, data=data[800_000:],
                                   headers={"Content-Type": "application/offset+octet-stream",
                                            "Upload-Offset": "800000"})
    assert status == 204 and headers["Upload-Offset"] == str(len(data))
    package_location = headers["Location"]
    status, done, _ = await tus(c, key, "GET", location)
    assert status == 200 and done["data"]["package_id"] and done["data"]["offset"] == len(data)
    assert package_location == f"{PACKAGES}/{done['data']['package_id']}"
    package = await outcome(c, key, done["data"]["package_id"])
    assert (package["status"], package["title"]) == ("ready", "Resumed course")
    assert package["sha256"] == hashlib.sha256(data).hexdigest() and package["bytes"] == len(data)
    # Complete: nothing more is taken.
    status, body, _ = await tus(c, key, "PATCH", location, data=b"x",
                                headers={"Content-Type": "application/offset+octet-stream",
                                         "Upload-Offset": str(len(data))})
    assert status == 409, body


async def test_resumable_upload_refusals(upload_cluster: Cluster) -> None:
    c = upload_cluster
    key = await c.tenant_with_key(f"tusr-{secrets.token_hex(3)}")
    create = "/api/v1/learn/scorm-uploads"
    status, body, _ = await tus(c, key, "POST", create)
    assert status == 400 and "Upload-Length" in body["error"]["message"]
    status, body, _ = await tus(c, key, "POST", create, headers={"Upload-Length": str(UPLOAD_LIMIT + 1)})
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    status, body, _ = await tus(c, key, "POST", create, headers={"Upload-Length": "10", "Tus-Resumable": "0.2.2"})
    assert status == 400
    status, body, headers = await tus(c, key, "POST", create, headers={"Upload-Length": "10"})
    assert status == 201
    location = headers["Location"]
    # Past the declared length: refused, nothing beyond it kept.
    status, body, _ = await tus(c, key, "PATCH", location, data=b"PK" + bytes(20),
                                headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert status == 413, body
    # Not a zip once complete: 400, and the upload is gone.
    status, _, headers = await tus(c, key, "HEAD", location)
    held = int(headers["Upload-Offset"])
    status, body, _ = await tus(c, key, "PATCH", location, data=b"x" * (10 - held),
                                headers={"Content-Type": "application/offset+octet-stream",
                                         "Upload-Offset": str(held)})
    assert status in (400, 409), body
    # Scope and tenant.
    slug = f"tusw-{secrets.token_hex(3)}"
    owner = await c.tenant_with_key(slug)
    status, body, headers = await tus(c, owner, "POST", create, headers={"Upload-Length": "100"})
    assert status == 201
    mine = headers["Location"]
    status, body = await c.admin("POST", f"/tenants/{slug}/api-keys", json={"name": "r", "scopes": ["learn:read"]})
    reader = body["data"]["key"]
    status, body, _ = await tus(c, reader, "PATCH", mine, data=b"PK",
                                headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    for method in ("GET", "HEAD", "PATCH"):
        status, body, _ = await tus(c, key, method, mine, data=b"PK" if method == "PATCH" else None,
                                    headers={"Content-Type": "application/offset+octet-stream",
                                             "Upload-Offset": "0"})
        assert status == 404, (method, body)
        if method != "HEAD":
            assert body["error"]["code"] == "scorm_upload_not_found"
    status, _, headers = await tus(c, owner, "HEAD", mine)
    assert status == 200 and headers["Upload-Offset"] == "0"
