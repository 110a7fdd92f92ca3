"""SCORM packages through the service: upload, background import, the SCO list, events and the package API.

Every fixture package of tests/fixtures/scorm (SOURCES.md) goes through the admin upload endpoint. The
expected SCOs were read from each imsmanifest.xml by hand (parents are the enclosing items; positions are the
items' pre-order positions in the organization).
"""

from __future__ import annotations

import io
import os
import random
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.scorm.store import blobs, now, scorm_packages
from tests.scorm.test_scorm_service_harness import (  # noqa: F401
    OTHER_TENANT,
    OTHER_TENANT_ID,
    ScormService,
    running_scorm,
    scorm_fixture,
    settings_for,
)
from tests.support.scorm_packages import NESTED_QUIRKS_SCOS, debug_package, nested_quirks_package

#: zip -> (version, title, SCO count, {identifier: (title, launch_url, parent_identifier)} for some SCOs)
MAIN_PACKAGES = {
    "golf_scorm12_singlesco.zip": ("1.2", "Golf Explained - CP Single SCO", 1, {
        "item_1": ("Golf Explained", "shared/launchpage.html", None)}),
    "golf_scorm12_multisco_runtime_minimum.zip": ("1.2", "Golf Explained - Minimum Run-time Calls", 18, {
        "playing_playing_item": ("How to Play", "Playing/Playing.html", "playing_item"),
        "havingfun_quiz_item": ("Having Fun Quiz", "shared/assessmenttemplate.html?questions=HavingFun",
                                "havingfun_item")}),
    "golf_scorm2004_2nd_singlesco.zip": ("2004-2nd", "Golf Explained - CP Single SCO", 1, {
        "item_1": ("Golf Explained", "shared/launchpage.html", None)}),
    "golf_scorm2004_3rd_onefilepersco_assets_only.zip": (
        "2004-3rd", "Golf Explained - CP One File Per SCO", 0, {}),
    "golf_scorm2004_3rd_runtime_advanced.zip": ("2004-3rd", "Golf Explained - Run-time Advanced Calls", 1, {
        "item_1": ("Golf Explained", "shared/launchpage.html", None)}),
    "golf_scorm2004_4th_sequencing_posttest_rollup.zip": (
        "2004-4th", "Golf Explained - 4th Edition Features", 5, {
        "playing_item": ("Playing the Game", "shared/launchpage.html?content=playing", None)}),
    "adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip": ("2004-4th", "LMS Test Content Package CM-07d", 11, {
        "activity_2": ("Activity 2", "resources/SequencingTest.htm?tc=CM-07d&act=2", "activity_1"),
        "activity_13": ("Activity 13", "resources/SequencingTest.htm?tc=CM-07d&act=13", "activity_12")}),
}

#: edge zip -> ("failed", words of the error) or ("ready", version, SCO count)
EDGE_PACKAGES = {
    "moodle_badscorm_manifest_in_subdir.zip": ("failed", "imsmanifest.xml must be at the root of the zip"),
    "moodle_validscorm_manifest_decl_only.zip": ("failed", "not well-formed XML"),
    "moodle_invalid_no_manifest.zip": ("failed", "there is no imsmanifest.xml at the root of the zip"),
    "emp_scorm12_item_missing_resource.zip": ("failed", "refers to resource 'non_existent_resource'"),
    "emp_scorm12_malformed_xml.zip": ("failed", "not well-formed XML (mismatched tag: line 27"),
    "moodle_singlescobasic_missingorg.zip": ("ready", "1.2", 1),
    "emp_scorm12_prerequisites_masteryscore.zip": ("ready", "1.2", 4),
    "emp_scorm2004_no_schemaversion.zip": ("ready", "2004-3rd", 1),
}

MANIFEST_12 = b"""<?xml version="1.0"?>
<manifest identifier="m" xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <metadata><schema>ADL SCORM</schema><schemaversion>1.2</schemaversion></metadata>
  <organizations default="o"><organization identifier="o"><title>Tiny</title>
    <item identifier="i1" identifierref="r1"><title>Only SCO</title></item>
  </organization></organizations>
  <resources><resource identifier="r1" type="webcontent" adlcp:scormtype="sco" href="index.html">
    <file href="index.html"/></resource></resources>
</manifest>"""


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tiny_package(**extra: bytes) -> bytes:
    return zip_of({"imsmanifest.xml": MANIFEST_12, "index.html": b"<html>hi</html>", **extra})


