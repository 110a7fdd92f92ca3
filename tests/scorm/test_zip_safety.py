"""import_package: real packages import, edge packages end as SOURCES.md says, hostile zips are refused fast,
without writing anything outside the destination and with bounded memory."""

from __future__ import annotations

import hashlib
import io
import random
import stat
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.scorm.manifest.zip_safety import ImportLimits, PackageRejected, check_package, import_package
from shared.blobstore import DatabaseBlobStore, FilesystemBlobStore
from tests.support.scorm_packages import MAC_JUNK, extra_packages, nested_quirks_package

MANIFEST = b"""<?xml version="1.0"?>
<manifest identifier="m1" xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <metadata><schemaversion>1.2</schemaversion></metadata>
  <organizations default="o1"><organization identifier="o1"><title>Course</title>
    <item identifier="i1" identifierref="r1"><title>One</title></item>
  </organization></organizations>
  <resources><resource identifier="r1" type="webcontent" adlcp:scormtype="sco" href="index.html">
    <file href="index.html"/></resource></resources>
</manifest>"""
MiB = 1024 * 1024
PEAK_MEMORY_BUDGET = 16 * MiB
REFUSAL_SECONDS = 5.0


# --- building zips ------------------------------------------------------------------------------------------------


def make_zip(path: Path, entries: dict[str, bytes] | Iterable[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return path


def with_manifest(**files: bytes) -> dict[str, bytes]:
    return {"imsmanifest.xml": MANIFEST, "index.html": b"<html>hi</html>", **files}


def entry_info(name: str, *, mode: int | None = None, method: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("placeholder", date_time=(2024, 1, 1, 0, 0, 0))
    info.filename = name  # set after construction: ZipInfo() would cut a NUL and would not keep odd names
    info.orig_filename = name
    info.compress_type = method
    if mode is not None:
        info.external_attr = mode << 16
        info.create_system = 3
    return info


@dataclass
class RawEntry:
    """A zip entry written byte by byte, so the headers can say what the test wants (including lies)."""

    name: bytes
    pieces: Iterable[bytes]
    crc: int
    compress_size: int
    file_size: int
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0
    aliases: list[bytes] = field(default_factory=list)  # more central records pointing at the same data


def write_raw_zip(path: Path, entries: list[RawEntry]) -> Path:
    central: list[tuple[RawEntry, bytes, int]] = []
    with path.open("wb") as out:
        for entry in entries:
            offset = out.tell()
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, entry.flags, entry.method, 0, 0x21, entry.crc,
                                  entry.compress_size, entry.file_size, len(entry.name), 0))
            out.write(entry.name)
            for piece in entry.pieces:
                out.write(piece)
            central += [(entry, name, offset) for name in [entry.name, *entry.aliases]]
        start = out.tell()
        for entry, name, offset in central:
            out.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, entry.flags, entry.method, 0, 0x21, entry.crc,
                                  entry.compress_size, entry.file_size, len(name), 0, 0, 0, 0, 0, offset))
            out.write(name)
        size = out.tell() - start
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), size, start, 0))
    return path


def stored_entry(name: str, data: bytes) -> RawEntry:
    return RawEntry(name.encode(), [data], zlib.crc32(data), len(data), len(data), method=zipfile.ZIP_STORED)


@dataclass(frozen=True)
class ZeroBomb:
    """1 GiB of zeros as a raw deflate stream of ~1 MB, written streaming from one repeated block."""

    block: bytes
    tail: bytes
    blocks: int
    crc: int

    @property
    def compressed_size(self) -> int:
        return len(self.block) * self.blocks + len(self.tail)

    def pieces(self) -> Iterator[bytes]:
        for _ in range(self.blocks):
            yield self.block
        yield self.tail


@pytest.fixture(scope="session")
def zero_bomb() -> ZeroBomb:
    zeros = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush the compressor starts afresh, so every 1 MiB block of zeros compresses identically.
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(zeros, crc)
    return ZeroBomb(block, tail, 1024, crc)


