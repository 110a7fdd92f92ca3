"""PDF rendering off the event loop: a pool of worker processes, one renderer each.

Rendering is CPU-bound pure Python, so threads would share one core: processes use them all. Workers start from
a forkserver that has already imported reportlab and the fonts, so a pool starts in a fraction of a second and a
worker never inherits the service's threads, sockets or event loop. A template travels once per batch (its logo
and background are prepared once per template version inside each worker, then cached there).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import structlog

from services.certificates.pdf import CertificateData, CertificateRenderer, TemplateSpec

log = structlog.get_logger("certificates.rendering")

_renderer: CertificateRenderer | None = None


def _worker_renderer() -> CertificateRenderer:
    global _renderer
    if _renderer is None:
        _renderer = CertificateRenderer()
    return _renderer


def _render_batch(template: TemplateSpec, certs: Sequence[CertificateData]) -> list[bytes]:
    renderer = _worker_renderer()
    return [renderer.render(template, cert) for cert in certs]


def _warm_up() -> int:
    _worker_renderer()
    return 0


class RenderPool:
    """``await pool.render(template, cert)`` / ``await pool.render_many(template, certs)`` in worker processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor = self._new_executor()

    def _new_executor(self) -> Executor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["services.certificates.rendering"])
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=context)

    async def start(self) -> None:
        """Spawn every worker now (and load fonts there), so that the first certificate is not slow."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, _warm_up) for _ in range(self.workers)))

    async def render(self, template: TemplateSpec, cert: CertificateData) -> bytes:
        return (await self._run(template, [cert]))[0]

    async def render_many(self, template: TemplateSpec, certs: Sequence[CertificateData]) -> list[bytes]:
        """Render ``certs`` spread over every worker; the result keeps their order."""
        if not certs:
            return []
        parts = min(self.workers, len(certs))
        size = -(-len(certs) // parts)
        chunks = [list(certs[i : i + size]) for i in range(0, len(certs), size)]
        results = await asyncio.gather(*(self._run(template, chunk) for chunk in chunks))
        return [pdf for chunk in results for pdf in chunk]

    async def _run(self, template: TemplateSpec, certs: list[CertificateData]) -> list[bytes]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, _render_batch, template, certs)
        except BrokenProcessPool:
            # A worker died (OOM killer, a crash in a C extension): replace the pool and let the caller retry.
            log.error("render_pool_broken", workers=self.workers)
            old, self._executor = self._executor, self._new_executor()
            old.shutdown(wait=False, cancel_futures=True)
            raise

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