# --- the fixture packages ---------------------------------------------------------------------------------


def test_every_fixture_package_has_an_expectation(scorm_fixtures_dir: Path) -> None:
    assert {p.name for p in scorm_fixtures_dir.glob("*.zip")} == set(MAIN_PACKAGES)
    assert {p.name for p in (scorm_fixtures_dir / "edge").glob("*.zip")} == set(EDGE_PACKAGES)


@pytest.mark.parametrize("name", list(MAIN_PACKAGES))
async def test_a_fixture_package_imports_with_its_version_title_and_scos(scorm: ScormService,
                                                                         name: str) -> None:
    version, title, count, samples = MAIN_PACKAGES[name]
    package = await scorm.ready_package(name)
    assert (package["scorm_version"], package["title"], len(package["scos"])) == (version, title, count)
    by_identifier = {sco["identifier"]: sco for sco in package["scos"]}
    for identifier, (sco_title, launch_url, parent) in samples.items():
        sco = by_identifier[identifier]
        assert (sco["title"], sco["launch_url"], sco["parent_identifier"]) == (sco_title, launch_url, parent)
    positions = [sco["position"] for sco in package["scos"]]
    assert positions == sorted(positions) and len(set(positions)) == count


async def test_the_built_quirks_package_imports_with_its_nested_scos(scorm: ScormService) -> None:
    package = await scorm.ready_package(nested_quirks_package())
    assert (package["scorm_version"], package["title"]) == ("1.2", "Nested quirks")
    assert package["organization_identifier"] == "mm-quirks_org"
    assert [(s["identifier"], s["title"], s["launch_url"], s["parent_identifier"]) for s in package["scos"]] == [
        (identifier, title, "index.html", parent) for identifier, (title, parent) in NESTED_QUIRKS_SCOS.items()]
    assert any("imslrm.xml" in warning for warning in package["warnings"])


@pytest.mark.parametrize("standard", ["1.2", "2004"])
async def test_the_built_debug_sco_imports_with_its_scenario_in_the_launch_url(scorm: ScormService,
                                                                              standard: str) -> None:
    package = await scorm.ready_package(debug_package(standard, status="passed", score=0.5, suspend="a&b"))
    (sco,) = package["scos"]
    assert package["scorm_version"] == {"1.2": "1.2", "2004": "2004-4th"}[standard]
    assert sco["launch_url"] == f"index.html?standard={standard}&status=passed&score=0.5&suspend=a%26b"


@pytest.mark.parametrize("name", ["built:nested_quirks.zip", "adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip"])
async def test_scorm_package_ready_carries_the_sco_list(scorm: ScormService, name: str) -> None:
    package = await scorm.ready_package(nested_quirks_package() if name.startswith("built:") else name)
    event = await scorm.package_event(package["id"], "scorm_package.ready")
    assert event.routing_key == "acme.scorm_package.ready"
    assert event.subject == f"scorm_package/{package['id']}"
    assert (event.data["title"], event.data["scorm_version"]) == (package["title"], package["scorm_version"])
    sent = [(s["identifier"], s["title"], s["launch_url"], s["position"], s["parent_identifier"], s["tracked"])
            for s in event.data["scos"]]
    # The event lists every launchable item in manifest order: SCOs, and assets as untracked (issue 20).
    listed = [(s["identifier"], s["title"], s["launch_url"], s["position"], s["parent_identifier"], tracked)
              for tracked, kind in ((True, "scos"), (False, "assets")) for s in package[kind]]
    assert sent == sorted(listed, key=lambda s: s[3])


@pytest.mark.parametrize("name", list(EDGE_PACKAGES))
async def test_an_edge_package_ends_as_its_row_says(scorm: ScormService, name: str) -> None:
    expected = EDGE_PACKAGES[name]
    package = await scorm.until_imported((await scorm.upload_fixture(f"edge/{name}"))["id"])
    assert package["status"] == expected[0], package
    if expected[0] == "failed":
        assert expected[1] in package["error"] and package["scos"] == []
        event = await scorm.package_event(package["id"], "scorm_package.failed")
        assert event.data["error"] == package["error"]
    else:
        assert (package["scorm_version"], len(package["scos"])) == expected[1:]
        assert package["error"] is None


