"""A lean keep-alive HTTP/1.1 client for the hot path: small requests whose answers are small JSON documents.

The general client (aiohttp) costs more CPU per request than the rest of the gateway together; for the
single-resource GETs and JSON writes that make up the public API, this protocol writes the request in one
``transport.write`` and parses the answer with a few ``bytes`` operations. Anything else (streamed uploads, PDFs,
SCORM content) keeps using aiohttp.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any

MAX_BODY = 16 * 1024 * 1024  # JSON answers only; larger ones are a broken service


class UpstreamError(Exception):
    """The service could not be reached or gave no valid answer; ``status`` is the gateway's answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Connection(asyncio.Protocol):
    def __init__(self, pool: LeanPool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, list[tuple[str, str]], bytes]] | None = None
        self.closed = False
        self.received_any = False
        self._head: tuple[int, list[tuple[str, str]], int, bool, bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self._head is not None and self._head[2] == -1 and not self._head[3]:
                status, headers, _, _, _ = self._head  # body delimited by the end of the connection
                waiter.set_result((status, headers, bytes(self.buffer)))
            else:
                waiter.set_exception(ConnectionResetError("connection closed by the service"))

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            result = self._parse()
        except Exception as exc:
            waiter.set_exception(exc)
            self.abort()
            return
        if result is not None:
            waiter.set_result(result)

    def _parse(self) -> tuple[int, list[tuple[str, str]], bytes] | None:
        if self._head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    raise ValueError("response head too large")
                return None
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[: end + 4]
            version, _, rest = lines[0].partition(" ")
            status = int(rest[:3])
            headers: list[tuple[str, str]] = []
            length = -1
            chunked = False
            keep_alive = version == "HTTP/1.1"
            for line in lines[1:]:
                name, _, value = line.partition(":")
                value = value.strip()
                lower = name.lower()
                if lower == "content-length":
                    length = int(value)
                    if length > MAX_BODY:
                        raise ValueError("response too large for the lean client")
                elif lower == "transfer-encoding":
                    chunked = "chunked" in value.lower()
                elif lower == "connection":
                    keep_alive = value.lower() == "keep-alive" if version != "HTTP/1.1" else value.lower() != "close"
                headers.append((name, value))
            if status in (204, 304) or 100 <= status < 200:
                length = 0
            self._head = (status, headers, length, chunked, keep_alive)
        status, headers, length, chunked, keep_alive = self._head
        if chunked:
            body = self._dechunk()
            if body is None:
                return None
        elif length >= 0:
            if len(self.buffer) < length:
                return None
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        else:
            return None  # delimited by close: connection_lost finishes it
        self._head = None
        if not keep_alive:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        return status, headers, body

    def _dechunk(self) -> bytes | None:
        out = bytearray()
        pos = 0
        buf = self.buffer
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)  # optional trailers, then an empty line
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 4]
                return bytes(out)
            start = line_end + 2
            if len(buf) < start + size + 2:
                return None
            out += buf[start:start + size]
            if len(out) > MAX_BODY:
                raise ValueError("response too large for the lean client")
            pos = start + size + 2

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class LeanPool:
    """Idle keep-alive connections to one service."""

    def __init__(self, host: str, port: int, *, connect_timeout: float, read_timeout: float, max_idle: int = 256):
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: deque[_Connection] = deque()
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(503, f"cannot connect: {exc!r}") from None
        return protocol

    async def request(self, method: str, path_qs: str, headers: dict[str, str],
                      body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        head = [f"{method} {path_qs} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in headers.items():
            head.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n".encode())
        head.append(b"\r\n")
        if body:
            head.append(body)
        payload = b"".join(head)
        for attempt in (0, 1):
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                return await self._exchange(conn, payload)
            except ConnectionResetError:
                # A kept-alive connection the service had already closed: retry once on a fresh one, only when
                # nothing came back and the method is safe to repeat.
                if attempt == 0 and reused and not conn.received_any and method in ("GET", "HEAD"):
                    continue
                raise UpstreamError(503, "the service closed the connection") from None
        raise UpstreamError(503, "the service closed the connection")

    async def _exchange(self, conn: _Connection, payload: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, list[tuple[str, str]], bytes]] = loop.create_future()
        conn.waiter = waiter
        conn.received_any = False
        assert conn.transport is not None
        conn.transport.write(payload)
        timer = loop.call_later(self.read_timeout, _expire, waiter)
        try:
            result = await waiter
        except TimeoutError:
            conn.abort()
            raise UpstreamError(504, "the service did not answer in time") from None
        except ValueError as exc:
            conn.abort()
            raise UpstreamError(502, f"invalid answer: {exc}") from None
        finally:
            timer.cancel()
            conn.waiter = None
        if not conn.closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        elif not conn.closed:
            conn.abort()
        return result

    def close(self) -> None:
        while self._idle:
            self._idle.pop().abort()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