# --- importing and watching -------------------------------------------------------------------------------------


@dataclass
class Destination:
    root: Path  # the store's root
    watched: Path  # its parent folders: nothing may appear there
    store: FilesystemBlobStore


@pytest.fixture
def destination(tmp_path: Path) -> Destination:
    root = tmp_path / "dest" / "store"
    return Destination(root=root, watched=tmp_path, store=FilesystemBlobStore(root))


def tree(path: Path) -> set[Path]:
    return set(path.rglob("*"))


async def refuse(zip_path: Path, destination: Destination, limits: ImportLimits = ImportLimits()) -> str:
    """Import a zip that must be refused; check time, memory and the file system; return the reason."""
    before = tree(destination.watched)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(PackageRejected) as refused:
            await import_package(zip_path, destination.store, "scorm/1", limits)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    created = tree(destination.watched) - before
    assert all(path.is_relative_to(destination.root) for path in created), f"written outside: {created}"
    assert [p for p in destination.root.rglob("*") if p.is_file()] == [], "refused package left files behind"
    assert elapsed < REFUSAL_SECONDS
    assert peak < PEAK_MEMORY_BUDGET, f"peak traced memory {peak / MiB:.1f} MiB"
    return str(refused.value)


# --- the real packages -------------------------------------------------------------------------------------------

MAIN_PACKAGES = {
    "golf_scorm12_singlesco.zip": ("1.2", 1),
    "golf_scorm12_multisco_runtime_minimum.zip": ("1.2", 18),
    "golf_scorm2004_2nd_singlesco.zip": ("2004-2nd", 1),
    "golf_scorm2004_3rd_onefilepersco_assets_only.zip": ("2004-3rd", 0),
    "golf_scorm2004_3rd_runtime_advanced.zip": ("2004-3rd", 1),
    "golf_scorm2004_4th_sequencing_posttest_rollup.zip": ("2004-4th", 5),
    "adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip": ("2004-4th", 11),
}


@pytest.fixture
def quirks_zip(tmp_path: Path) -> Path:
    """The built SCORM 1.2 package with real exports' quirks (tests/support/scorm_packages.py)."""
    path = tmp_path / "nested_quirks.zip"
    path.write_bytes(nested_quirks_package())
    return path


@pytest.mark.parametrize("name", [*sorted(MAIN_PACKAGES), "built:nested_quirks.zip"])
async def test_main_package_imports_every_file_byte_for_byte(
    scorm_fixtures_dir: Path, destination: Destination, name: str, tmp_path: Path
) -> None:
    if name == "built:nested_quirks.zip":
        zip_path = tmp_path / "nested_quirks.zip"
        zip_path.write_bytes(nested_quirks_package())
        version, sco_count = "1.2", 7
    else:
        zip_path = scorm_fixtures_dir / name
        version, sco_count = MAIN_PACKAGES[name]

    result = await import_package(zip_path, destination.store, "scorm/1")

    assert (result.manifest.scorm_version, len(result.manifest.scos)) == (version, sco_count)
    with zipfile.ZipFile(zip_path) as archive:
        expected = {
            info.filename: archive.read(info) for info in archive.infolist()
            if not info.is_dir() and "__MACOSX" not in info.filename and not info.filename.endswith(".DS_Store")
        }
    assert sorted(result.files) == sorted(expected)
    assert result.total_bytes == sum(len(data) for data in expected.values())
    for path, data in expected.items():
        assert (destination.root / "scorm" / "1" / path).read_bytes() == data


@pytest.mark.parametrize("name", sorted(MAIN_PACKAGES))
async def test_every_sco_launch_file_is_stored(scorm_fixtures_dir: Path, destination: Destination, name: str) -> None:
    result = await import_package(scorm_fixtures_dir / name, destination.store, "scorm/1")

    for sco in result.manifest.scos:
        launch_file = sco.launch_url.split("?", 1)[0]
        assert launch_file in result.files