async def test_mastery_scores_reach_the_sco_list(scorm: ScormService) -> None:
    package = await scorm.ready_package("edge/emp_scorm12_prerequisites_masteryscore.zip")
    assert sorted(s["mastery_score"] for s in package["scos"] if s["mastery_score"] is not None) == [80, 90]


async def test_a_missing_referenced_file_is_a_warning_for_admins_and_the_api(scorm: ScormService) -> None:
    package = await scorm.ready_package("adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip")
    assert any("common/LMSTest.jar" in warning for warning in package["warnings"])
    _, public = await scorm.call("GET", f"/api/v1/learn/scorm-packages/{package['id']}", expect=200)
    assert public["data"]["warnings"] == package["warnings"]  # the public API shows them too (issue 20)


# --- the upload ------------------------------------------------------------------------------------------


async def test_an_upload_answers_201_processing_with_the_zip_size_and_hash(scorm: ScormService) -> None:
    import hashlib

    body = tiny_package()
    _, answer = await scorm.upload(body, title="My course")
    package = answer["data"]
    assert package["status"] == "processing" and package["scorm_version"] is None and package["error"] is None
    assert (package["bytes"], package["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert package["title"] == "My course" and package["created_at"].endswith("Z")
    ready = await scorm.until_imported(package["id"])
    assert ready["title"] == "My course"  # a given title wins over the manifest's


async def test_without_a_title_the_manifest_title_names_the_package(scorm: ScormService) -> None:
    package = await scorm.until_imported((await scorm.upload(tiny_package()))[1]["data"]["id"])
    assert package["title"] == "Tiny"


async def test_a_body_that_is_not_a_zip_is_refused_at_once(scorm: ScormService) -> None:
    _, body = await scorm.upload(b"%PDF-1.7 not a zip at all", expect=400)
    assert body["error"]["code"] == "invalid_argument" and "not a zip" in body["error"]["message"]
    assert await scorm.scalar(sa.select(sa.func.count()).select_from(scorm_packages)) == 0


async def test_an_empty_body_is_refused(scorm: ScormService) -> None:
    _, body = await scorm.upload(b"", expect=400)
    assert body["error"]["code"] == "invalid_argument"


async def test_an_upload_must_be_sent_as_a_zip(scorm: ScormService) -> None:
    headers = {**scorm.headers(scopes="admin"), "Content-Type": "application/json"}
    _, body = await scorm.call("POST", "/admin/v1/scorm-packages", data=tiny_package(), headers=headers,
                               expect=415)
    assert body["error"]["code"] == "unsupported_media_type"


async def test_an_upload_over_the_cap_is_413_and_leaves_no_file(test_env, events, scorm_fixtures_dir) -> None:
    settings = settings_for(test_env, max_upload_bytes=64 * 1024)
    async with running_scorm(test_env, events, scorm_fixtures_dir, settings) as small:
        _, body = await small.upload(tiny_package(**{"big.bin": random.randbytes(100 * 1024)}), expect=413)
    assert body["error"]["code"] == "payload_too_large"
    assert not settings.upload_path.exists() or list(settings.upload_path.iterdir()) == []
    assert await _count_packages(test_env) == 0


async def test_a_streamed_upload_is_cut_off_at_the_cap(test_env, events, scorm_fixtures_dir) -> None:
    settings = settings_for(test_env, max_upload_bytes=64 * 1024)
    body = tiny_package(**{"big.bin": random.randbytes(200 * 1024)})

    async def chunks():  # no Content-Length: the cap is enforced while reading
        for start in range(0, len(body), 16 * 1024):
            yield body[start:start + 16 * 1024]

    async with running_scorm(test_env, events, scorm_fixtures_dir, settings) as small:
        headers = {**small.headers(scopes="admin"), "Content-Type": "application/zip"}
        _, answer = await small.call("POST", "/admin/v1/scorm-packages", data=chunks(), headers=headers,
                                     expect=413)
    assert answer["error"]["code"] == "payload_too_large"
    assert list(settings.upload_path.iterdir()) == []


async def _count_packages(test_env) -> int:
    from shared.db import Database

    db = Database(test_env.common().database_url("scorm"))
    try:
        async with db.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(scorm_packages))).scalar_one()
    finally:
        await db.dispose()


