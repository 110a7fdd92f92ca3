"""A hostile SCORM package in a real browser (issue 15): previewed by a signed-in operator and launched by a learner,
its JavaScript reaches nothing outside the content origin.

The package is built here: a SCORM 1.2 SCO whose script does what the attack of issue 15 did and more. It fetches
the admin UI, the admin API and the public API on the admin origin (with the operator's cookies, which a same-site
request carries), tries the same paths on its own origin, tries to steal the UI's CSRF token, posts the UI's "create
key" form for another tenant (by fetch and by a real form), frames the admin UI, reads ``window.parent``, ``top`` and
``opener``, ``document.cookie`` and storage, and opens the admin UI in a popup. It writes what it reached into the
page (``#report``), which the test reads, and then uses the one thing it may use, its own launch's runtime API.

The whole system runs as in production (every service its own process, PostgreSQL, RabbitMQ), the admin UI on
``http://127.0.0.1:<gateway port>`` and the content origin on ``http://127.0.0.1:<content port>``: another
origin, though the same site (the weakest split ``make run`` makes), so cookies of the admin origin ride on the
package's requests to it, and only the origin boundary, SameSite and the CSRF token stand in the way.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.support.cluster import Cluster
from tests.ui.ui_support import shoot, sign_in, unique_slug

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

MANIFEST = """<?xml version="1.0"?>
<manifest identifier="hostile" xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <metadata><schemaversion>1.2</schemaversion></metadata>
  <organizations default="org"><organization identifier="org"><title>Free golf lessons</title>
    <item identifier="lesson" identifierref="res"><title>Lesson one</title></item>
  </organization></organizations>
  <resources><resource identifier="res" type="webcontent" adlcp:scormtype="sco" href="index.html">
    <file href="index.html"/><file href="probe.js"/></resource></resources>
</manifest>"""

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lesson one</title><script src="probe.js" defer></script></head>
<body><h1>Lesson one</h1><pre id="report"></pre></body></html>"""