async def test_mac_junk_is_skipped(quirks_zip: Path, destination: Destination) -> None:
    with zipfile.ZipFile(quirks_zip) as archive:
        assert set(MAC_JUNK) <= set(archive.namelist())

    result = await import_package(quirks_zip, destination.store, "scorm/1")

    assert not any("__MACOSX" in path or path.endswith(".DS_Store") for path in result.files)
    assert sorted(result.files) == ["debug_sco.js", "images/logo.png", "imsmanifest.xml", "index.html"]
    assert not (destination.root / "scorm" / "1" / "__MACOSX").exists()


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("adl_cts_cm07d_scorm2004_4th_nested_xmlbase.zip", "common/LMSTest.jar"),
        ("built:nested_quirks.zip", "imslrm.xml"),
        ("edge/emp_scorm2004_no_schemaversion.zip", "index.html"),
    ],
)
async def test_a_referenced_file_that_is_absent_is_a_warning(
    scorm_fixtures_dir: Path, quirks_zip: Path, destination: Destination, name: str, missing: str
) -> None:
    zip_path = quirks_zip if name == "built:nested_quirks.zip" else scorm_fixtures_dir / name

    result = await import_package(zip_path, destination.store, "scorm/1")

    assert any(repr(missing) in warning and "not in the zip" in warning for warning in result.warnings)


EDGE_REFUSED = {
    "moodle_badscorm_manifest_in_subdir.zip": "imsmanifest.xml must be at the root of the zip, but it is at "
                                              "'badscorm/imsmanifest.xml'",
    "moodle_validscorm_manifest_decl_only.zip": "not well-formed XML",
    "moodle_invalid_no_manifest.zip": "there is no imsmanifest.xml at the root of the zip",
    "emp_scorm12_item_missing_resource.zip": "refers to resource 'non_existent_resource'",
    "emp_scorm12_malformed_xml.zip": "not well-formed XML (mismatched tag: line 27",
}
EDGE_IMPORTED = {
    # zip: (version, SCOs)
    "moodle_singlescobasic_missingorg.zip": ("1.2", 1),
    "emp_scorm12_prerequisites_masteryscore.zip": ("1.2", 4),
    "emp_scorm2004_no_schemaversion.zip": ("2004-3rd", 1),
}


def test_every_edge_package_has_an_expected_outcome(scorm_fixtures_dir: Path) -> None:
    on_disk = {path.name for path in (scorm_fixtures_dir / "edge").glob("*.zip")}

    assert on_disk == set(EDGE_REFUSED) | set(EDGE_IMPORTED)


@pytest.mark.parametrize("name", sorted(EDGE_REFUSED))
async def test_edge_package_is_refused_with_its_reason(
    scorm_fixtures_dir: Path, destination: Destination, name: str
) -> None:
    reason = await refuse(scorm_fixtures_dir / "edge" / name, destination)

    assert EDGE_REFUSED[name] in reason


@pytest.mark.parametrize("name", sorted(EDGE_IMPORTED))
async def test_edge_package_imports(scorm_fixtures_dir: Path, destination: Destination, name: str) -> None:
    result = await import_package(scorm_fixtures_dir / "edge" / name, destination.store, "scorm/1")

    assert (result.manifest.scorm_version, len(result.manifest.scos)) == EDGE_IMPORTED[name]


async def test_import_into_postgres_stores_the_same_bytes(
    scorm_fixtures_dir: Path, postgres_blob_store: DatabaseBlobStore
) -> None:
    zip_path = scorm_fixtures_dir / "golf_scorm12_multisco_runtime_minimum.zip"

    result = await import_package(zip_path, postgres_blob_store, "scorm/7")

    with zipfile.ZipFile(zip_path) as archive:
        launch_page = archive.read("shared/assessmenttemplate.html")
    assert await postgres_blob_store.get("scorm/7/shared/assessmenttemplate.html") == launch_page
    assert (await postgres_blob_store.stat("scorm/7/imsmanifest.xml")) is not None
    assert len(result.files) == 44


