"""parse_manifest: the real packages of tests/fixtures/scorm/SOURCES.md, a built package with real exports'
quirks, then each rule on a small hand-written manifest."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from services.scorm.manifest.parse import Manifest, ManifestError, join_parameters, parse_manifest
from tests.support.scorm_packages import (
    NESTED_QUIRKS_MANIFEST,
    NESTED_QUIRKS_SCOS,
    debug_manifest,
    nested_quirks_package,
)


def manifest_of(fixtures: Path, name: str) -> Manifest:
    with zipfile.ZipFile(fixtures / name) as archive:
        return parse_manifest(archive.read("imsmanifest.xml"))


def sco(manifest: Manifest, identifier: str):
    return next(s for s in manifest.scos if s.identifier == identifier)


def item(manifest: Manifest, identifier: str):
    return next(i for i in manifest.items if i.identifier == identifier)


# --- the real packages --------------------------------------------------------------------------------------------

MAIN_PACKAGES = [
    # zip, version, SCOs, items, title
    ("golf_scorm12_singlesco.zip", "1.2", 1, 1, "Golf Explained - CP Single SCO"),
    ("golf_scorm12_multisco_runtime_minimum.zip", "1.2", 18, 22, "Golf Explained - Minimum Run-time Calls"),
    ("golf_scorm2004_2nd_singlesco.zip", "2004-2nd", 1, 1, "Golf Explained - CP Single SCO"),
    ("golf_scorm2004_3rd_onefilepersco_assets_only.zip", "2004-3rd", 0, 22, "Golf Explained - CP One File Per SCO"),
    ("golf_scorm2004_3rd_runtime_advanced.zip", "2004-3rd", 1, 1, "Golf Explained - Run-time Advanced Calls"),
    ("golf_scorm2004_4th_sequencing_posttest_rollup.zip", "2004-4th", 5, 5, "Golf Explained - 4th Edition Features"),
    ("adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip", "2004-4th", 11, 18, "LMS Test Content Package CM-07d"),
]


@pytest.mark.parametrize(("name", "version", "sco_count", "item_count", "title"), MAIN_PACKAGES)
def test_main_package_version_counts_and_title(
    scorm_fixtures_dir: Path, name: str, version: str, sco_count: int, item_count: int, title: str
) -> None:
    manifest = manifest_of(scorm_fixtures_dir, name)

    assert manifest.scorm_version == version
    assert len(manifest.scos) == sco_count
    assert len(manifest.items) == item_count
    assert manifest.title == title


def test_single_sco_launches_its_resource_href(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "golf_scorm12_singlesco.zip")

    only = manifest.scos[0]
    assert (only.identifier, only.title, only.launch_url) == ("item_1", "Golf Explained", "shared/launchpage.html")
    assert (only.position, only.parent_identifier, only.resource_identifier) == (0, None, "resource_1")
    assert manifest.organization_identifier == "golf_sample_default_org"


def test_multisco_leaves_hang_under_cluster_items_in_document_order(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "golf_scorm12_multisco_runtime_minimum.zip")

    clusters = [i for i in manifest.items if i.resource_identifier is None]
    assert [c.identifier for c in clusters] == ["playing_item", "etiquette_item", "handicapping_item", "havingfun_item"]
    assert all(not c.is_sco and c.launch_url is None and c.parent_identifier is None for c in clusters)
    assert [i.position for i in manifest.items] == list(range(22))
    par = sco(manifest, "playing_par_item")
    assert (par.position, par.parent_identifier, par.launch_url) == (2, "playing_item", "Playing/Par.html")


def test_multisco_quiz_parameters_are_joined_to_the_shared_template(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "golf_scorm12_multisco_runtime_minimum.zip")

    quiz = sco(manifest, "etiquette_quiz_item")
    assert quiz.parameters == "?questions=Etiquette"
    assert quiz.launch_url == "shared/assessmenttemplate.html?questions=Etiquette"
    assert quiz.parent_identifier == "etiquette_item"
    assert manifest.assets == ["common_files"]


# --- the built package with real exports' quirks (tests/support/scorm_packages.py) -------------------------------


def quirks() -> Manifest:
    with zipfile.ZipFile(io.BytesIO(nested_quirks_package())) as archive:
        return parse_manifest(archive.read("imsmanifest.xml"))


def test_quirks_package_version_counts_and_title() -> None:
    manifest = quirks()

    assert (manifest.scorm_version, len(manifest.scos), len(manifest.items)) == ("1.2", 7, 8)
    assert manifest.title == "Nested quirks"
    assert [(s.identifier, s.title, s.parent_identifier) for s in manifest.scos] == [
        (identifier, title, parent) for identifier, (title, parent) in NESTED_QUIRKS_SCOS.items()]


def test_unresolvable_default_organization_falls_back_to_the_first_with_a_warning() -> None:
    manifest = quirks()

    assert b'<organizations default="quirks_org">' in NESTED_QUIRKS_MANIFEST
    assert manifest.organization_identifier == "mm-quirks_org"
    assert any("organizations/@default" in warning for warning in manifest.warnings)


def test_nested_items_three_levels_deep_record_their_parents() -> None:
    manifest = quirks()

    sub_sub = sco(manifest, "sco_grandchild")
    assert (sub_sub.title, sub_sub.parent_identifier, sub_sub.position) == ("Sub-sub-SCO", "sco_child", 5)
    assert sco(manifest, "sco_child").parent_identifier == "sco_parent"
    assert sco(manifest, "sco_parent").parent_identifier is None
    assert {s.launch_url for s in manifest.scos} == {"index.html"}
    assert {s.resource_identifier for s in manifest.scos} == {"res_sco"}  # seven items, one resource


def test_an_invisible_item_and_one_with_an_aicc_prerequisite_are_still_scos() -> None:
    manifest = quirks()

    assert sco(manifest, "sco_hidden").title == "Invisible SCO"
    assert sco(manifest, "sco_prerequisite").position == 7


def test_an_item_on_an_asset_is_an_item_but_not_a_sco() -> None:
    manifest = quirks()

    asset_item = item(manifest, "asset_third")
    assert (asset_item.is_sco, asset_item.launch_url) == (False, "index.html")  # the SCO's href, as an asset
    assert manifest.assets == ["res_asset"]
    assert "imslrm.xml" in manifest.referenced_files  # the metadata location, absent from the zip


@pytest.mark.parametrize("standard", ["1.2", "2004"])
def test_the_debug_sco_manifests_give_one_sco_with_its_parameters(standard: str) -> None:
    manifest = parse_manifest(debug_manifest(standard, "?standard=2004&status=passed&suspend=a%26b"))

    assert manifest.scorm_version == {"1.2": "1.2", "2004": "2004-4th"}[standard]
    (only,) = manifest.scos
    assert (only.identifier, only.launch_url) == ("debug_item", "index.html?standard=2004&status=passed&suspend=a%26b")
    assert manifest.referenced_files == ["index.html", "debug_sco.js"]
    assert manifest.warnings == []


def test_cam_1_3_schemaversion_is_2004_second_edition(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "golf_scorm2004_2nd_singlesco.zip")

    assert manifest.scorm_version == "2004-2nd"
    assert manifest.scos[0].launch_url == "shared/launchpage.html"


def test_asset_only_package_has_items_with_launch_urls_and_no_scos(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "golf_scorm2004_3rd_onefilepersco_assets_only.zip")

    leaves = [i for i in manifest.items if i.resource_identifier is not None]
    assert len(leaves) == 18
    assert not any(i.is_sco for i in manifest.items)
    assert item(manifest, "havingfun_quiz_item").launch_url == "shared/assessmenttemplate.html?questions=HavingFun"
    assert len(manifest.assets) == 19


def test_primary_objective_satisfied_by_measure_gives_the_passing_score(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "golf_scorm2004_3rd_runtime_advanced.zip")

    assert manifest.scos[0].passing_score_scaled == 0.8
    assert manifest.scos[0].mastery_score is None


def test_href_with_a_query_string_launches_as_written(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "golf_scorm2004_4th_sequencing_posttest_rollup.zip")

    contents = ("playing", "etiquette", "handicapping", "havingfun", "assessment")
    assert [s.launch_url for s in manifest.scos] == [f"shared/launchpage.html?content={c}" for c in contents]
    assert all(s.passing_score_scaled is None for s in manifest.scos)


def test_resource_xml_base_prefixes_the_launch_url_and_the_files(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip")

    assert sco(manifest, "activity_2").launch_url == "resources/SequencingTest.htm?tc=CM-07d&act=2"
    assert sco(manifest, "activity_2").parameters == "?tc=CM-07d&act=2"
    assert "common/LMSTest.jar" in manifest.referenced_files  # JAR01 has xml:base="common/"
    assert "resources/SequencingTest.htm" in manifest.referenced_files


def test_items_four_levels_deep_keep_their_chain_of_parents(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip")
    parents = {i.identifier: i.parent_identifier for i in manifest.items}

    assert parents["activity_13"] == "activity_12"
    assert parents["activity_12"] == "activity_11"
    assert parents["activity_11"] == "activity_9"
    assert parents["activity_9"] is None
    assert sco(manifest, "activity_13").position == 12


# --- the edge packages ---------------------------------------------------------------------------------------------


def test_missing_organization_makes_each_sco_resource_a_sco(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "edge/moodle_singlescobasic_missingorg.zip")

    assert manifest.items == []
    assert [(s.identifier, s.launch_url) for s in manifest.scos] == [("resource_1", "sso/launchpage.html")]
    assert manifest.organization_identifier is None
    assert manifest.title == "com.scorm.golfsamples.runtime.basicruntime.12"
    assert any("no <organization>" in warning for warning in manifest.warnings)


def test_scorm12_mastery_scores_are_read(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "edge/emp_scorm12_prerequisites_masteryscore.zip")

    assert [s.mastery_score for s in manifest.scos] == [80.0, None, None, 90.0]


def test_no_schemaversion_falls_back_to_the_2004_namespaces(scorm_fixtures_dir: Path) -> None:
    manifest = manifest_of(scorm_fixtures_dir, "edge/emp_scorm2004_no_schemaversion.zip")

    assert manifest.scorm_version == "2004-3rd"
    assert len(manifest.scos) == 1
    assert any("no metadata/schemaversion" in warning for warning in manifest.warnings)


def test_item_pointing_to_a_missing_resource_is_an_error(scorm_fixtures_dir: Path) -> None:
    with pytest.raises(ManifestError, match="item 'item_1' refers to resource 'non_existent_resource'"):
        manifest_of(scorm_fixtures_dir, "edge/emp_scorm12_item_missing_resource.zip")


@pytest.mark.parametrize(
    "name", ["edge/emp_scorm12_malformed_xml.zip", "edge/moodle_validscorm_manifest_decl_only.zip"]
)
def test_xml_that_is_not_well_formed_is_an_error_with_its_position(scorm_fixtures_dir: Path, name: str) -> None:
    with pytest.raises(ManifestError, match=r"not well-formed XML \(.*line \d+"):
        manifest_of(scorm_fixtures_dir, name)


# --- rules on small manifests ----------------------------------------------------------------------------------

CP12 = 'xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2" xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2"'
CP2004 = 'xmlns="http://www.imsglobal.org/xsd/imscp_v1p1" xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_v1p3"'
IMSSS = 'xmlns:imsss="http://www.imsglobal.org/xsd/imsss"'


def build(
    items: str = '<item identifier="i1" identifierref="r1"><title>One</title></item>',
    resources: str = '<resource identifier="r1" type="webcontent" adlcp:scormtype="sco" href="index.html"/>',
    namespaces: str = CP12,
    schemaversion: str | None = "1.2",
    manifest_attributes: str = "",
    resources_attributes: str = "",
    extra: str = "",
    organization_title: str = "<title>Course</title>",
) -> bytes:
    metadata = f"<metadata><schemaversion>{schemaversion}</schemaversion></metadata>" if schemaversion else ""
    return (
        f'<?xml version="1.0"?>\n<manifest identifier="m1" {namespaces} {IMSSS} {manifest_attributes}>'
        f'{metadata}<organizations default="o1"><organization identifier="o1">{organization_title}{items}'
        f"</organization></organizations><resources {resources_attributes}>{resources}</resources>{extra}</manifest>"
    ).encode()


@pytest.mark.parametrize(
    ("declared", "version"),
    [("1.2", "1.2"), ("CAM 1.3", "2004-2nd"), ("2004 3rd Edition", "2004-3rd"), ("2004 4th Edition", "2004-4th"),
     ("  2004   4th   Edition ", "2004-4th")],
)
def test_schemaversion_names_the_version(declared: str, version: str) -> None:
    assert parse_manifest(build(schemaversion=declared)).scorm_version == version


@pytest.mark.parametrize(
    ("namespaces", "extra_item", "version"),
    [
        (CP12, "", "1.2"),
        (CP2004, "", "2004-3rd"),
        (CP2004, '<adlcp:data><adlcp:map targetID="notes"/></adlcp:data>', "2004-4th"),
        (CP2004, '<adlcp:completionThreshold progressWeight="0.5"/>', "2004-4th"),
    ],
)
def test_without_schemaversion_the_namespaces_decide(namespaces: str, extra_item: str, version: str) -> None:
    items = f'<item identifier="i1" identifierref="r1"><title>One</title>{extra_item}</item>'

    manifest = parse_manifest(build(items=items, namespaces=namespaces, schemaversion=None))

    assert manifest.scorm_version == version
    assert manifest.warnings


def test_an_unknown_schemaversion_falls_back_to_the_namespaces_with_a_warning() -> None:
    manifest = parse_manifest(build(schemaversion="SCORM 1.2 for real"))

    assert manifest.scorm_version == "1.2"
    assert any("'SCORM 1.2 for real'" in warning for warning in manifest.warnings)


def test_no_schemaversion_and_no_scorm_namespace_is_an_error() -> None:
    xml = build(namespaces='xmlns:adlcp="urn:other"', schemaversion=None)

    with pytest.raises(ManifestError, match="cannot tell which SCORM version"):
        parse_manifest(xml)


@pytest.mark.parametrize("attribute", ['adlcp:scormtype="SCO"', 'adlcp:scormType="sco"', 'adlcp:SCORMTYPE=" Sco "'])
def test_scorm_type_is_read_case_insensitively(attribute: str) -> None:
    resources = f'<resource identifier="r1" type="webcontent" {attribute} href="index.html"/>'

    assert len(parse_manifest(build(resources=resources)).scos) == 1


def test_a_resource_without_scorm_type_is_an_asset_with_a_warning() -> None:
    manifest = parse_manifest(build(resources='<resource identifier="r1" type="webcontent" href="index.html"/>'))

    assert manifest.scos == []
    assert manifest.assets == ["r1"]
    assert any("treated as an asset" in warning for warning in manifest.warnings)


def test_xml_base_of_manifest_resources_and_resource_compose() -> None:
    resources = (
        '<resource identifier="r1" type="webcontent" adlcp:scormtype="sco" href="start.html" xml:base="sco1">'
        '<file href="start.html"/></resource>'
    )
    xml = build(resources=resources, manifest_attributes='xml:base="content/"', resources_attributes='xml:base="v2/"')

    manifest = parse_manifest(xml)

    assert manifest.scos[0].launch_url == "content/v2/sco1/start.html"
    assert manifest.referenced_files == ["content/v2/sco1/start.html"]


def test_launch_path_is_normalised() -> None:
    resources = '<resource identifier="r1" adlcp:scormtype="sco" href="./a/../b/index.html?x=1#top"/>'

    assert parse_manifest(build(resources=resources)).scos[0].launch_url == "b/index.html?x=1#top"


@pytest.mark.parametrize(
    "href",
    ["../../etc/passwd", "a/../../outside.html", "/etc/passwd", "http://evil.example/x.html", "%2e%2e/x.html",
     "C:/x.html", "a\\..\\..\\x.html", "//evil.example/x.html"],
)
def test_a_launch_path_outside_the_package_is_an_error(href: str) -> None:
    resources = f'<resource identifier="r1" adlcp:scormtype="sco" href="{href}"/>'

    with pytest.raises(ManifestError, match="resource 'r1' launches"):
        parse_manifest(build(resources=resources))


def test_xml_base_cannot_lead_a_launch_path_outside_the_package() -> None:
    resources = '<resource identifier="r1" adlcp:scormtype="sco" href="x.html" xml:base="../../"/>'

    with pytest.raises(ManifestError, match="not a file inside the package"):
        parse_manifest(build(resources=resources))


def test_a_file_href_outside_the_package_is_only_a_warning() -> None:
    resources = (
        '<resource identifier="r1" adlcp:scormtype="sco" href="index.html">'
        '<file href="index.html"/><file href="../../etc/passwd"/></resource>'
    )

    manifest = parse_manifest(build(resources=resources))

    assert manifest.referenced_files == ["index.html"]
    assert any("etc/passwd" in warning for warning in manifest.warnings)


@pytest.mark.parametrize(
    ("href", "parameters", "url"),
    [
        ("a.html", "?x=1", "a.html?x=1"),
        ("a.html", "x=1", "a.html?x=1"),
        ("a.html", "&x=1", "a.html?x=1"),
        ("a.html", "??&&x=1&y=2", "a.html?x=1&y=2"),
        ("a.html?p=0", "?x=1", "a.html?p=0&x=1"),
        ("a.html", "#chapter2", "a.html#chapter2"),
        ("a.html?p=0", "#chapter2", "a.html?p=0#chapter2"),
        ("a.html#top", "?x=1", "a.html?x=1#top"),
        ("a.html", "", "a.html"),
        ("a.html", None, "a.html"),
    ],
)
def test_parameters_are_joined_by_the_cam_rules(href: str, parameters: str | None, url: str) -> None:
    assert join_parameters(href, parameters) == url


def test_item_parameters_reach_the_sco_launch_url() -> None:
    items = '<item identifier="i1" identifierref="r1" parameters="&amp;page=3"><title>One</title></item>'
    resources = '<resource identifier="r1" adlcp:scormtype="sco" href="index.html?lang=en"/>'

    only = parse_manifest(build(items=items, resources=resources)).scos[0]

    assert (only.parameters, only.launch_url) == ("&page=3", "index.html?lang=en&page=3")


def test_items_nested_thousands_deep_are_walked_without_recursion() -> None:
    depth = 5000
    opening = "".join(f'<item identifier="i{n}"><title>Level {n}</title>' for n in range(depth))
    leaf = '<item identifier="leaf" identifierref="r1"><title>Leaf</title></item>'

    manifest = parse_manifest(build(items=opening + leaf + "</item>" * depth))

    assert len(manifest.items) == depth + 1
    assert manifest.scos[0].parent_identifier == f"i{depth - 1}"
    assert manifest.scos[0].position == depth


def test_duplicate_item_identifiers_are_an_error() -> None:
    items = (
        '<item identifier="i1" identifierref="r1"><title>A</title></item>'
        '<item identifier="i1" identifierref="r1"><title>B</title></item>'
    )

    with pytest.raises(ManifestError, match="two items share the identifier 'i1'"):
        parse_manifest(build(items=items))


def test_title_falls_back_to_the_first_item_title() -> None:
    assert parse_manifest(build(organization_title="")).title == "One"


@pytest.mark.parametrize("score", ["150", "-1", "eighty"])
def test_a_mastery_score_outside_0_to_100_is_ignored_with_a_warning(score: str) -> None:
    mastery = f"<adlcp:masteryscore>{score}</adlcp:masteryscore>"
    items = f'<item identifier="i1" identifierref="r1"><title>A</title>{mastery}</item>'

    manifest = parse_manifest(build(items=items))

    assert manifest.scos[0].mastery_score is None
    assert any("masteryscore" in warning for warning in manifest.warnings)


def sequenced_item(sequencing: str) -> str:
    return f'<item identifier="i1" identifierref="r1"><title>A</title>{sequencing}</item>'


SCO_2004 = '<resource identifier="r1" adlcp:scormType="sco" href="index.html"/>'


@pytest.mark.parametrize(
    ("sequencing", "passing"),
    [
        ('<imsss:sequencing><imsss:objectives><imsss:primaryObjective satisfiedByMeasure="true">'
         "<imsss:minNormalizedMeasure>0.65</imsss:minNormalizedMeasure></imsss:primaryObjective>"
         "</imsss:objectives></imsss:sequencing>", 0.65),
        ('<imsss:sequencing><imsss:objectives><imsss:primaryObjective satisfiedByMeasure="true"/>'
         "</imsss:objectives></imsss:sequencing>", 1.0),
        ('<imsss:sequencing><imsss:objectives><imsss:primaryObjective satisfiedByMeasure="false">'
         "<imsss:minNormalizedMeasure>0.65</imsss:minNormalizedMeasure></imsss:primaryObjective>"
         "</imsss:objectives></imsss:sequencing>", None),
        ("", None),
    ],
)
def test_passing_score_comes_from_a_primary_objective_satisfied_by_measure(sequencing: str, passing) -> None:
    xml = build(
        items=sequenced_item(sequencing), resources=SCO_2004, namespaces=CP2004, schemaversion="2004 3rd Edition"
    )

    assert parse_manifest(xml).scos[0].passing_score_scaled == passing


def test_passing_score_can_come_from_the_sequencing_collection() -> None:
    collection = (
        '<imsss:sequencingCollection><imsss:sequencing ID="shared"><imsss:objectives>'
        '<imsss:primaryObjective satisfiedByMeasure="true"><imsss:minNormalizedMeasure>0.7</imsss:minNormalizedMeasure>'
        "</imsss:primaryObjective></imsss:objectives></imsss:sequencing></imsss:sequencingCollection>"
    )
    xml = build(
        items=sequenced_item('<imsss:sequencing IDRef="shared"/>'), resources=SCO_2004, namespaces=CP2004,
        schemaversion="2004 4th Edition", extra=collection,
    )

    assert parse_manifest(xml).scos[0].passing_score_scaled == 0.7


# --- hostile XML -------------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10 if n > 1 else "&lol;" * 10}">'.encode()
               for n in range(1, 10))
    + b"]><manifest>&lol9;</manifest>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE manifest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<manifest identifier="m"><metadata><schemaversion>&xxe;</schemaversion></metadata></manifest>'
)
PLAIN_DOCTYPE = b'<?xml version="1.0"?><!DOCTYPE manifest SYSTEM "manifest.dtd"><manifest identifier="m"/>'


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE, PLAIN_DOCTYPE], ids=["billion-laughs", "xxe", "doctype"])
def test_any_doctype_is_refused(xml: bytes) -> None:
    with pytest.raises(ManifestError, match="DOCTYPE"):
        parse_manifest(xml)


def test_an_oversized_manifest_is_refused_before_parsing() -> None:
    with pytest.raises(ManifestError, match="over the 1,000-byte limit"):
        parse_manifest(b"<manifest>" + b" " * 1000 + b"</manifest>", max_bytes=1000)


def test_a_root_element_other_than_manifest_is_refused() -> None:
    with pytest.raises(ManifestError, match="not <manifest>"):
        parse_manifest(b"<html><body/></html>")


# --- real packages' quirks (issue 20) ---------------------------------------------------------------------------

_QUIRK_MANIFEST = """<?xml version="1.0"?>
<manifest identifier="{ident}" xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <metadata><schemaversion>1.2</schemaversion></metadata>
  <organizations default="o1"><organization identifier="o1">{org_title}
    <item identifier="first_item" identifierref="r1">{item_title}</item>
  </organization></organizations>
  <resources><resource identifier="r1" type="webcontent" adlcp:scormtype="sco" href="index.html">
    <file href="index.html"/>{files}</resource></resources>
