"""PDF rendering off the event loop: worker processes, one renderer each, fed through pipes.

Rendering is CPU-bound pure Python, so threads would share one core: processes use them all. Workers start from
a forkserver that has already imported reportlab and the fonts, so they start in a fraction of a second and
never inherit the service's threads, sockets or event loop.

Each worker has its own duplex pipe, watched by the event loop (``add_reader``): a batch goes out as one
write and its PDFs come back as one message, with no executor threads, wake-up pipes or thread hand-offs in
between. What crosses the process boundary per certificate is what a certificate costs beyond its render, so:

- requests are batched: at most one batch per worker in flight; whatever queued meanwhile (same template)
  leaves as the next batch, an even share of the queue, at most :data:`MAX_BATCH`. An idle pool renders a lone
  certificate at once;
- a stored template (``id > 0``: its content is fixed per version) is sent to a worker once per
  ``(id, version, issuer)``; later batches name it. The worker also prepares its logo and background once.

A worker that dies (OOM killer, a crash in a C extension) is replaced; the callers of its batch get
:class:`RenderFailed` (a consumer then retries its message, a regeneration lane its batch). Workers exit when
the service closes their pipe or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import signal
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from services.certificates.pdf import CertificateData, CertificateRenderer, TemplateSpec

log = structlog.get_logger("certificates.rendering")

MAX_BATCH = 16
_TEMPLATES_PER_WORKER = 32


class RenderFailed(RuntimeError):
    """A render did not complete (the template could not be rendered, or the worker died)."""


# --- the worker process ------------------------------------------------------------------------------------


def _serve(conn: Connection) -> None:
    """A worker's life: read a batch, render it, send the PDFs back; until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the service, which then closes our pipe
    renderer = CertificateRenderer()
    templates: OrderedDict[Any, TemplateSpec] = OrderedDict()
    conn.send_bytes(b"ready")
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        token, template, certs = pickle.loads(message)  # noqa: S301 - from our own process, through our own pipe
        try:
            if template is None:
                template = templates[token]
            elif token is not None:
                templates[token] = template
                while len(templates) > _TEMPLATES_PER_WORKER:
                    templates.popitem(last=False)
            reply: tuple[list[bytes] | None, str | None] = ([renderer.render(template, c) for c in certs], None)
        except Exception as exc:  # a bug or an unrenderable input: report it, keep serving
            reply = (None, f"{type(exc).__name__}: {exc}")
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError):
            return


# --- the service side --------------------------------------------------------------------------------------


@dataclass
class _Request:
    template: TemplateSpec
    cert: CertificateData
    result: asyncio.Future[bytes]


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    batch: list[_Request] | None = None
    known: OrderedDict[Any, None] = field(default_factory=OrderedDict)


def _token(template: TemplateSpec) -> Any:
    """How a worker recognises a template it already has; None: send it every time (built-in, previews)."""
    return (template.id, template.version, template.issuer_name) if template.id > 0 else None


