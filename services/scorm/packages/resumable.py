"""Resumable uploads (tus 1.0.0 core + creation; docs/decisions/0020-scorm-import-api-and-resumable-uploads.md).

A client creates an upload with its total length, then sends the bytes in ``PATCH`` requests that each say where
they start (``Upload-Offset``); after a dropped connection it asks ``HEAD`` for the offset the server holds and
goes on from there. The bytes go straight to a file under ``<upload dir>/resumable/`` (never held in memory):
the file's size *is* the offset, so whatever arrived before a connection dropped is kept. When the last byte
arrives the file becomes a package upload like any other (hashed, checked for the zip signature) and the
import starts.

Pure file work here; the rows and the package are the handlers' (``handlers.py``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from services.scorm.domain import Invalid, UploadTooLarge
from services.scorm.manifest.zip_safety import NOT_A_ZIP

TUS_VERSION = "1.0.0"
OFFSET_MEDIA_TYPE = "application/offset+octet-stream"
WRITE_BUFFER = 1024 * 1024
HASH_CHUNK = 1024 * 1024

#: one PATCH at a time per upload in this process (tus: concurrent PATCHes to one upload are an error)
_locks: dict[int, asyncio.Lock] = {}


def lock_of(upload_id: int) -> asyncio.Lock:
    lock = _locks.get(upload_id)
    if lock is None:
        lock = _locks[upload_id] = asyncio.Lock()
    return lock


def new_part_path(directory: Path) -> Path:
    return directory / "resumable" / f"{uuid.uuid4().hex}.part"


async def create_part(path: Path) -> None:
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(path.touch, exist_ok=False)


async def offset_of(path: Path) -> int:
    """The bytes the server holds: the part file's size (0 if it is gone)."""
    try:
        return (await asyncio.to_thread(path.stat)).st_size
    except FileNotFoundError:
        return 0


def parse_length(raw: str | None, limit: int) -> int:
    if raw is None or not raw.strip().isdigit() or not raw.strip().isascii():
        raise Invalid("Send 'Upload-Length': the package's size in bytes (tus 1.0.0 creation).")
    length = int(raw.strip())
    if length < 1:
        raise Invalid("'Upload-Length' must be at least 1: an empty body is not a package.")
    if length > limit:
        raise UploadTooLarge(limit)
    return length


def parse_offset(raw: str | None) -> int:
    if raw is None or not raw.strip().isdigit() or not raw.strip().isascii():
        raise Invalid("Send 'Upload-Offset': where these bytes start (ask HEAD for the offset the server holds).")
    return int(raw.strip())


def parse_metadata(raw: str | None) -> dict[str, str]:
    """tus ``Upload-Metadata``: ``key base64value`` pairs, comma separated (values decoded as UTF-8)."""
    found: dict[str, str] = {}
    if not raw:
        return found
    for pair in raw.split(","):
        parts = pair.strip().split(" ")
        if not parts[0]:
            continue
        if len(parts) > 2:
            raise Invalid("'Upload-Metadata' is 'key base64value' pairs separated by commas.")
        try:
            value = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (ValueError, UnicodeDecodeError):
            raise Invalid(f"'Upload-Metadata' value of {parts[0][:40]!r} is not base64 of UTF-8 text.") from None
        found[parts[0]] = value
    return found


async def append(path: Path, chunks: AsyncIterator[bytes], offset: int, length: int) -> int:
    """Append ``chunks`` to the part file, which holds ``offset`` bytes; never past ``length``. Returns the new
    offset. What arrived is on disk even when the client's connection drops mid-way (the caller then answers
    nothing: the client asks HEAD)."""
    handle: BinaryIO = await asyncio.to_thread(path.open, "ab")
    buffer = bytearray()
    try:
        try:
            async for chunk in chunks:
                if offset + len(buffer) + len(chunk) > length:
                    raise UploadTooLarge(length)
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    await asyncio.to_thread(handle.write, bytes(buffer))
                    offset += len(buffer)
                    buffer.clear()
        finally:  # a dropped connection too: keep every byte that arrived whole
            if buffer:
                await asyncio.to_thread(handle.write, bytes(buffer))
                offset += len(buffer)
            await asyncio.to_thread(handle.flush)
    finally:
        await asyncio.to_thread(handle.close)
    return offset


def _sha256_and_head(path: Path) -> tuple[str, bytes]:
    hasher = hashlib.sha256()
    head = b""
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            if not head:
                head = chunk[:4]
            hasher.update(chunk)
    return hasher.hexdigest(), head


async def finish(path: Path, upload_dir: Path) -> tuple[Path, str]:
    """The complete part file, moved to the upload folder as a ``.zip`` the importer reads; its sha256."""
    digest, head = await asyncio.to_thread(_sha256_and_head, path)
    if not head.startswith(b"PK"):
        raise Invalid(f"The uploaded bytes are not a zip file: {NOT_A_ZIP}.")
    target = upload_dir / f"{uuid.uuid4().hex}.zip"
    await asyncio.to_thread(path.replace, target)
    return target, digest