async def test_uploading_needs_the_admin_scope(scorm: ScormService) -> None:
    headers = {**scorm.headers(scopes="learn:read learn:write"), "Content-Type": "application/zip"}
    _, body = await scorm.call("POST", "/admin/v1/scorm-packages", data=tiny_package(), headers=headers,
                               expect=403)
    assert body["error"]["code"] == "insufficient_scope"


# --- unsafe packages end failed, with nothing written ---------------------------------------------------


def _unsafe_zip(kind: str) -> bytes:
    if kind == "traversal":
        return tiny_package(**{"../../escape.html": b"pwned"})
    if kind == "absolute":
        return tiny_package(**{"/etc/cron.d/evil": b"pwned"})
    if kind == "symlink":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("imsmanifest.xml", MANIFEST_12)
            link = zipfile.ZipInfo("index.html")
            link.create_system = 3
            link.external_attr = (0o120777 << 16)
            archive.writestr(link, "/etc/passwd")
        return buffer.getvalue()
    if kind == "xxe":
        return zip_of({"imsmanifest.xml": b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                       b"<manifest>&x;</manifest>", "index.html": b"x"})
    if kind == "bomb":
        return tiny_package(**{"zeros.bin": bytes(64 * 1024 * 1024)})
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "reason"), [
    ("traversal", "path traversal"),
    ("absolute", "absolute path"),
    ("symlink", "symbolic link"),
    ("xxe", "DOCTYPE"),
    ("bomb", "zip bomb"),
])
async def test_an_unsafe_package_ends_failed_and_stores_nothing(scorm: ScormService, kind: str,
                                                                reason: str) -> None:
    package = await scorm.until_imported((await scorm.upload(_unsafe_zip(kind)))[1]["data"]["id"])
    assert package["status"] == "failed" and reason in package["error"], package["error"]
    assert await scorm.scalar(sa.select(sa.func.count()).select_from(blobs)) == 0
    assert not (scorm.env.data_dir.parent / "escape.html").exists()


# --- the package API -------------------------------------------------------------------------------------


async def test_get_lists_the_scos_and_the_list_does_not(scorm: ScormService) -> None:
    package = await scorm.ready_package("golf_scorm12_singlesco.zip")
    _, got = await scorm.call("GET", f"/api/v1/learn/scorm-packages/{package['id']}", expect=200)
    assert set(got["data"]) == {"id", "title", "scorm_version", "status", "error", "bytes", "sha256",
                                "organization_identifier", "created_at", "warnings", "version", "version_of",
                                "archived_at", "scos", "assets"}
    assert got["data"]["organization_identifier"] == "golf_sample_default_org"
    assert got["data"]["scos"] == [{"identifier": "item_1", "title": "Golf Explained",
                                    "launch_url": "shared/launchpage.html", "parameters": None,
                                    "mastery_score": None, "position": 0, "parent_identifier": None}]
    _, listed = await scorm.call("GET", "/api/v1/learn/scorm-packages", expect=200)
    assert [p["id"] for p in listed["data"]] == [package["id"]] and "scos" not in listed["data"][0]


async def test_the_list_pages_newest_first_with_a_cursor(scorm: ScormService) -> None:
    ids = [(await scorm.upload(tiny_package()))[1]["data"]["id"] for _ in range(3)]
    _, first = await scorm.call("GET", "/api/v1/learn/scorm-packages?limit=2", expect=200)
    assert [p["id"] for p in first["data"]] == ids[::-1][:2] and first["next_cursor"]
    _, second = await scorm.call("GET", f"/api/v1/learn/scorm-packages?limit=2&cursor={first['next_cursor']}",
                                 expect=200)
    assert [p["id"] for p in second["data"]] == ids[:1] and second["next_cursor"] is None


