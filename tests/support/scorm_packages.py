"""SCORM packages for the tests: the fixture folder in the repository, and packages built here.

- ``FIXTURES``: ``tests/fixtures/scorm`` (real packages, ``SOURCES.md`` says where each came from and what it
  must give). The suite needs nothing else; ``LEARN_SCORM_FIXTURES_DIR`` may name an *extra* folder of packages
  (``extra_packages()``), which only adds cases.
- ``debug_package(standard, **scenario)``: our debug SCO (``tests/fixtures/scorm/debug_sco``) zipped with its 1.2 or
  2004 manifest; the scenario becomes the item's ``parameters``, so the SCO plays it when launched.
- ``nested_quirks_package()``: a SCORM 1.2 package with the manifest quirks real exports have (an unresolvable
  default organization, items three levels deep, an invisible item, an AICC prerequisite, one resource shared by
  seven items, an asset item with the SCO's href, a metadata file that is absent, Mac junk in the zip).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "scorm"
DEBUG_SCO = FIXTURES / "debug_sco"
EXTRA_FIXTURES_ENV = "LEARN_SCORM_FIXTURES_DIR"


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def debug_sco_files() -> dict[str, bytes]:
    return {name: (DEBUG_SCO / name).read_bytes() for name in ("index.html", "debug_sco.js")}


def debug_manifest(standard: str, parameters: str = "", title: str | None = None) -> bytes:
    if standard not in ("1.2", "2004"):
        raise ValueError(f"standard must be '1.2' or '2004', not {standard!r}")
    manifest = (DEBUG_SCO / f"imsmanifest_{standard.replace('.', '')}.xml").read_text(encoding="utf-8")
    item = '<item identifier="debug_item" identifierref="debug_resource">'
    assert manifest.count(item) == 1
    if parameters:
        manifest = manifest.replace(item, item[:-1] + f" parameters={quoteattr(parameters)}>")
    if title is not None:
        organization_title = f"<title>Debug SCO (SCORM {standard})</title>"
        manifest = manifest.replace(organization_title, f"<title>{title}</title>")
    return manifest.encode()


def debug_package(standard: str, *, title: str | None = None, **scenario: object) -> bytes:
    """The debug SCO as a package of ``standard`` whose launch plays ``scenario`` (its URL parameters, see
    ``tests/fixtures/scorm/debug_sco/README.md``): ``debug_package("2004", status="passed", score=0.9)``."""
    query = urlencode({"standard": standard, **{name: str(value) for name, value in scenario.items()}})
    return zip_bytes({"imsmanifest.xml": debug_manifest(standard, "?" + query, title), **debug_sco_files()})


NESTED_QUIRKS_MANIFEST = b"""<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier="quirks_manifest" version="1"
          xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <metadata>
    <schema>ADL SCORM</schema>
    <schemaversion>1.2</schemaversion>
    <adlcp:location>imslrm.xml</adlcp:location>
  </metadata>
  <organizations default="quirks_org">
    <organization identifier="mm-quirks_org" structure="hierarchical">
      <title>Nested quirks</title>
      <item identifier="sco_first" isvisible="true" identifierref="res_sco">
        <title>First SCO</title>
      </item>
      <item identifier="sco_second" isvisible="true" identifierref="res_sco">
        <title>Second SCO</title>
      </item>
      <item identifier="asset_third" isvisible="true" identifierref="res_asset">
        <title>Third content (an asset)</title>
      </item>
      <item identifier="sco_parent" isvisible="true" identifierref="res_sco">
        <title>SCO with sub-SCOs</title>
        <item identifier="sco_child" isvisible="true" identifierref="res_sco">
          <title>Sub-SCO</title>
          <item identifier="sco_grandchild" isvisible="true" identifierref="res_sco">
            <title>Sub-sub-SCO</title>
          </item>
        </item>
      </item>
      <item identifier="sco_hidden" isvisible="false" identifierref="res_sco">
        <title>Invisible SCO</title>
      </item>
      <item identifier="sco_prerequisite" isvisible="true" identifierref="res_sco">
        <title>SCO after the first two</title>
        <adlcp:prerequisites type="aicc_script">sco_first &amp; sco_second</adlcp:prerequisites>
      </item>
    </organization>
  </organizations>
  <resources>
    <resource identifier="res_sco" type="webcontent" adlcp:scormtype="sco" href="index.html">
      <file href="index.html"/>
      <file href="debug_sco.js"/>
    </resource>
    <resource identifier="res_asset" type="webcontent" adlcp:scormtype="asset" href="index.html">
      <file href="index.html"/>
    </resource>
  </resources>
</manifest>
"""

#: identifier -> (title, parent) of the SCOs of ``nested_quirks_package()``, in document order.
NESTED_QUIRKS_SCOS = {
    "sco_first": ("First SCO", None),
    "sco_second": ("Second SCO", None),
    "sco_parent": ("SCO with sub-SCOs", None),
    "sco_child": ("Sub-SCO", "sco_parent"),
    "sco_grandchild": ("Sub-sub-SCO", "sco_child"),
    "sco_hidden": ("Invisible SCO", None),
    "sco_prerequisite": ("SCO after the first two", None),
}
MAC_JUNK = ("__MACOSX/._imsmanifest.xml", "__MACOSX/._index.html", ".DS_Store", "images/.DS_Store",
            "__MACOSX/images/._logo.png")


def nested_quirks_package() -> bytes:
    """A SCORM 1.2 package whose manifest has real exports' quirks; its SCO is the debug SCO. Its metadata file
    ``imslrm.xml`` is referenced but absent, and the zip carries ``__MACOSX/`` and ``.DS_Store`` junk."""
    return zip_bytes({
        "imsmanifest.xml": NESTED_QUIRKS_MANIFEST,
        **debug_sco_files(),
        "images/logo.png": b"\x89PNG\r\n\x1a\n" + bytes(64),
        **{name: b"\x00\x05\x16\x07 Mac OS X junk" for name in MAC_JUNK},
    })


def extra_packages() -> list[Path]:
    """The zips of the optional extra folder ``LEARN_SCORM_FIXTURES_DIR`` (none when it is unset)."""
    folder = os.environ.get(EXTRA_FIXTURES_ENV)
    if not folder:
        return []
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise RuntimeError(f"{EXTRA_FIXTURES_ENV}={folder} is not a folder")
    return sorted(root.rglob("*.zip"))