</manifest>"""


def quirk_manifest(ident: str = "MANIFEST-1", org_title: str = "", item_title: str = "", files: str = "") -> bytes:
    return _QUIRK_MANIFEST.format(ident=ident, org_title=org_title, item_title=item_title, files=files).encode()


def test_the_title_falls_back_to_the_first_items_title_then_the_manifest_identifier() -> None:
    assert parse_manifest(quirk_manifest(org_title="<title>Org</title>", item_title="<title>It</title>")
                          ).title == "Org"
    assert parse_manifest(quirk_manifest(item_title="<title>It</title>")).title == "It"
    # every title empty: the manifest identifier, as docs/scorm-import.md says (not the first item's identifier)
    assert parse_manifest(quirk_manifest(item_title="<title>  </title>")).title == "MANIFEST-1"
    assert parse_manifest(quirk_manifest(ident="")).title == "Untitled package"


def test_windows_paths_in_the_manifest_are_one_summary_warning() -> None:
    files = "".join(f'<file href="C:\\Users\\author\\course\\img{i}.png"/>' for i in range(151))
    manifest = parse_manifest(quirk_manifest(files=files + '<file href="..\\up.png"/>'))
    windows = [w for w in manifest.warnings if "Windows path" in w]
    assert windows == ["152 files named with a Windows path, e.g. 'C:\\Users\\author\\course\\img0.png' (a path "
                       "on the author's computer, not in the package); ignored"]
    assert len(manifest.warnings) == 1


def test_repeated_warnings_are_summarised() -> None:
    from services.scorm.manifest.zip_safety import summarise_warnings

    many = [f"imsmanifest.xml names 'img/{i}.png', which is not in the zip" for i in range(40)]
    assert summarise_warnings(["first", *many, "last"]) == [
        "first", "40 warnings like this one: imsmanifest.xml names 'img/0.png', which is not in the zip", "last"]
    assert summarise_warnings(many[:3]) == many[:3]