def every_package() -> list[Path]:
    from tests.support.scorm_packages import FIXTURES

    return sorted(FIXTURES.rglob("*.zip")) + extra_packages()


@pytest.mark.parametrize("zip_path", every_package(), ids=lambda path: path.name)
async def test_every_package_imports_or_is_refused_with_a_reason(zip_path: Path, destination: Destination) -> None:
    """The repository's packages, plus any in the optional extra folder LEARN_SCORM_FIXTURES_DIR: each one
    imports with at least its manifest stored, or is refused with a reason; no other exception, nothing left over."""
    try:
        result = await import_package(zip_path, destination.store, "scorm/1")
    except PackageRejected as refused:
        assert str(refused).strip()
        assert [p for p in destination.root.rglob("*") if p.is_file()] == []
    else:
        assert "imsmanifest.xml" in result.files
        for sco in result.manifest.scos:
            assert sco.launch_url and not sco.launch_url.startswith(("/", ".."))


# --- hostile names and entry types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.txt", "'..' segment"),
        ("content/../../../evil.txt", "'..' segment"),
        ("/tmp/evil.txt", "absolute path"),
        ("C:/Windows/evil.txt", "drive letter"),
        # Windows separators are read as '/' (issue 20), and every check applies to the result:
        ("..\\..\\evil.txt", "'..' segment"),
        ("content\\..\\..\\evil.txt", "'..' segment"),
        ("\\Windows\\evil.txt", "absolute path"),
        ("C:\\Windows\\evil.txt", "drive letter"),
        ("evil.txt\x00.html", "NUL byte"),
        ("evil\n.txt", "control character"),
    ],
)
async def test_unsafe_entry_names_are_refused(tmp_path: Path, destination: Destination, name: str, reason: str) -> None:
    zip_path = make_zip(tmp_path / "upload.zip", [*with_manifest().items(), (entry_info(name), b"pwned")])

    assert reason in await refuse(zip_path, destination)


async def test_a_symlink_entry_is_refused(tmp_path: Path, destination: Destination) -> None:
    link = entry_info("shared/passwd", mode=stat.S_IFLNK | 0o777)
    zip_path = make_zip(tmp_path / "upload.zip", [*with_manifest().items(), (link, b"/etc/passwd")])

    assert "symbolic link" in await refuse(zip_path, destination)


async def test_an_encrypted_entry_is_refused(tmp_path: Path, destination: Destination) -> None:
    secret = stored_entry("secret.html", b"ciphertext")
    secret.flags = 0x1
    zip_path = write_raw_zip(tmp_path / "upload.zip", [stored_entry("imsmanifest.xml", MANIFEST), secret])

    assert "encrypted" in await refuse(zip_path, destination)


async def test_bzip2_entries_are_refused(tmp_path: Path, destination: Destination) -> None:
    packed = entry_info("big.txt", method=zipfile.ZIP_BZIP2)
    zip_path = make_zip(tmp_path / "upload.zip", [*with_manifest().items(), (packed, b"x" * 1000)])

    assert "compression method 12" in await refuse(zip_path, destination)


async def test_the_same_name_twice_is_refused(tmp_path: Path, destination: Destination) -> None:
    entries = [*with_manifest().items(), ("index.html", b"second copy")]
    with pytest.warns(UserWarning, match="Duplicate name"):
        zip_path = make_zip(tmp_path / "upload.zip", entries)

    assert "twice" in await refuse(zip_path, destination)


async def test_a_name_that_is_both_file_and_folder_is_refused(tmp_path: Path, destination: Destination) -> None:
    zip_path = make_zip(tmp_path / "upload.zip", with_manifest(**{"a": b"file", "a/b.html": b"nested"}))

    assert "both as a file and as a folder" in await refuse(zip_path, destination)


