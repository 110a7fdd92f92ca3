"""Import an uploaded SCORM zip into a blob store, refusing anything unsafe before a byte is written.

The HTTP layer streams the upload to a temporary file (with its own size cap) and calls :func:`import_package`:

1. the central directory is checked as a whole: entry count (counted from the raw records before ``zipfile``
   builds an object per entry), names (``..``, absolute, drive letter, backslash, NUL and control characters),
   symlinks and special files, encryption, compression method, duplicates, a name that is both a file and a
   folder, declared sizes and compression ratios, overlapping entries, ``imsmanifest.xml`` at the root;
2. the manifest is read (size-capped) and parsed (:func:`services.scorm.manifest.parse.parse_manifest`);
3. each file is streamed into the store under ``f"{prefix}/{path}"`` in 1 MiB chunks while the real
   decompressed bytes are counted against the same limits (headers are never trusted); any violation deletes
   everything under ``prefix`` and raises :class:`PackageRejected`. Zip reading and decompression run in worker
   threads, one hop per chunk, so the event loop stays free. Up to ``STORE_CONCURRENCY`` small files (≤ 1 MiB)
   are stored at once while a large one streams, so memory stays bounded by a few MiB whatever the package;
4. files the manifest names but the zip lacks become warnings.

``__MACOSX/`` folders and ``.DS_Store`` files are skipped (their names are still checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import re
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

import structlog

from services.scorm.manifest.parse import Manifest, ManifestError, parse_manifest
from shared.blobstore import BlobStore, validate_key

log = structlog.get_logger("services.scorm.package_import")

MANIFEST_NAME = "imsmanifest.xml"
DEFAULT_MAX_RATIO = 200.0
# Entries (and archives) smaller than this are exempt from the ratio check: a few KiB of blank lines may
# legitimately compress 1000:1, and the total-size cap already bounds what small entries can add up to.
RATIO_CHECK_MIN_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024
STORE_CONCURRENCY = 4
MAX_PATH_BYTES = 768
MAX_SEGMENT_BYTES = 255

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError)

_END_RECORD = struct.Struct("<4s4H2LH")
_END_RECORD_64_LOCATOR_SIZE = 20
_END_RECORD_64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_RECORD_SIZE = 46


@dataclass(frozen=True)
class ImportLimits:
    max_entries: int = 20_000
    max_uncompressed_bytes: int = 2 * 1024**3
    max_ratio: float = DEFAULT_MAX_RATIO
    max_manifest_bytes: int = 4 * 1024 * 1024


class PackageRejected(ValueError):
    """The package cannot be imported; the message is meant for the person who uploaded it."""


@dataclass
class ImportResult:
    manifest: Manifest
    files: list[str]
    total_bytes: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    path: str


@dataclass
class _Plan:
    """What the checks found: the files to store (junk and folders left out) and the parsed manifest."""

    entries: list[_Entry]
    manifest: Manifest
    declared_bytes: int
    compressed_bytes: int
    skipped_junk: int
    #: entry names written with Windows backslashes, read with '/' (only when that made a safe path)
    windows_names: list[str] = field(default_factory=list)


# --- public entry points ----------------------------------------------------------------------------------------


async def import_package(
    zip_path: Path,
    store: BlobStore,
    prefix: str,
    limits: ImportLimits = ImportLimits(),
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Check ``zip_path`` completely, then store its files under ``prefix``; raises :class:`PackageRejected`.

    ``progress(done_bytes, total_bytes)`` is called on the event loop as bytes are stored.
    """
    prefix = validate_key(prefix.strip("/"))
    started = time.monotonic()
    try:
        archive, plan = await asyncio.to_thread(_open_and_check, Path(zip_path), limits)
    except PackageRejected as exc:
        log.info("scorm_package_rejected", prefix=prefix, reason=str(exc), stage="check")
        raise
    meter = _Meter(limits, plan)
    try:
        await _store_entries(archive, plan, store, prefix, meter, progress)
        meter.finish()
    except BaseException as exc:
        # Never leave half a package behind, whatever stopped us (a refusal, a store error, cancellation).
        with contextlib.suppress(Exception):
            await store.delete_prefix(prefix)
        if isinstance(exc, PackageRejected):
            log.info("scorm_package_rejected", prefix=prefix, reason=str(exc), stage="extract")
        raise
    finally:
        archive.close()

    files = [entry.path for entry in plan.entries]
    present = set(files)
    warnings = list(plan.manifest.warnings)
    if plan.windows_names:
        count = len(plan.windows_names)
        warnings.append(f"{count} zip entr{'y is' if count == 1 else 'ies are'} named with Windows backslashes, "
                        f"e.g. '{plan.windows_names[0]}'; read with '/' as the separator")
    warnings += [
        f"imsmanifest.xml names {path!r}, which is not in the zip"
        for path in plan.manifest.referenced_files
        if path not in present
    ]
    warnings = summarise_warnings(warnings)
    log.info(
        "scorm_package_imported", prefix=prefix, files=len(files), bytes=meter.total_bytes,
        skipped_junk=plan.skipped_junk, warnings=len(warnings), seconds=round(time.monotonic() - started, 3),
    )
    return ImportResult(manifest=plan.manifest, files=files, total_bytes=meter.total_bytes, warnings=warnings)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
