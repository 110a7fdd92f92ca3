"""PDF rendering off the event loop: a pool of worker processes, one renderer each.

Rendering is CPU-bound pure Python, so threads would share one core: processes use them all. Workers start from
a forkserver that has already imported reportlab and the fonts, so a pool starts in a fraction of a second and a
worker never inherits the service's threads, sockets or event loop.

Requests are batched on the way to the workers: at most one batch per worker is in flight, and whatever queued
meanwhile (same template) leaves as the next batch, split evenly over the workers. An idle pool renders a lone
certificate at once; a busy one pays the hand-over to a process (pickling the template, waking the worker,
sending results back) once per batch instead of once per certificate. Each worker prepares a template's logo
and background once per template version and keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import structlog

from services.certificates.pdf import CertificateData, CertificateRenderer, TemplateSpec

log = structlog.get_logger("certificates.rendering")

MAX_BATCH = 16
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


@dataclass
class _Request:
    template: TemplateSpec
    cert: CertificateData
    result: asyncio.Future[bytes]


class RenderPool:
    """``await pool.render(template, cert)`` / ``await pool.render_many(template, certs)`` in worker processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor = self._new_executor()
        self._queue: deque[_Request] = deque()
        self._in_flight = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["services.certificates.rendering"])
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=context)

    async def start(self) -> None:
        """Spawn every worker now (and load fonts there), so that the first certificate is not slow."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, _warm_up) for _ in range(self.workers)))

    async def render(self, template: TemplateSpec, cert: CertificateData) -> bytes:
        return (await self.render_many(template, [cert]))[0]

    async def render_many(self, template: TemplateSpec, certs: Sequence[CertificateData]) -> list[bytes]:
        """Render ``certs`` (spread over every worker); the result keeps their order."""
        loop = asyncio.get_running_loop()
        requests = [_Request(template, cert, loop.create_future()) for cert in certs]
        self._queue.extend(requests)
        self._dispatch()
        try:
            return list(await asyncio.gather(*(r.result for r in requests)))
        except BaseException:
            for request in requests:  # cancelled or failed: take back what has not left yet
                request.result.cancel()
            raise

    def _dispatch(self) -> None:
        while self._in_flight < self.workers and self._queue:
            batch = self._next_batch()
            if not batch:
                continue
            self._in_flight += 1
            try:
                future = self._executor.submit(_render_batch, batch[0].template, [r.cert for r in batch])
            except BaseException as exc:  # a broken pool refuses work at once
                self._in_flight -= 1
                self._fail(batch, exc)
                continue
            future.add_done_callback(self._completion(batch, asyncio.get_running_loop()))

    def _next_batch(self) -> list[_Request]:
        """Up to an even share of the queued requests that use the first one's template."""
        while self._queue and self._queue[0].result.done():  # cancelled by its caller
            self._queue.popleft()
        if not self._queue:
            return []
        template = self._queue[0].template
        same = [r for r in self._queue if r.template is template or r.template == template]
        size = min(MAX_BATCH, -(-len(same) // self.workers))
        batch = [r for r in same if not r.result.done()][:size]
        chosen = {id(r) for r in batch}
        self._queue = deque(r for r in self._queue if id(r) not in chosen and not r.result.done())
        return batch

    def _completion(self, batch: list[_Request],
                    loop: asyncio.AbstractEventLoop) -> Callable[[Future[list[bytes]]], None]:
        def done(future: Future[list[bytes]]) -> None:  # runs in the executor's thread
            with contextlib.suppress(RuntimeError):  # the loop closed first: nobody is waiting any more
                loop.call_soon_threadsafe(self._finish, batch, future)

        return done

    def _finish(self, batch: list[_Request], future: Future[list[bytes]]) -> None:
        self._in_flight -= 1
        exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if exc is not None:
            if isinstance(exc, BrokenProcessPool):
                self._replace_broken_pool()
            self._fail(batch, exc)
        else:
            for request, pdf in zip(batch, future.result(), strict=True):
                if not request.result.done():
                    request.result.set_result(pdf)
        self._dispatch()

    @staticmethod
    def _fail(batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            if not request.result.done():
                request.result.set_exception(exc)

    def _replace_broken_pool(self) -> None:
        # A worker died (OOM killer, a crash in a C extension): new workers; the callers see the error and retry.
        log.error("render_pool_broken", workers=self.workers)
        old, self._executor = self._executor, self._new_executor()
        old.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        for request in self._queue:
            request.result.cancel()
        self._queue.clear()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