async def test_nothing_is_written_before_the_whole_directory_is_checked(tmp_path: Path) -> None:
    class CountingStore(FilesystemBlobStore):
        puts = 0

        async def put(self, key, data, content_type=None):
            CountingStore.puts += 1
            return await super().put(key, data, content_type)

    entries = [*with_manifest(**{"big.bin": random.randbytes(3 * MiB)}).items(), (entry_info("../late.txt"), b"x")]
    zip_path = make_zip(tmp_path / "upload.zip", entries)

    with pytest.raises(PackageRejected):
        await import_package(zip_path, CountingStore(tmp_path / "store"), "scorm/1")

    assert CountingStore.puts == 0


# --- not a zip, no manifest, hostile manifests -------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"%PDF-1.7 not a zip at all", random.Random(7).randbytes(70_000)])
async def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path, destination: Destination, content: bytes) -> None:
    zip_path = tmp_path / "upload.zip"
    zip_path.write_bytes(content)

    assert "not a zip file" in await refuse(zip_path, destination)


async def test_a_zip_behind_a_self_extractor_stub_still_imports(tmp_path: Path, destination: Destination) -> None:
    plain = make_zip(tmp_path / "plain.zip", with_manifest())
    zip_path = tmp_path / "upload.zip"
    zip_path.write_bytes(b"MZ" + bytes(4094) + plain.read_bytes())

    result = await import_package(zip_path, destination.store, "scorm/1")

    assert await destination.store.get("scorm/1/index.html") == b"<html>hi</html>"
    assert len(result.files) == 2


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE manifest [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">'.encode() for n in range(9))
    + b']><manifest identifier="m">&j;</manifest>'
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE manifest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<manifest identifier="m"><metadata><schemaversion>&xxe;</schemaversion></metadata></manifest>'
)
DOCTYPE = MANIFEST.replace(b"<manifest ", b'<!DOCTYPE manifest SYSTEM "http://evil.example/m.dtd">\n<manifest ', 1)


@pytest.mark.parametrize("manifest", [BILLION_LAUGHS, XXE, DOCTYPE], ids=["billion-laughs", "xxe", "doctype"])
async def test_manifest_with_a_doctype_is_refused(tmp_path: Path, destination: Destination, manifest: bytes) -> None:
    zip_path = make_zip(tmp_path / "upload.zip", {"imsmanifest.xml": manifest, "index.html": b"x"})

    assert "DOCTYPE" in await refuse(zip_path, destination)


async def test_an_oversized_manifest_is_refused(tmp_path: Path, destination: Destination) -> None:
    padded = MANIFEST.replace(b"<metadata>", b"<!--" + b"-" * 5000 + b"--><metadata>")
    zip_path = make_zip(tmp_path / "upload.zip", with_manifest(**{"imsmanifest.xml": padded}))

    reason = await refuse(zip_path, destination, ImportLimits(max_manifest_bytes=4096))

    assert "over the 4,096-byte limit" in reason


# --- bombs ---------------------------------------------------------------------------------------------------------


async def test_a_gibibyte_of_zeros_is_refused_by_its_ratio(
    tmp_path: Path, destination: Destination, zero_bomb: ZeroBomb
) -> None:
    bomb = RawEntry(b"video.mp4", zero_bomb.pieces(), zero_bomb.crc, zero_bomb.compressed_size, 1024 * MiB)
    zip_path = write_raw_zip(tmp_path / "upload.zip", [stored_entry("imsmanifest.xml", MANIFEST), bomb])
    assert zip_path.stat().st_size < 2 * MiB

    assert "looks like a zip bomb" in await refuse(zip_path, destination)