SUMMARY_AFTER = 3


def summarise_warnings(warnings: list[str]) -> list[str]:
    """The same finding about many files is one line: warnings that differ only in their quoted names are
    counted, with the first as the example ("151 warnings like this one: ..."), in first-seen order."""
    groups: dict[str, list[str]] = {}
    for warning in warnings:
        groups.setdefault(_QUOTED.sub("'…'", warning), []).append(warning)
    out: list[str] = []
    for similar in groups.values():
        if len(similar) > SUMMARY_AFTER:
            out.append(f"{len(similar)} warnings like this one: {similar[0]}")
        else:
            out.extend(similar)
    return out


def import_package_sync(
    zip_path: Path, store: BlobStore, prefix: str, limits: ImportLimits = ImportLimits()
) -> ImportResult:
    """:func:`import_package` for scripts and tests that have no event loop of their own."""
    return asyncio.run(import_package(zip_path, store, prefix, limits))


def check_package(zip_path: Path, limits: ImportLimits = ImportLimits()) -> Manifest:
    """Every check that needs no writing (steps 1 and 2), synchronously: lets an upload be refused at once."""
    archive, plan = _open_and_check(Path(zip_path), limits)
    archive.close()
    return plan.manifest


# --- step 1: the central directory ------------------------------------------------------------------------------

NOT_A_ZIP = "the upload is not a zip file; export the course as a SCORM package (.zip) and upload that"


def _open_and_check(zip_path: Path, limits: ImportLimits) -> tuple[zipfile.ZipFile, _Plan]:
    _count_central_records(zip_path, limits.max_entries)
    try:
        archive = zipfile.ZipFile(zip_path)
    except UnicodeDecodeError as exc:
        raise PackageRejected("a file name in the zip is not valid UTF-8; zip the package again") from exc
    except _ZIP_ERRORS as exc:
        raise PackageRejected(f"{NOT_A_ZIP} ({exc})") from exc
    try:
        entries, plan_sizes, skipped, windows_names = _check_entries(archive, limits)
        manifest = _read_manifest(archive, entries, limits)
    except BaseException:
        archive.close()
        raise
    declared, compressed = plan_sizes
    return archive, _Plan(entries, manifest, declared, compressed, skipped, windows_names)


def _count_central_records(zip_path: Path, max_entries: int) -> None:
    """Refuse too many entries from the raw central directory, before ``zipfile`` allocates one object each.

    The end record's count is only a claim, so the records themselves are walked (46 bytes each plus their
    variable parts) and the walk stops as soon as the limit is passed.
    """
    try:
        with zip_path.open("rb") as handle:
            start, size, claimed = _central_directory(handle)
            if claimed > max_entries:
                raise PackageRejected(_too_many_entries(claimed, max_entries))
            handle.seek(start)
            consumed = 0
            count = 0
            while consumed < size:
                record = handle.read(_CENTRAL_RECORD_SIZE)
                if len(record) < _CENTRAL_RECORD_SIZE or record[:4] != b"PK\x01\x02":
                    raise PackageRejected("the zip's central directory is corrupt; zip the package again")
                name_length, extra_length, comment_length = struct.unpack_from("<3H", record, 28)
                variable = name_length + extra_length + comment_length
                handle.seek(variable, 1)
                consumed += _CENTRAL_RECORD_SIZE + variable
                count += 1
                if count > max_entries:
                    raise PackageRejected(_too_many_entries(count, max_entries, at_least=True))
    except OSError as exc:
        raise PackageRejected(f"{NOT_A_ZIP} ({exc})") from exc


