"""Resumable uploads' file work (packages/resumable.py): what arrived before a connection dropped is kept, the
length is never passed, the finished part is hashed and moved without being held in memory (pure file tests;
the protocol through the gateway is in tests/e2e/test_e2e_scorm_api_upload.py)."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.scorm.domain import Invalid, UploadTooLarge
from services.scorm.packages import resumable

MiB = 1024 * 1024


async def chunks_then(parts: list[bytes], error: BaseException | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if error is not None:
        raise error


async def test_bytes_that_arrived_before_a_drop_are_kept(tmp_path: Path) -> None:
    part = tmp_path / "u.part"
    await resumable.create_part(part)
    with pytest.raises(ConnectionResetError):
        await resumable.append(part, chunks_then([b"PK" + b"a" * 1000, b"b" * 3000], ConnectionResetError()),
                               0, 10_000)
    assert await resumable.offset_of(part) == 4002
    offset = await resumable.append(part, chunks_then([b"c" * 5998]), 4002, 10_000)
    assert offset == 10_000 == await resumable.offset_of(part)


async def test_the_declared_length_is_never_passed(tmp_path: Path) -> None:
    part = tmp_path / "u.part"
    await resumable.create_part(part)
    with pytest.raises(UploadTooLarge):
        await resumable.append(part, chunks_then([b"PK123", b"456789"]), 0, 8)
    assert part.read_bytes() == b"PK123"


async def test_a_large_part_is_hashed_and_moved_with_bounded_memory(tmp_path: Path) -> None:
    part = tmp_path / "u.part"
    await resumable.create_part(part)
    block = b"PK" + bytes(MiB - 2)
    tracemalloc.start()
    try:
        offset = await resumable.append(part, chunks_then([block] * 24), 0, 24 * MiB)
        target, digest = await resumable.finish(part, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert offset == 24 * MiB and target.stat().st_size == 24 * MiB and not part.exists()
    assert digest == hashlib.sha256(block * 24).hexdigest()
    assert peak < 8 * MiB, peak


async def test_a_finished_part_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    part = tmp_path / "u.part"
    part.write_bytes(b"not a zip")
    with pytest.raises(Invalid):
        await resumable.finish(part, tmp_path)


def test_headers_are_parsed_strictly() -> None:
    assert resumable.parse_length("42", 100) == 42
    for bad in (None, "", "-1", "0", "4.2", "٤٢"):
        with pytest.raises(Invalid):
            resumable.parse_length(bad, 100)
    with pytest.raises(UploadTooLarge):
        resumable.parse_length("101", 100)
    assert resumable.parse_metadata("title VGl0bGU=,filename") == {"title": "Title", "filename": ""}
    with pytest.raises(Invalid):
        resumable.parse_metadata("title !!!")