async def test_another_tenants_package_is_not_found(scorm: ScormService) -> None:
    package = await scorm.ready_package("golf_scorm12_singlesco.zip")
    _, body = await scorm.call("GET", f"/api/v1/learn/scorm-packages/{package['id']}", expect=404,
                               tenant_id=OTHER_TENANT_ID, tenant=OTHER_TENANT)
    assert body["error"] == {"code": "scorm_package_not_found", "message": "Scorm package not found.",
                             "request_id": body["error"]["request_id"]}
    _, listed = await scorm.call("GET", "/api/v1/learn/scorm-packages", expect=200,
                                 tenant_id=OTHER_TENANT_ID, tenant=OTHER_TENANT)
    assert listed["data"] == []


async def test_an_unknown_package_id_is_not_found(scorm: ScormService) -> None:
    for path in ("/api/v1/learn/scorm-packages/999999", "/api/v1/learn/scorm-packages/abc"):
        _, body = await scorm.call("GET", path, expect=404)
        assert body["error"]["code"] == "scorm_package_not_found"


# --- resuming after a crash --------------------------------------------------------------------------------


async def test_a_processing_package_whose_worker_died_is_imported_after_a_restart(
    scorm: ScormService, test_env, scorm_fixtures_dir: Path
) -> None:
    uploads = test_env.data_dir / "scorm-uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    upload = uploads / "left-behind.zip"
    upload.write_bytes((scorm_fixtures_dir / "golf_scorm12_singlesco.zip").read_bytes())
    stamp = now()
    async with _begin(scorm) as conn:
        package_id = (await conn.execute(sa.insert(scorm_packages).values(
            tenant_id=1, tenant_slug="acme", title="Untitled package", title_given=False, status="processing",
            bytes=upload.stat().st_size, sha256="0" * 64, warnings=[], upload_path=str(upload),
            lease_owner="dead-worker", lease_until=stamp - timedelta(seconds=1), import_attempts=1,
            created_at=stamp, updated_at=stamp,
        ).returning(scorm_packages.c.id))).scalar_one()
    package = await scorm.until_imported(package_id)
    assert package["status"] == "ready" and package["title"] == "Golf Explained - CP Single SCO"
    assert not upload.exists()


def _begin(scorm: ScormService):
    from shared.service import DB_KEY

    return scorm.app[DB_KEY].engine.begin()


async def test_a_package_whose_upload_was_lost_fails_with_a_readable_error(scorm: ScormService) -> None:
    stamp = datetime.now(UTC)
    async with _begin(scorm) as conn:
        package_id = (await conn.execute(sa.insert(scorm_packages).values(
            tenant_id=1, tenant_slug="acme", title="Lost", title_given=True, status="processing", bytes=1,
            sha256="0" * 64, warnings=[], upload_path="/nonexistent/upload.zip", import_attempts=0,
            created_at=stamp, updated_at=stamp,
        ).returning(scorm_packages.c.id))).scalar_one()
    package = await scorm.until_imported(package_id)
    assert package["status"] == "failed" and "upload the package again" in package["error"]


async def test_old_upload_files_no_package_points_to_are_swept(scorm: ScormService) -> None:
    from services.scorm.context import SCORM_KEY
    from services.scorm.packages.importer import Importer
    from shared.service import DB_KEY

    uploads = scorm.app[SCORM_KEY].settings.upload_path
    uploads.mkdir(parents=True, exist_ok=True)
    orphan, fresh = uploads / "orphan.zip", uploads / "fresh.zip"
    orphan.write_bytes(b"PK")
    fresh.write_bytes(b"PK")
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    assert await Importer(scorm.app[DB_KEY], scorm.app[SCORM_KEY]).sweep_orphan_uploads() == 1
    assert not orphan.exists() and fresh.exists()


async def test_two_replicas_share_the_imports_and_each_package_is_imported_once(
    scorm: ScormService, test_env, events, scorm_fixtures_dir: Path
) -> None:
    async with running_scorm(test_env, events, scorm_fixtures_dir, settings_for(test_env)):
        ids = [(await scorm.upload(tiny_package()))[1]["data"]["id"] for _ in range(6)]
        for package_id in ids:
            assert (await scorm.until_imported(package_id))["status"] == "ready"
        for package_id in ids:
            await scorm.package_event(package_id, "scorm_package.ready")
    ready = [e.data["package_id"] for e in events.of_type("scorm_package.ready")]
    assert sorted(ready) == sorted(ids)