def _central_directory(handle: BinaryIO) -> tuple[int, int, int]:
    """(start offset, size, claimed entry count) of the central directory, from the end-of-directory record."""
    handle.seek(0, 2)
    file_size = handle.tell()
    tail_size = min(file_size, _END_RECORD.size + 0xFFFF)
    handle.seek(file_size - tail_size)
    tail = handle.read(tail_size)
    index = len(tail)
    while True:  # the last signature whose record (and comment) fits: a comment may contain the bytes too
        index = tail.rfind(b"PK\x05\x06", 0, index)
        if index < 0:
            raise PackageRejected(NOT_A_ZIP)
        if tail_size - index >= _END_RECORD.size:
            _, _, _, _, claimed, size, offset, comment_length = _END_RECORD.unpack_from(tail, index)
            if index + _END_RECORD.size + comment_length <= tail_size:
                break
    end_offset = file_size - tail_size + index
    directory_end = end_offset
    if claimed == 0xFFFF or size == 0xFFFFFFFF or offset == 0xFFFFFFFF:
        record_offset = end_offset - _END_RECORD_64_LOCATOR_SIZE - _END_RECORD_64.size
        if record_offset < 0:
            raise PackageRejected("the zip's end-of-directory record is corrupt; zip the package again")
        handle.seek(record_offset)
        record = handle.read(_END_RECORD_64.size)
        if len(record) < _END_RECORD_64.size or record[:4] != b"PK\x06\x06":
            raise PackageRejected("the zip's ZIP64 end-of-directory record is corrupt; zip the package again")
        _, _, _, _, _, _, _, claimed, size, offset = _END_RECORD_64.unpack(record)
        directory_end = record_offset
    # Like zipfile, locate the directory from the end record so that a prepended stub does not matter.
    start = directory_end - size
    if start < 0 or size > file_size:
        raise PackageRejected("the zip's central directory is corrupt; zip the package again")
    return start, size, claimed


def _too_many_entries(count: int, limit: int, at_least: bool = False) -> str:
    amount = f"more than {limit:,}" if at_least else f"{count:,}"
    return f"the zip has {amount} entries; the limit is {limit:,} files and folders per package"


def _check_entries(
    archive: zipfile.ZipFile, limits: ImportLimits
) -> tuple[list[_Entry], tuple[int, int], int, list[str]]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise PackageRejected(_too_many_entries(len(infos), limits.max_entries))
    _check_no_overlap(archive, infos)
    seen: set[str] = set()
    entries: list[_Entry] = []
    skipped_junk = 0
    declared = 0
    compressed = 0
    windows_names: list[str] = []
    for info in infos:
        path, is_folder = _safe_path(info.orig_filename)
        if "\\" in info.orig_filename:
            windows_names.append(info.orig_filename)
        _check_kind(info)
        if path in seen:
            raise PackageRejected(f"the zip holds {path!r} twice; zip the package again")
        seen.add(path)
        if is_folder or not path:
            continue
        if _is_junk(path):
            skipped_junk += 1
            continue
        if _ratio_exceeded(info.file_size, info.compress_size, limits.max_ratio):
            raise PackageRejected(_ratio_message(path, info.file_size, info.compress_size, limits.max_ratio))
        declared += info.file_size
        compressed += info.compress_size
        if declared > limits.max_uncompressed_bytes:
            raise PackageRejected(_too_large(limits.max_uncompressed_bytes, "declares"))
        entries.append(_Entry(info, path))
    if _ratio_exceeded(declared, compressed, limits.max_ratio):
        raise PackageRejected(_ratio_message("the package", declared, compressed, limits.max_ratio))
    _check_file_folder_clash(entries)
    return entries, (declared, compressed), skipped_junk, windows_names


def _safe_path(name: str) -> tuple[str, bool]:
    """The normalised path of an entry name and whether it is a folder; refuses every unsafe form."""
    def refuse(why: str) -> PackageRejected:
        # Quoted as written (repr would show a Windows name's backslashes doubled).
        return PackageRejected(f"the zip entry '{original}' {why}; the package was refused for safety")

    original = name
    if "\x00" in name:
        raise refuse("contains a NUL byte")
    if _CONTROL_CHARACTER.search(name):
        raise refuse("contains a control character")
    # Windows tools write '\' as the separator: read it as '/', then every check below applies to the result
    # (so 'a\..\..\x' is still a traversal, '\x' still absolute).
    name = name.replace("\\", "/")
    if name.startswith("/"):
        raise refuse("is an absolute path")
    if _DRIVE_LETTER.match(name):
        raise refuse("starts with a drive letter")
    segments = [segment for segment in name.split("/") if segment not in ("", ".")]
    if ".." in segments:
        raise refuse("has a '..' segment (path traversal)")
    if any(len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for segment in segments):
        raise refuse(f"has a name longer than {MAX_SEGMENT_BYTES} bytes")
    path = "/".join(segments)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise refuse(f"has a path longer than {MAX_PATH_BYTES} bytes")
    return path, name.endswith("/")