async def test_a_bomb_whose_header_understates_its_size_is_caught_while_unzipping(
    tmp_path: Path, destination: Destination, zero_bomb: ZeroBomb
) -> None:
    # The header claims 8 MiB (a harmless 8:1 ratio); the data would inflate to 1 GiB.
    liar = RawEntry(b"video.mp4", zero_bomb.pieces(), zero_bomb.crc, zero_bomb.compressed_size, 8 * MiB)
    zip_path = write_raw_zip(
        tmp_path / "upload.zip",
        [stored_entry("imsmanifest.xml", MANIFEST), stored_entry("index.html", b"<html/>"), liar],
    )

    assert "is corrupt" in await refuse(zip_path, destination)


async def test_overlapping_entries_are_refused(tmp_path: Path, destination: Destination, zero_bomb: ZeroBomb) -> None:
    # The "non-recursive zip bomb": many directory records point at the same compressed data.
    kernel = RawEntry(
        b"a.bin", zero_bomb.pieces(), zero_bomb.crc, zero_bomb.compressed_size, 1024 * MiB,
        aliases=[f"copy{n}.bin".encode() for n in range(50)],
    )
    zip_path = write_raw_zip(tmp_path / "upload.zip", [stored_entry("imsmanifest.xml", MANIFEST), kernel])

    assert "overlaps" in await refuse(zip_path, destination, ImportLimits(max_ratio=10_000))


async def test_more_than_the_uncompressed_cap_is_refused(tmp_path: Path, destination: Destination) -> None:
    zip_path = make_zip(tmp_path / "upload.zip", with_manifest(**{"big.bin": random.randbytes(2 * MiB)}))

    reason = await refuse(zip_path, destination, ImportLimits(max_uncompressed_bytes=MiB))

    assert "more than 1,048,576 bytes" in reason


async def test_fifty_thousand_entries_are_refused(tmp_path: Path, destination: Destination) -> None:
    entries = [stored_entry("imsmanifest.xml", MANIFEST)] + [stored_entry(f"f/{n}.txt", b"") for n in range(50_000)]
    zip_path = write_raw_zip(tmp_path / "upload.zip", entries)

    assert "the zip has 50,001 entries; the limit is 20,000" in await refuse(zip_path, destination)


