"""PDF rendering off the event loop: worker processes, one renderer each, fed through pipes.

Rendering is CPU-bound pure Python, so threads would share one core: processes use them all. Workers start from
a forkserver that has already imported reportlab and the fonts, so they start in a fraction of a second and
never inherit the service's threads, sockets or event loop.

Each worker has its own duplex pipe, an asyncio stream on the service side: a batch goes out as one frame and
its PDFs come back as one, with no executor threads, wake-up pipes or thread hand-offs in between. What
crosses the process boundary per certificate is what a certificate costs beyond its render, so:

- requests are batched: at most one batch per worker in flight; whatever queued meanwhile (same template)
  leaves as the next batch, an even share of the queue, at most :data:`MAX_BATCH`. An idle pool renders a lone
  certificate at once;
- a stored template (``id > 0``: its content is fixed per version) is sent to a worker once per
  ``(id, version, issuer)``; later batches name it. The worker also prepares its logo and background once.

A worker that dies (OOM killer, a crash in a C extension) is replaced, and its batch goes back to the front of
the queue once, for another worker; only a certificate whose worker died twice fails with :class:`RenderFailed`
(a consumer then retries its message, a regeneration lane its batch, an API call answers 503). A worker counts
as dead only when its end of the pipe is closed: the pool never closes the pipe of a live worker except to stop
it. Workers exit when the service closes their pipe or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from services.certificates.pdf.render import CertificateRenderer
from services.certificates.pdf.spec import CertificateData, TemplateSpec

log = structlog.get_logger("certificates.rendering")

MAX_BATCH = 16
_TEMPLATES_PER_WORKER = 32


class RenderFailed(RuntimeError):
    """A render did not complete (the template could not be rendered, or the worker died)."""


# --- the worker process ------------------------------------------------------------------------------------

#: The worker's answer to a batch that names a template it no longer holds: the pool sends the template again.
UNKNOWN_TEMPLATE = "unknown template"


def _remember(templates: OrderedDict[Any, Any], token: Any, value: Any) -> None:
    """Least recently used first out; the pool keeps the same order for what it believes each worker holds."""
    templates[token] = value
    templates.move_to_end(token)
    while len(templates) > _TEMPLATES_PER_WORKER:
        templates.popitem(last=False)


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
        reply: tuple[list[bytes] | None, str | None]
        if template is None and token not in templates:
            reply = (None, UNKNOWN_TEMPLATE)
        else:
            try:
                if template is None:
                    template = templates[token]
                if token is not None:
                    _remember(templates, token, template)
                reply = ([renderer.render(template, c) for c in certs], None)
            except Exception as exc:  # a bug or an unrenderable input: report it, keep serving
                reply = (None, f"{type(exc).__name__}: {exc}")
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError):
            return


# --- the service side --------------------------------------------------------------------------------------
#
# The service end of each pipe is an asyncio stream over the socket (``multiprocessing.Pipe`` is a socket pair
# on Linux), framed the way ``Connection.send_bytes`` frames. It used to be read and written with the blocking
# ``Connection`` calls from an ``add_reader`` callback; but the event loop's poller (libuv, under uvloop) puts
# the descriptor in non-blocking mode, so a reply or a template larger than the socket buffer raised
# ``BlockingIOError`` half-way, which was taken for a dead worker: the service closed the pipe of a live worker
# (which then exited on the broken pipe of its reply) and failed its batch. Streams read and write whatever the
# socket takes, and a worker counts as lost only when its end of the pipe is really closed.


def _frame(payload: bytes) -> bytes:
    """``Connection.send_bytes`` framing: a signed 32-bit big-endian length, or -1 and a 64-bit one."""
    size = len(payload)
    if size > 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", size) + payload
    return struct.pack("!i", size) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack("!i", await reader.readexactly(4))
    if size == -1:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return await reader.readexactly(size)


@dataclass
class _Request:
    template: TemplateSpec
    cert: CertificateData
    result: asyncio.Future[bytes]
    retried: bool = False  # already sent again once after its worker died


@dataclass
class _Worker:
    process: BaseProcess
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    batch: list[_Request] | None = None
    known: OrderedDict[Any, None] = field(default_factory=OrderedDict)
    lost: bool = False
    task: asyncio.Task[None] | None = None


def _token(template: TemplateSpec) -> Any:
    """How a worker recognises a template it already has; None: send it every time (built-in, previews)."""
    return (template.id, template.version, template.issuer_name) if template.id > 0 else None


class RenderPool:
    """``await pool.render(template, cert)`` / ``await pool.render_many(template, certs)`` in worker processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["services.certificates.pdf.pool"])
        self._pool: list[_Worker] = []
        self._queue: deque[_Request] = deque()
        self._closing = False
        self._starting = 0  # replacements being started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.process.pid is not None]

    async def start(self) -> None:
        """Start every worker and wait until each has loaded its fonts, so the first certificate is not slow."""
        self._loop = asyncio.get_running_loop()
        spawned = await asyncio.gather(*(asyncio.to_thread(self._spawn) for _ in range(self.workers)))
        for process, conn in spawned:
            await self._adopt(process, conn)

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_serve, args=(theirs,), name="certificate-renderer", daemon=True)
        process.start()
        theirs.close()
        try:
            if ours.recv_bytes() != b"ready":  # blocks until fonts are loaded; EOFError if the worker died
                raise RenderFailed("a render worker did not start")
        except BaseException:
            ours.close()
            raise
        return process, ours

    async def _adopt(self, process: BaseProcess, conn: Connection) -> None:
        """Wrap the pipe in a stream, add the worker to the pool and start reading its replies."""
        sock = socket.socket(fileno=os.dup(conn.fileno()))  # the stream owns a duplicate; the Connection goes
        conn.close()
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        worker = _Worker(process, reader, writer)
        if self._closing:
            writer.close()
            await asyncio.to_thread(_reap, [process])
            return
        self._pool.append(worker)
        worker.task = asyncio.get_running_loop().create_task(self._read_replies(worker),
                                                             name=f"render-worker-{process.pid}")
        self._dispatch()

    async def _read_replies(self, worker: _Worker) -> None:
        try:
            while True:
                message = await _read_frame(worker.reader)
                self._on_reply(worker, message)
        except asyncio.CancelledError:
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the worker's end is closed: it exited, or was killed
        except Exception:
            log.exception("render_reply_unreadable", pid=worker.process.pid)
        self._lost(worker)

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
        if not self._pool and not self._starting and self._queue:
            # No worker and none coming (replacements failed to start): answer now rather than never.
            queued, self._queue = list(self._queue), deque()
            self._fail(queued, RenderFailed("no render worker is running"))

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
        # Buffered by the transport, however large: a write error closes the transport, and the reader then
        # sees the end of the stream and reports the worker lost (with this batch).
        worker.writer.write(_frame(message))
        if token is not None:
            _remember(worker.known, token, None)

    def _on_reply(self, worker: _Worker, message: bytes) -> None:
        # Unpickled first: should that fail, the batch is still the worker's and goes back with it as lost.
        pdfs, error = pickle.loads(message)  # noqa: S301 - from our own worker, through our own pipe
        batch, worker.batch = worker.batch or [], None
        if not batch:
            log.warning("render_reply_without_batch", pid=worker.process.pid)
        elif error == UNKNOWN_TEMPLATE:
            # The worker no longer holds the template this batch named: send it again, template included.
            worker.known.clear()
            self._queue.extendleft(reversed([r for r in batch if not r.result.done()]))
        elif error is not None:
            log.error("certificate_render_failed", error=error, certificates=len(batch))
            self._fail(batch, RenderFailed(error))
        else:
            for request, pdf in zip(batch, pdfs, strict=True):
                if not request.result.done():
                    request.result.set_result(pdf)
        self._dispatch()

    def _lost(self, worker: _Worker) -> None:
        """A worker's pipe closed (it died): retry its batch once elsewhere, forget it, start another."""
        if worker.lost:
            return
        worker.lost = True
        with contextlib.suppress(Exception):
            worker.writer.close()
        if worker in self._pool:
            self._pool.remove(worker)
        batch, worker.batch = [r for r in worker.batch or [] if not r.result.done()], None
        if self._closing:
            self._fail(batch, RenderFailed("the render pool is closed"))
            return
        again = [r for r in batch if not r.retried]
        twice = [r for r in batch if r.retried]
        for request in again:
            request.retried = True
        self._fail(twice, RenderFailed("the render worker died twice on this certificate"))
        self._queue.extendleft(reversed(again))
        log.error("render_worker_died", pid=worker.process.pid, exitcode=worker.process.exitcode,
                  retried=len(again))
        self._background(asyncio.to_thread(_reap, [worker.process]))
        self._starting += 1
        self._background(self._replace())
        self._dispatch()

    async def _replace(self) -> None:
        try:
            while not self._closing:
                try:
                    process, conn = await asyncio.to_thread(self._spawn)
                except Exception as exc:
                    log.error("render_worker_restart_failed", error=repr(exc))
                    if self._pool:
                        return  # the others carry on; the pool is one worker short
                    queued, self._queue = list(self._queue), deque()
                    self._fail(queued, RenderFailed("no render worker is running"))
                    await asyncio.sleep(1)
                    continue
                await self._adopt(process, conn)
                return
        finally:
            self._starting -= 1
            self._dispatch()

    def _background(self, job: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            worker.lost = True
            if worker.task is not None:
                worker.task.cancel()
            self._fail(worker.batch or [], RenderFailed("the render pool is closed"))
            with contextlib.suppress(Exception):
                worker.writer.close()  # the worker reads EOF and exits
        processes = [w.process for w in self._pool]
        self._pool.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.to_thread(_reap, processes)


def _reap(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