def _check_kind(info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise PackageRejected(
            f"the zip entry {info.orig_filename!r} is a symbolic link; links are refused because they can "
            "point outside the package"
        )
    if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise PackageRejected(f"the zip entry {info.orig_filename!r} is not a regular file or folder")
    if info.flag_bits & 0x1:
        raise PackageRejected(
            f"the zip entry {info.orig_filename!r} is encrypted; upload the package without a password"
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # bzip2/LZMA are refused: zipfile cannot bound their output per read, and SCORM tools do not use them.
        raise PackageRejected(
            f"the zip entry {info.orig_filename!r} uses compression method {info.compress_type}; "
            "only stored and deflated entries are accepted (re-zip with a standard zip tool)"
        )


def _is_junk(path: str) -> bool:
    segments = path.split("/")
    return "__MACOSX" in segments or segments[-1] == ".DS_Store"


def _ratio_exceeded(uncompressed: int, compressed: int, limit: float) -> bool:
    return uncompressed > RATIO_CHECK_MIN_BYTES and uncompressed > limit * max(compressed, 1)


def _ratio_message(what: str, uncompressed: int, compressed: int, limit: float) -> str:
    ratio = uncompressed / max(compressed, 1)
    subject = what if what == "the package" else f"the zip entry {what!r}"
    return (
        f"{subject} expands {ratio:,.0f}:1 ({uncompressed:,} bytes from {compressed:,}), over the {limit:,.0f}:1 "
        "limit for compression ratio; this looks like a zip bomb"
    )


def _too_large(limit: int, verb: str) -> str:
    return (
        f"the package {verb} more than {limit:,} bytes of files once unzipped, over the limit; "
        "make the package smaller (e.g. compress large videos) and upload again"
    )


def _check_no_overlap(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Entries whose data overlap let a tiny zip expand many times (the 'non-recursive zip bomb')."""
    ordered = sorted(infos, key=lambda info: info.header_offset)
    limits = [info.header_offset for info in ordered[1:]] + [archive.start_dir]
    for info, next_start in zip(ordered, limits, strict=True):
        # 30 bytes of local header at least, then the compressed data: a lower bound of where it ends.
        if info.header_offset + 30 + info.compress_size > next_start:
            raise PackageRejected(
                f"the zip entry {info.orig_filename!r} overlaps another entry's data; "
                "the package was refused for safety"
            )


def _check_file_folder_clash(entries: list[_Entry]) -> None:
    paths = {entry.path for entry in entries}
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in paths:
                raise PackageRejected(
                    f"the zip holds {parent!r} both as a file and as a folder (of {path!r}); zip it again"
                )


# --- step 2: the manifest ----------------------------------------------------------------------------------------


def _read_manifest(archive: zipfile.ZipFile, entries: list[_Entry], limits: ImportLimits) -> Manifest:
    entry = next((e for e in entries if e.path == MANIFEST_NAME), None)
    if entry is None:
        raise PackageRejected(_no_manifest_message(entries))
    if entry.info.file_size > limits.max_manifest_bytes:
        raise PackageRejected(
            f"imsmanifest.xml is {entry.info.file_size:,} bytes, over the {limits.max_manifest_bytes:,}-byte "
            "limit for a manifest"
        )
    try:
        with archive.open(entry.info) as source:
            data = source.read(limits.max_manifest_bytes + 1)
    except _ZIP_ERRORS as exc:
        raise PackageRejected(f"imsmanifest.xml could not be unzipped ({exc}); zip the package again") from exc
    try:
        return parse_manifest(data, limits.max_manifest_bytes)
    except ManifestError as exc:
        raise PackageRejected(str(exc)) from exc


def _no_manifest_message(entries: list[_Entry]) -> str:
    nested = [e.path for e in entries if e.path.rsplit("/", 1)[-1].lower() == MANIFEST_NAME]
    if nested and "/" in nested[0]:
        return (
            f"imsmanifest.xml must be at the root of the zip, but it is at {nested[0]!r}; zip the contents "
            "of the course folder, not the folder itself"
        )
    if nested:
        return f"the manifest must be named exactly 'imsmanifest.xml' (lower case), not {nested[0]!r}"
    return (
        "there is no imsmanifest.xml at the root of the zip, so this is not a SCORM package; "
        "export the course as SCORM 1.2 or SCORM 2004"
    )


# --- step 3: streaming the files -------------------------------------------------------------------------------


class _Meter:
    """Counts the bytes really decompressed, against the limits, whatever the headers claimed."""

    def __init__(self, limits: ImportLimits, plan: _Plan) -> None:
        self.limits = limits
        self.compressed_bytes = plan.compressed_bytes
        self.total_bytes = 0

    def count(self, entry: _Entry, entry_bytes: int, new_bytes: int) -> None:
        self.total_bytes += new_bytes
        if entry_bytes > entry.info.file_size:
            raise PackageRejected(
                f"the zip entry {entry.path!r} unzips to more bytes than its header declares; "
                "the package was refused for safety"
            )
        if self.total_bytes > self.limits.max_uncompressed_bytes:
            raise PackageRejected(_too_large(self.limits.max_uncompressed_bytes, "holds"))
        if _ratio_exceeded(entry_bytes, entry.info.compress_size, self.limits.max_ratio):
            raise PackageRejected(
                _ratio_message(entry.path, entry_bytes, entry.info.compress_size, self.limits.max_ratio)
            )

    def finish(self) -> None:
        if _ratio_exceeded(self.total_bytes, self.compressed_bytes, self.limits.max_ratio):
            raise PackageRejected(
                _ratio_message("the package", self.total_bytes, self.compressed_bytes, self.limits.max_ratio)
            )


async def _store_entries(
    archive: zipfile.ZipFile,
    plan: _Plan,
    store: BlobStore,
    prefix: str,
    meter: _Meter,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Store every planned entry. Small files go up to STORE_CONCURRENCY at a time (a database store spends
    most of a small put waiting on its commit); a large file streams on its own while they run."""
    slots = asyncio.Semaphore(STORE_CONCURRENCY)

    def report() -> None:
        if progress is not None:
            progress(meter.total_bytes, plan.declared_bytes)

    async def store_small(entry: _Entry, key: str, content_type: str | None) -> None:
        try:
            data = await asyncio.to_thread(_read_whole_entry, archive, entry)
            meter.count(entry, len(data), len(data))
            await store.put(key, data, content_type)
            report()
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            for entry in plan.entries:
                key = f"{prefix}/{entry.path}"
                content_type = mimetypes.guess_type(entry.path)[0]
                if entry.info.file_size <= READ_CHUNK_BYTES:
                    await slots.acquire()  # bounds memory (one small file per slot) and store connections
                    group.create_task(store_small(entry, key, content_type))
                else:
                    await store.put(key, _entry_chunks(archive, entry, meter, report), content_type)
                    report()
    except BaseExceptionGroup as failures:
        raise _first_failure(failures) from None


def _first_failure(group: BaseExceptionGroup) -> BaseException:
    """The refusal if there is one (that is the message for the uploader), else the first error."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    return next((leaf for leaf in leaves if isinstance(leaf, PackageRejected)), leaves[0])


def _corrupt(entry: _Entry, exc: BaseException) -> PackageRejected:
    return PackageRejected(f"the zip entry {entry.path!r} is corrupt ({exc}); zip the package again")


def _read_whole_entry(archive: zipfile.ZipFile, entry: _Entry) -> bytes:
    try:
        with archive.open(entry.info) as source:
            # zipfile stops at the declared size and checks the CRC there, so a lying header fails here.
            return source.read(entry.info.file_size + 1)
    except _ZIP_ERRORS as exc:
        raise _corrupt(entry, exc) from exc


def _open_entry(archive: zipfile.ZipFile, entry: _Entry) -> IO[bytes]:
    try:
        return archive.open(entry.info)
    except _ZIP_ERRORS as exc:
        raise _corrupt(entry, exc) from exc


def _read_chunk(source: IO[bytes], entry: _Entry) -> bytes:
    try:
        return source.read(READ_CHUNK_BYTES)
    except _ZIP_ERRORS as exc:
        raise _corrupt(entry, exc) from exc


async def _entry_chunks(
    archive: zipfile.ZipFile, entry: _Entry, meter: _Meter, report: Callable[[], None]
) -> AsyncIterator[bytes]:
    source = await asyncio.to_thread(_open_entry, archive, entry)
    try:
        read = 0
        while chunk := await asyncio.to_thread(_read_chunk, source, entry):
            read += len(chunk)
            meter.count(entry, read, len(chunk))
            report()
            yield chunk
    finally:
        source.close()