async def test_a_lying_entry_count_in_the_end_record_does_not_help(tmp_path: Path, destination: Destination) -> None:
    entries = [stored_entry("imsmanifest.xml", MANIFEST)] + [stored_entry(f"f/{n}.txt", b"") for n in range(30)]
    zip_path = write_raw_zip(tmp_path / "upload.zip", entries)
    data = bytearray(zip_path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<2H", data, end + 8, 1, 1)  # claim a single entry
    zip_path.write_bytes(bytes(data))

    assert "more than 10 entries" in await refuse(zip_path, destination, ImportLimits(max_entries=10))


# --- bounded memory and cleanup on a late failure -----------------------------------------------------------------


def text_pool(size: int) -> bytes:
    words = [b"golf", b"par", b"birdie", b"handicap", b"green", b"fairway", b"bunker", b"eagle", b"tee", b"putt"]
    rng = random.Random(42)
    out = io.BytesIO()
    while out.tell() < size:
        out.write(b" ".join(rng.choice(words) + str(rng.randrange(10_000)).encode() for _ in range(64)) + b"\n")
    return out.getvalue()[:size]


async def test_a_large_file_is_imported_with_bounded_memory(tmp_path: Path, destination: Destination) -> None:
    pool = text_pool(MiB)
    zip_path = tmp_path / "upload.zip"
    digest = hashlib.sha256()
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("imsmanifest.xml", MANIFEST)
        archive.writestr("index.html", b"<html/>")
        with archive.open("media/lecture.txt", "w") as target:
            for _ in range(48):
                target.write(pool)
                digest.update(pool)
    seen: list[tuple[int, int]] = []

    tracemalloc.start()
    try:
        result = await import_package(zip_path, destination.store, "scorm/1", progress=lambda d, t: seen.append((d, t)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.total_bytes > 48 * MiB
    assert peak < PEAK_MEMORY_BUDGET, f"peak traced memory {peak / MiB:.1f} MiB for a 48 MiB file"
    stat_info = await destination.store.stat("scorm/1/media/lecture.txt")
    assert stat_info is not None and stat_info.sha256 == digest.hexdigest()
    assert seen[-1] == (result.total_bytes, result.total_bytes)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


async def test_a_failure_after_files_were_stored_removes_them_all(
    tmp_path: Path, postgres_blob_store: DatabaseBlobStore, zero_bomb: ZeroBomb
) -> None:
    liar = RawEntry(b"z-last.bin", zero_bomb.pieces(), zero_bomb.crc, zero_bomb.compressed_size, 8 * MiB)
    zip_path = write_raw_zip(
        tmp_path / "upload.zip",
        [stored_entry("imsmanifest.xml", MANIFEST), stored_entry("index.html", b"<html/>"), liar],
    )
    await postgres_blob_store.put("scorm/2/index.html", b"another package")

    with pytest.raises(PackageRejected, match="is corrupt"):
        await import_package(zip_path, postgres_blob_store, "scorm/1")

    assert await postgres_blob_store.stat("scorm/1/index.html") is None
    assert await postgres_blob_store.get("scorm/2/index.html") == b"another package"


def test_check_package_validates_without_a_store(scorm_fixtures_dir: Path) -> None:
    manifest = check_package(scorm_fixtures_dir / "golf_scorm2004_4th_sequencing_posttest_rollup.zip")

    assert manifest.scorm_version == "2004-4th"
    with pytest.raises(PackageRejected, match=r"no imsmanifest\.xml"):
        check_package(scorm_fixtures_dir / "edge" / "moodle_invalid_no_manifest.zip")


# --- real packages' quirks (issue 20) ---------------------------------------------------------------------------


async def test_backslash_entry_names_are_read_as_folders_with_one_summary_warning(
        tmp_path: Path, destination: Destination) -> None:
    manifest = MANIFEST.replace(b'href="index.html"', b'href="content/index.html"', 1).replace(
        b'<file href="index.html"/>', b'<file href="content/index.html"/><file href="content/img/a.png"/>')
    zip_path = make_zip(tmp_path / "windows.zip", [
        ("imsmanifest.xml", manifest), (entry_info("content\\index.html"), b"<html>win</html>"),
        (entry_info("content\\img\\a.png"), b"png"), (entry_info("content\\img\\b.png"), b"png"),
    ])

    result = await import_package(zip_path, destination.store, "scorm/1")

    assert sorted(result.files) == ["content/img/a.png", "content/img/b.png", "content/index.html",
                                    "imsmanifest.xml"]
    assert result.manifest.scos[0].launch_url == "content/index.html"
    assert (destination.root / "scorm/1/content/img/a.png").read_bytes() == b"png"
    windows = [w for w in result.warnings if "backslash" in w]
    assert windows == ["3 zip entries are named with Windows backslashes, e.g. 'content\\index.html'; read with "
                       "'/' as the separator"]
    assert not any("not in the zip" in w for w in result.warnings)


async def test_a_refused_windows_name_is_quoted_as_written(tmp_path: Path, destination: Destination) -> None:
    zip_path = make_zip(tmp_path / "upload.zip", [*with_manifest().items(), (entry_info("a\\..\\..\\x"), b"x")])
    reason = await refuse(zip_path, destination)
    assert "'a\\..\\..\\x'" in reason and "\\\\" not in reason


async def test_a_package_without_sco_imports_with_a_clear_warning(tmp_path: Path, destination: Destination) -> None:
    manifest = MANIFEST.replace(b'adlcp:scormtype="sco"', b'adlcp:scormtype="asset"')
    result = await import_package(make_zip(tmp_path / "assets.zip", with_manifest() | {"imsmanifest.xml": manifest}),
                                  destination.store, "scorm/1")
    assert result.manifest.scos == []
    assert any(w.startswith("the package has no SCO") and "'i1'" in w for w in result.warnings), result.warnings