# __ADMIN__: the admin/API origin; __VICTIM__: another tenant's slug (an attacker knows both).
PROBE = r"""
(async function () {
  "use strict";
  const ADMIN = "__ADMIN__", VICTIM = "__VICTIM__";
  const report = {};
  const wait = (ms) => new Promise((done) => setTimeout(done, ms));
  const attempt = (fn) => { try { return fn(); } catch (e) { return { blocked: String(e) }; } };

  async function grab(name, url, init) {
    try {
      const r = await fetch(url, Object.assign({ credentials: "include", redirect: "follow" }, init || {}));
      let body = "";
      try { body = await r.text(); } catch (e) { body = "unreadable: " + e; }
      report[name] = { status: r.status, type: r.type, url: r.url, body: body.slice(0, 2000) };
    } catch (e) {
      report[name] = { blocked: String(e) };
    }
  }

  function loaded(frame, ms) {
    return new Promise((done) => { frame.addEventListener("load", done); setTimeout(done, ms); });
  }

  // 1. The admin UI, the admin API and the public API on the admin origin, with the browser's cookies.
  await grab("admin_keys_page", ADMIN + "/admin/api-keys?tenant=" + VICTIM);
  await grab("admin_home", ADMIN + "/admin");
  await grab("admin_api_keys", ADMIN + "/admin/api/v1/tenants/" + VICTIM + "/api-keys");
  await grab("admin_api_tenants", ADMIN + "/admin/api/v1/tenants");
  await grab("public_api", ADMIN + "/api/v1/learn/courses");
  // 2. The same paths on this origin.
  await grab("here_admin_keys_page", "/admin/api-keys?tenant=" + VICTIM);
  await grab("here_admin_login", "/admin/login");
  await grab("here_admin_api_keys", "/admin/api/v1/tenants/" + VICTIM + "/api-keys");
  await grab("here_public_api", "/api/v1/learn/courses");
  await grab("here_openapi", "/api/v1/learn/openapi.json");

  // 3. The CSRF token, from anything read so far; then mint a key for the victim tenant, twice.
  const stolen = Object.values(report).map((r) => /name="csrf_token" value="([^"]+)"/.exec(r.body || ""))
    .find((m) => m);
  report.csrf_token = stolen ? stolen[1] : null;
  const fields = [["csrf_token", report.csrf_token || ""], ["name", "pwned-by-package"], ["scopes", "learn:read"],
                  ["scopes", "learn:write"], ["mode", "live"]];
  await grab("mint_by_fetch", ADMIN + "/admin/api-keys?tenant=" + VICTIM, {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: fields.map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&") });
  const sink = document.createElement("iframe");
  sink.name = "sink";
  document.body.appendChild(sink);
  const form = document.createElement("form");
  form.method = "post";
  form.target = "sink";
  form.action = ADMIN + "/admin/api-keys?tenant=" + VICTIM;
  for (const [name, value] of fields) {
    const input = document.createElement("input");
    input.type = "hidden"; input.name = name; input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  const posted = loaded(sink, 5000);
  form.submit();
  await posted;
  report.mint_by_form = attempt(() => sink.contentDocument ? sink.contentDocument.documentElement.outerHTML : null);

  // 4. The admin UI in a frame.
  const frame = document.createElement("iframe");
  const framed = loaded(frame, 5000);
  frame.src = ADMIN + "/admin/api-keys?tenant=" + VICTIM;
  document.body.appendChild(frame);
  await framed;
  report.admin_frame = attempt(() => frame.contentDocument ? frame.contentDocument.documentElement.outerHTML : null);
  report.admin_frame_href = attempt(() => frame.contentWindow.location.href);

  // 5. The windows around this one.
  report.parent_origin = attempt(() => window.parent.location.origin);
  report.top_origin = attempt(() => window.top.location.origin);
  report.top_html = attempt(() => window.top.document.documentElement.outerHTML.slice(0, 20000));
  report.opener = attempt(() => {
    const opener = window.top.opener;
    return opener === null ? null : { href: opener.location.href, html: opener.document.documentElement.outerHTML };
  });
  // 6. Cookies and storage of this origin.
  report.cookie = document.cookie;
  report.local_storage = attempt(() => Object.keys(window.localStorage));
  // 7. The admin UI in a popup.
  const popup = attempt(() => window.open(ADMIN + "/admin/api-keys?tenant=" + VICTIM, "_blank"));
  if (popup && !popup.blocked) {
    await wait(1500);
    report.popup = attempt(() => popup.document.documentElement.outerHTML);
    attempt(() => popup.close());
  } else {
    report.popup = popup;
  }

  // 8. What a SCO may do: its own launch's runtime.
  let api = null;
  for (let w = window; w && !api; w = w === w.parent ? null : w.parent) { api = attempt(() => w.API) || null; }
  report.runtime = api && !api.blocked ? [api.LMSInitialize(""), api.LMSSetValue("cmi.core.lesson_status", "completed"),
                                           api.LMSSetValue("cmi.core.score.raw", "97"), api.LMSCommit("")] : null;
  document.title = "probed";
  const out = document.getElementById("report");
  out.textContent = JSON.stringify(report);
  out.setAttribute("data-done", "1");
})();
"""


def hostile_package(path: Path, admin_origin: str, victim: str) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", MANIFEST)
        archive.writestr("index.html", INDEX)
        archive.writestr("probe.js", PROBE.replace("__ADMIN__", admin_origin).replace("__VICTIM__", victim))
    path.write_bytes(buffer.getvalue())
    return path


async def run_probe(player: Page) -> dict[str, Any]:
    sco = player.frame_locator("#learn-content")
    await sco.locator("#report[data-done]").wait_for(timeout=30_000)
    return dict(json.loads(await sco.locator("#report").inner_text()))


ADMIN_MARKERS = ("csrf_token", "learn_admin", "mc_live_", "mc_test_", "Create a key", "Sign in", "api_key")


def assert_contained(report: dict[str, Any], cluster: Cluster, victim: str) -> None:
    """Everything the package tried outside its origin failed, and its origin serves nothing but learner paths."""
    for name in ("admin_keys_page", "admin_home", "admin_api_keys", "admin_api_tenants", "public_api"):
        assert "blocked" in report[name], (name, report[name])  # cross-origin: the browser gave nothing back
    for name in ("here_admin_keys_page", "here_admin_login", "here_admin_api_keys", "here_public_api",
                 "here_openapi"):
        entry = report[name]
        assert entry["status"] == 404 and entry["url"].startswith(cluster.content_url), (name, entry)
        assert json.loads(entry["body"])["error"]["code"] == "not_found", (name, entry)
    assert report["csrf_token"] is None
    # The no-cors POST went out (that cannot be stopped) but its answer is opaque: nothing read.
    assert report["mint_by_fetch"].get("type") == "opaque" and report["mint_by_fetch"]["body"] == "", report
    for name in ("mint_by_form", "admin_frame", "admin_frame_href", "popup"):
        value = report[name]
        assert value is None or "blocked" in value, (name, value)
        assert not any(marker in json.dumps(value) for marker in ADMIN_MARKERS), (name, value)
    # The player and the SCO share the content origin (the SCO finds window.API there), and nothing else does.
    assert report["parent_origin"] == report["top_origin"] == cluster.content_url, report
    assert not any(marker in report["top_html"] for marker in ADMIN_MARKERS)
    assert cluster.gateway_url not in report["top_html"]
    assert report["opener"] is None, report["opener"]
    assert report["cookie"] == "" and report["local_storage"] == [], report
    assert not any(victim in entry["body"] for name, entry in report.items() if name.startswith("here_"))


