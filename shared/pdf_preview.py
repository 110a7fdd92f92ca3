"""The first page of a PDF as a PNG, with poppler's ``pdftoppm`` (certificate template previews in the
certificates service, certificate page images in the admin UI). Optional: without the tool there is no image."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import structlog

_log = structlog.get_logger("shared.pdf_preview")


def pdftoppm() -> str | None:
    """The path of poppler's ``pdftoppm``, or None when it is not installed."""
    return shutil.which("pdftoppm")


async def first_page_png(pdf: bytes, *, dpi: int, tool: str | None = None, timeout: float = 20,
                         log: Any = None, failure_event: str = "pdf_png_failed") -> bytes | None:
    """The PDF's first page as PNG at ``dpi``; None when ``pdftoppm`` is missing, times out or fails (a failure
    is logged as ``failure_event`` on ``log``, with the tool's error output)."""
    tool = tool or pdftoppm()
    if tool is None:
        return None
    process = await asyncio.create_subprocess_exec(
        tool, "-png", "-r", str(dpi), "-singlefile", "-f", "1", "-l", "1", "-", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        png, err = await asyncio.wait_for(process.communicate(pdf), timeout=timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    if process.returncode != 0 or not png.startswith(b"\x89PNG"):
        (log or _log).warning(failure_event, error=err.decode(errors="replace")[:300])
        return None
    return png
