"""Receiving a package upload: the request body streamed to a file, hashed, capped.

An upload is streamed to a file under ``<data_dir>/scorm-uploads`` (hashing as it goes, refusing past the cap);
``handlers.upload_package`` records it as a ``processing`` package and ``packages/importer.py`` checks and
extracts it in the background.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from services.scorm.config import ScormSettings
from services.scorm.domain import Invalid, UnsupportedMediaType, UploadTooLarge
from services.scorm.manifest.zip_safety import NOT_A_ZIP

UPLOAD_CHUNK = 256 * 1024
WRITE_BUFFER = 1024 * 1024
ZIP_CONTENT_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip",
                               "application/octet-stream"})


@dataclass(frozen=True)
class ReceivedUpload:
    path: Path
    bytes: int
    sha256: str


async def receive_upload(request: web.Request, settings: ScormSettings) -> ReceivedUpload:
    """Stream the request body into a new file; refused past the cap, or when it is plainly not a zip."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype and ctype not in ZIP_CONTENT_TYPES:
        raise UnsupportedMediaType("Send the package as the body with Content-Type application/zip.")
    limit = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise UploadTooLarge(limit)
    directory = settings.upload_path
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.zip"
    handle: BinaryIO = await asyncio.to_thread(path.open, "xb")
    hasher = hashlib.sha256()
    size = 0
    head = b""
    buffer = bytearray()
    try:
        async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
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