class RenderPool:
    """``await pool.render(template, cert)`` / ``await pool.render_many(template, certs)`` in worker processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["services.certificates.rendering"])
        self._pool: list[_Worker] = []
        self._queue: deque[_Request] = deque()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.process.pid is not None]

    async def start(self) -> None:
        """Start every worker and wait until each has loaded its fonts, so the first certificate is not slow."""
        self._loop = asyncio.get_running_loop()
        workers = await asyncio.gather(*(asyncio.to_thread(self._spawn) for _ in range(self.workers)))
        for worker in workers:
            self._watch(worker)

    def _spawn(self) -> _Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_serve, args=(theirs,), name="certificate-renderer", daemon=True)
        process.start()
        theirs.close()
        if ours.recv_bytes() != b"ready":  # blocks until fonts are loaded; EOFError if the worker died
            raise RenderFailed("a render worker did not start")
        return _Worker(process, ours)

    def _watch(self, worker: _Worker) -> None:
        assert self._loop is not None
        self._pool.append(worker)
        self._loop.add_reader(worker.conn.fileno(), self._on_reply, worker)
        self._dispatch()

    async def render(self, template: TemplateSpec, cert: CertificateData) -> bytes:
        return (await self.render_many(template, [cert]))[0]

    async def render_many(self, template: TemplateSpec, certs: Sequence[CertificateData]) -> list[bytes]:
        """Render ``certs`` (spread over every worker); the result keeps their order."""
        if self._closing:
            raise RenderFailed("the render pool is closed")
        loop = asyncio.get_running_loop()
        requests = [_Request(template, cert, loop.create_future()) for cert in certs]
        self._queue.extend(requests)
        self._dispatch()
        try:
            return list(await asyncio.gather(*(r.result for r in requests)))
        except BaseException:
            for request in requests:  # cancelled or failed: what has not left yet never will
                request.result.cancel()
            raise

    def _dispatch(self) -> None:
        for worker in self._pool:
            if worker.batch is not None:
                continue
            batch = self._next_batch()
            if not batch:
                return
            self._send(worker, batch)

    def _next_batch(self) -> list[_Request]:
        """Up to an even share of the queued requests that use the first one's template."""
        while self._queue and self._queue[0].result.done():  # cancelled by its caller
            self._queue.popleft()
        if not self._queue:
            return []
        template = self._queue[0].template
        same = [r for r in self._queue if not r.result.done() and (r.template is template or r.template == template)]
        batch = same[: min(MAX_BATCH, -(-len(same) // self.workers))]
        chosen = {id(r) for r in batch}
        self._queue = deque(r for r in self._queue if id(r) not in chosen and not r.result.done())
        return batch

    def _send(self, worker: _Worker, batch: list[_Request]) -> None:
        template = batch[0].template
        token = _token(template)
        known = token is not None and token in worker.known
        try:
            message = pickle.dumps((token, None if known else template, [r.cert for r in batch]),
                                   protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # never leave a caller waiting for a batch that cannot leave
            self._fail(batch, RenderFailed(f"cannot send the batch to a worker: {exc!r}"))
            return
        worker.batch = batch
        try:
            # The worker is idle, blocked reading its pipe: the write completes at once.
            worker.conn.send_bytes(message)
        except OSError:
            self._lost(worker)
            return
        if token is not None:
            worker.known[token] = None
            worker.known.move_to_end(token)
            while len(worker.known) > _TEMPLATES_PER_WORKER:
                worker.known.popitem(last=False)

    def _on_reply(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._lost(worker)
            return
        batch, worker.batch = worker.batch or [], None
        pdfs, error = pickle.loads(message)  # noqa: S301 - from our own worker, through our own pipe
        if not batch:
            log.warning("render_reply_without_batch", pid=worker.process.pid)
        elif error is not None:
            log.error("certificate_render_failed", error=error, certificates=len(batch))
            self._fail(batch, RenderFailed(error))
        else:
            for request, pdf in zip(batch, pdfs, strict=True):
                if not request.result.done():
                    request.result.set_result(pdf)
        self._dispatch()

    def _lost(self, worker: _Worker) -> None:
        """A worker died: fail its batch, forget it, start another."""
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_reader(worker.conn.fileno())
        with contextlib.suppress(Exception):
            worker.conn.close()
        if worker in self._pool:
            self._pool.remove(worker)
        self._fail(worker.batch or [], RenderFailed("the render worker died"))
        worker.batch = None
        if self._closing:
            return
        log.error("render_worker_died", pid=worker.process.pid, exitcode=worker.process.exitcode)
        replacement = self._loop.create_task(asyncio.to_thread(self._spawn))
        replacement.add_done_callback(self._replaced)

    def _replaced(self, task: asyncio.Task[_Worker]) -> None:
        if task.cancelled() or task.exception() is not None:
            log.error("render_worker_restart_failed", error=repr(task.exception()) if not task.cancelled() else "")
            return
        worker = task.result()
        if self._closing:
            worker.conn.close()
            return
        self._watch(worker)

    @staticmethod
    def _fail(batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            if not request.result.done():
                request.result.set_exception(exc)

    async def close(self) -> None:
        self._closing = True
        for request in self._queue:
            request.result.cancel()
        self._queue.clear()
        for worker in list(self._pool):
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(worker.conn.fileno())
            self._fail(worker.batch or [], RenderFailed("the render pool is closed"))
            worker.conn.close()  # the worker reads EOF and exits
        processes = [w.process for w in self._pool]
        self._pool.clear()
        await asyncio.to_thread(_reap, processes)


def _reap(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
