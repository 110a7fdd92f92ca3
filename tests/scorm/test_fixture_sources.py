"""tests/fixtures/scorm stays what SOURCES.md says: every package is described and unchanged, and the licence
files it points to are there."""

from __future__ import annotations

import hashlib
import re

from tests.support.scorm_packages import FIXTURES

SOURCES = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")


def test_every_package_is_described_in_sources_md() -> None:
    on_disk = {path.relative_to(FIXTURES).name for path in FIXTURES.rglob("*.zip")}

    assert on_disk
    assert {name for name in on_disk if f"`{name}`" not in SOURCES} == set()


def test_every_package_is_byte_for_byte_the_one_recorded() -> None:
    recorded = dict(
        reversed(line.split(maxsplit=1))
        for line in (FIXTURES / "SHA256SUMS").read_text().splitlines()
        if line.strip()
    )
    on_disk = {str(path.relative_to(FIXTURES)): hashlib.sha256(path.read_bytes()).hexdigest()
               for path in FIXTURES.rglob("*.zip")}

    assert on_disk == recorded


def test_the_licence_files_sources_md_links_to_exist() -> None:
    linked = set(re.findall(r"\]\(((?:licenses|debug_sco)/[^)]*)\)", SOURCES))

    assert {"licenses/Apache-2.0.txt", "licenses/GPL-3.0.txt", "licenses/CC-BY-3.0-ATTRIBUTION.md"} <= linked
    assert [link for link in linked if not (FIXTURES / link).exists()] == []


def test_the_unlicensed_debugger_is_not_in_the_repository() -> None:
    assert not list(FIXTURES.rglob("*complexscorm*"))