async def keys_of(cluster: Cluster, slug: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """A tenant's keys (id, name, scopes), through the admin API."""
    status, body = await cluster.admin("GET", f"/tenants/{slug}/api-keys?limit=100")
    assert status == 200, body
    return [(k["id"], k["name"], tuple(k["scopes"])) for k in body["data"]]


async def still_signed_in(context: BrowserContext, cluster: Cluster, slug: str) -> None:
    page = await context.new_page()
    await page.goto(cluster.gateway_url + f"/admin/api-keys?tenant={slug}")
    await expect(page.get_by_role("heading", name="Create a key")).to_be_visible()
    await page.close()


async def test_a_hostile_package_previewed_and_launched_reaches_nothing_outside_the_content_origin(
        ui_cluster: Cluster, page: Page, tmp_path: Path) -> None:
    cluster = ui_cluster
    attacker = unique_slug("attacker")
    victim = unique_slug("victim")
    key = await cluster.tenant_with_key(attacker)
    await cluster.tenant_with_key(victim)
    keys_before = {slug: await keys_of(cluster, slug) for slug in (attacker, victim)}
    package = await cluster.upload_scorm(
        attacker, hostile_package(tmp_path / "hostile.zip", cluster.gateway_url, victim), title="Free golf lessons")
    assert package["status"] == "ready", package

    # An operator, signed in to the admin UI, previews the package.
    await sign_in(page, cluster, f"/admin/learn/scorm/{package['id']}?tenant={attacker}")
    await expect(page.get_by_role("heading", name="Free golf lessons", level=1)).to_be_visible()
    async with page.context.expect_page() as opened:
        await page.get_by_role("button", name=re.compile("Preview")).click()
    preview = await opened.value
    await expect(preview).to_have_url(re.compile("^" + re.escape(cluster.content_url) + "/learn/player/"))
    previewed = await run_probe(preview)
    await shoot(preview, "sec-hostile-package-preview")
    assert_contained(previewed, cluster, victim)
    assert previewed["runtime"] == ["true", "true", "true", "true"], previewed["runtime"]  # its own runtime works
    await preview.close()

    # A learner launches it, in the same browser (the worst case: an operator who is also a learner).
    course, (activity,) = await cluster.course(key, attacker, unique_slug("golf"), [
        {"title": "Lesson one", "kind": "scorm", "required": True, "scorm_package_id": package["id"],
         "sco_identifier": "lesson"}], publish=False)

    async def published() -> bool:  # once the catalog has heard that the package is ready
        status, body = await cluster.api(key, "POST", f"/courses/{course['id']}/publish")
        assert status in (200, 400), body
        return status == 200

    await cluster.eventually(published, message="the course with the hostile SCO published")
    await cluster.user(attacker, 501, "Lee Learner")
    enrollment = await cluster.enroll(key, 501, course["id"])
    launch = await cluster.launch(key, enrollment["id"], activity["id"])
    assert launch["launch_url"].startswith(cluster.content_url + "/learn/player/"), launch
    learner = await page.context.new_page()
    await learner.goto(launch["launch_url"])
    launched = await run_probe(learner)
    assert_contained(launched, cluster, victim)
    assert launched["runtime"] == ["true", "true", "true", "true"], launched["runtime"]
    await learner.close()

    # No key was minted, for the victim or anyone; the operator's session is intact; the SCO's own commit counted.
    for slug, before in keys_before.items():
        after = await keys_of(cluster, slug)
        assert after == before, (slug, after)
        assert not any("pwned" in name for _, name, _ in after)
    await still_signed_in(page.context, cluster, victim)

    async def attempt_scored() -> dict[str, Any] | None:
        status, body = await cluster.api(key, "GET", f"/attempts?enrollment_id={enrollment['id']}")
        assert status == 200, body
        done = [a for a in body["data"] if a.get("score_raw") is not None]
        return done[0] if done else None

    scored = await cluster.eventually(attempt_scored, message="the learner's attempt with the SCO's score")
    assert float(scored["score_raw"]) == 97
