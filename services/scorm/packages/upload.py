"""Receiving a package upload: the request body streamed to a file, hashed, capped.

An upload is streamed to a file under ``<data_dir>/scorm-uploads`` (hashing as it goes, refusing past the cap);
``handlers.upload_package`` records it as a ``processing`` package and ``packages/importer.py`` checks and
extracts it in the background.

The body is either the zip itself (``application/zip`` and its aliases) or ``multipart/form-data`` whose ``file``
part is the zip (other parts before it are skipped; ``title`` is read when small). Either way only the zip's
bytes are hashed and stored: the sha256 is the zip's, whatever the envelope.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from services.scorm.config import ScormSettings
from services.scorm.domain import MAX_TITLE, Invalid, UnsupportedMediaType, UploadTooLarge
from services.scorm.manifest.zip_safety import NOT_A_ZIP

UPLOAD_CHUNK = 256 * 1024
WRITE_BUFFER = 1024 * 1024
ZIP_CONTENT_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip",
                               "application/octet-stream"})
MULTIPART = "multipart/form-data"
FILE_PART = "file"
#: what aiohttp's multipart reader raises on a malformed body (a bad boundary, header, encoding ...)
MALFORMED = (ValueError, AssertionError, RuntimeError, LookupError, HttpProcessingError)


@dataclass(frozen=True)
class ReceivedUpload:
    path: Path
    bytes: int
    sha256: str
    #: a ``title`` form field sent before the ``file`` part (multipart only)
    form_title: str | None = None


def media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


async def receive_upload(request: web.Request, settings: ScormSettings, *, multipart: bool = False
                         ) -> ReceivedUpload:
    """Stream the request body into a new file; refused past the cap, or when it is plainly not a zip.

    ``multipart``: a ``multipart/form-data`` body with a ``file`` part is accepted too (the public API)."""
    ctype = media_type(request)
    limit = settings.max_upload_bytes
    if multipart and ctype == MULTIPART:
        # The envelope adds a few hundred bytes: the cap is on the zip, and the envelope may exceed it slightly.
        if request.content_length is not None and request.content_length > limit + 64 * 1024:
            raise UploadTooLarge(limit)
        return await _receive_multipart(request, settings)
    if ctype and ctype not in ZIP_CONTENT_TYPES:
        accepted = "application/zip" + (" or multipart/form-data with a 'file' part" if multipart else "")
        raise UnsupportedMediaType(f"Send the package as the body with Content-Type {accepted}.")
    if request.content_length is not None and request.content_length > limit:
        raise UploadTooLarge(limit)
    return await write_upload(request.content.iter_chunked(UPLOAD_CHUNK), settings)


def _malformed(exc: BaseException) -> Invalid:
    reason = str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return Invalid(f"The multipart body cannot be read ({reason}): send the SCORM zip as the 'file' field.")


async def _receive_multipart(request: web.Request, settings: ScormSettings) -> ReceivedUpload:
    try:
        return await _read_multipart(request, settings)
    except MALFORMED as exc:
        raise _malformed(exc) from None


async def _read_multipart(request: web.Request, settings: ScormSettings) -> ReceivedUpload:
    reader = await request.multipart()
    title: str | None = None
    while True:
        part = await reader.next()
        if part is None:
            raise Invalid("The multipart body has no 'file' part: send the SCORM zip as the 'file' field.")
        if not isinstance(part, aiohttp.BodyPartReader):
            raise Invalid("Nested multipart bodies are not accepted: send the SCORM zip as the 'file' field.")
        if part.name == FILE_PART:
            break
        if part.name == "title":
            raw = await _small_part(part, MAX_TITLE * 4)
            title = raw.decode("utf-8", errors="replace").strip()[:MAX_TITLE] or None
        else:
            await part.release()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await part.read_chunk(UPLOAD_CHUNK):
                yield chunk
        except MALFORMED as exc:
            raise _malformed(exc) from None

    received = await write_upload(chunks(), settings)
    return ReceivedUpload(received.path, received.bytes, received.sha256, form_title=title)


async def _small_part(part: aiohttp.BodyPartReader, cap: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(4096):
        data += chunk
        if len(data) > cap:
            raise Invalid(f"The form field '{part.name}' is too long.")
    return bytes(data)


async def write_upload(chunks: AsyncIterator[bytes], settings: ScormSettings) -> ReceivedUpload:
    """Write ``chunks`` to a new upload file, hashing and capping them; checks the zip signature."""
    limit = settings.max_upload_bytes
    directory = settings.upload_path
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.zip"
    handle: BinaryIO = await asyncio.to_thread(path.open, "xb")
    hasher = hashlib.sha256()
    size = 0
    head = b""
    buffer = bytearray()
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise UploadTooLarge(limit)
            if len(head) < 4:
                head = (head + chunk)[:4]
                if len(head) >= 2 and not head.startswith(b"PK"):
                    raise Invalid(f"The body is not a zip file: {NOT_A_ZIP}.")
            hasher.update(chunk)
            buffer += chunk
            if len(buffer) >= WRITE_BUFFER:
                await asyncio.to_thread(handle.write, bytes(buffer))
                buffer.clear()
        if size == 0:
            raise Invalid("The body is empty: send the SCORM package zip as the request body.")
        if not head.startswith(b"PK"):
            raise Invalid(f"The body is not a zip file: {NOT_A_ZIP}.")
        if buffer:
            await asyncio.to_thread(handle.write, bytes(buffer))
        await asyncio.to_thread(handle.close)
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    return ReceivedUpload(path=path, bytes=size, sha256=hasher.hexdigest())
