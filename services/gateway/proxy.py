"""Forwarding to the services: pooled keep-alive connections, timeouts, bodies streamed both ways; the lean
client of the hot path; the client's address as trusted proxies forward it.

Small responses (the common case) are read whole and sent with one write; large or unsized ones (PDFs, SCORM
content) are streamed chunk by chunk. Request bodies above a small size, or without a length, are streamed with
a byte counter that stops at the route's limit (413).

The lean client (``LeanPool``, ADR 0003): the general client (aiohttp) costs more CPU per request than the rest of
the gateway together; for the single-resource GETs and JSON writes that make up the public API, this protocol
writes the request in one ``transport.write`` and parses the answer with a few ``bytes`` operations. Anything
else (streamed uploads, PDFs, SCORM content) keeps using aiohttp.

The client's address (``TrustedProxies``, ``client_ip``), as the gateway uses it for sign-in lockouts,
admin-token failure limits and the ``X-Forwarded-For`` it passes to the services. Behind an ingress every request
comes from the ingress's address, so the peer address alone would put every operator in one bucket.
``X-Forwarded-For`` is honoured only when the peer is a trusted proxy (``LEARN_TRUSTED_PROXIES``, CIDRs, default
none): the header is read right to left, skipping trusted proxies, and the first address that is not one is the
client. A client that is not a trusted proxy cannot choose its address by sending the header.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from services.gateway.domain import CausalExchange
from shared.consistency import H_EVENTS, H_EVENTS_TENANT
from shared.http import H_REQUEST_ID, ApiError
from shared.idempotency import HEADER as IDEMPOTENCY_HEADER
from shared.idempotency import parse_key

log = structlog.get_logger("gateway.proxy")

# Client headers a service may see; everything else (X-Learn-* above all) is dropped.
FORWARDED_REQUEST_HEADERS = (
    "Content-Type", "Accept", "Accept-Encoding", "Accept-Language", "If-None-Match", "If-Modified-Since",
    "If-Match", "Range", "If-Range", "User-Agent", "Content-Encoding", IDEMPOTENCY_HEADER,
    # resumable uploads (tus 1.0.0)
    "Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata",
)
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Content-Length", "Date", "Server", H_REQUEST_ID, H_EVENTS, H_EVENTS_TENANT,
))
_EVENTS, _EVENTS_TENANT = H_EVENTS.lower(), H_EVENTS_TENANT.lower()
BUFFER_LIMIT = 256 * 1024  # bodies up to this size are read whole; larger ones are streamed
CHUNK = 64 * 1024


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The request body is over the limit of {limit} bytes.")


def unavailable(status: int, message: str) -> ApiError:
    return ApiError(status, "service_unavailable", message, {"Retry-After": "1"} if status == 503 else None)


class _LimitedBody:
    """Streams the client's body upstream and stops once it passes ``limit`` bytes."""

    def __init__(self, content: aiohttp.StreamReader, limit: int):
        self.content = content
        self.limit = limit
        self.sent = 0
        self.exceeded = False

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.content.iter_chunked(CHUNK):
            self.sent += len(chunk)
            if self.sent > self.limit:
                self.exceeded = True
                raise ConnectionAbortedError("request body over the limit")
            yield chunk


def _forwarded_headers(request: web.Request, headers: dict[str, str]) -> None:
    """Add to ``headers`` what the gateway forwards of the client's request: the allowed headers (a malformed
    Idempotency-Key is a 400 here: a key that is not ASCII would not arrive intact) and ``X-Forwarded-For``."""
    for name in FORWARDED_REQUEST_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
    if IDEMPOTENCY_HEADER in headers:
        parse_key(headers[IDEMPOTENCY_HEADER])
    headers["X-Forwarded-For"] = client_ip(request)


class Upstreams:
    """One pooled client session for every service the gateway talks to."""

    def __init__(self, urls: dict[str, str], *, connect_timeout: float, read_timeout: float, pool_size: int):
        self.bases = {name: url.rstrip("/") for name, url in urls.items()}
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                             sock_read=read_timeout)
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self.lean: dict[str, LeanPool] = {}
        for name, base in self.bases.items():
            url = URL(base)
            if url.scheme == "http" and url.host:
                self.lean[name] = LeanPool(url.host, url.port or 80, connect_timeout=connect_timeout,
                                           read_timeout=read_timeout, max_idle=pool_size)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.pool_size * len(self.bases), limit_per_host=self.pool_size,
                                         keepalive_timeout=60, ttl_dns_cache=300)
        # No cookie jar: a cookie from one tenant's response must never ride on another's request.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self.timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"), trust_env=False,
        )

    async def close(self) -> None:
        for pool in self.lean.values():
            pool.close()
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Upstreams.start() first"
        return self._session

    async def forward(self, request: web.Request, upstream: str, path_qs: str, headers: dict[str, str],
                      body_limit: int, response_headers: dict[str, str],
                      causal: CausalExchange | None = None) -> web.StreamResponse:
        """Send ``request`` to ``upstream`` at ``path_qs`` with ``headers`` (identity already set); the answer
        carries ``response_headers`` too."""
        _forwarded_headers(request, headers)
        body: bytes | AsyncIterator[bytes] | None = None
        limited: _LimitedBody | None = None
        if request.body_exists:
            length = request.content_length
            if length is not None and length > body_limit:
                raise payload_too_large(body_limit)
            if length is not None and length <= BUFFER_LIMIT:
                body = await request.content.readexactly(length) if length else b""
            else:
                limited = _LimitedBody(request.content, body_limit)
                body = limited.chunks()
        url = URL(self.bases[upstream] + path_qs, encoded=True)
        try:
            async with self.session.request(request.method, url, headers=headers, data=body,
                                            allow_redirects=False) as upstream_response:
                if causal is not None:
                    response_headers = {**response_headers, **causal.finish(
                        upstream_response.status, upstream_response.headers.get(H_EVENTS),
                        upstream_response.headers.get(H_EVENTS_TENANT))}
                return await self._relay(request, upstream_response, response_headers)
        except (TimeoutError, aiohttp.ClientError, ConnectionAbortedError, OSError) as exc:
            if limited is not None and limited.exceeded:
                raise payload_too_large(body_limit) from None
            if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
                log.warning("upstream_timeout", upstream=upstream, error=repr(exc))
                raise unavailable(504, f"The {upstream} service did not answer in time; retry shortly.") from None
            if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError | ConnectionError):
                log.warning("upstream_unavailable", upstream=upstream, error=repr(exc))
                raise unavailable(503, f"The {upstream} service is unavailable; retry shortly.") from None
            log.warning("upstream_bad_response", upstream=upstream, error=repr(exc))
            raise unavailable(502, f"The {upstream} service gave an invalid answer; retry shortly.") from None

    async def forward_small(self, request: web.Request, upstream: str, path_qs: str, headers: dict[str, str],
                            body_limit: int, response_headers: dict[str, str],
                            causal: CausalExchange | None = None) -> web.StreamResponse:
        """The hot path: a request with at most a small body whose answer is a JSON document (lean client)."""
        pool = self.lean.get(upstream)
        length = request.content_length
        chunked = request.body_exists and length is None
        if pool is None or chunked or (length is not None and length > BUFFER_LIMIT):
            return await self.forward(request, upstream, path_qs, headers, body_limit, response_headers, causal)
        _forwarded_headers(request, headers)
        body = await request.content.readexactly(length) if length else None
        try:
            status, raw_headers, payload = await pool.request(request.method, path_qs, headers, body)
        except UpstreamError as exc:
            log.warning("upstream_failed", upstream=upstream, status=exc.status, error=str(exc))
            what = {503: "is unavailable", 504: "did not answer in time"}.get(exc.status, "gave an invalid answer")
            raise unavailable(exc.status, f"The {upstream} service {what}; retry shortly.") from None
        out: CIMultiDict[str] = CIMultiDict()
        events = events_tenant = None
        for name, value in raw_headers:
            lower = name.lower()
            if lower not in _HOP_BY_HOP:
                out.add(name, value)
            elif lower == _EVENTS:
                events = value
            elif lower == _EVENTS_TENANT:
                events_tenant = value
        out.update(response_headers)
        if causal is not None:
            out.update(causal.finish(status, events, events_tenant))
        return web.Response(status=status, body=payload, headers=out)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse,
                     extra: dict[str, str]) -> web.StreamResponse:
        headers = _response_headers(upstream.headers)
        headers.update(extra)
        length = upstream.content_length
        if length is not None and length <= BUFFER_LIMIT:
            return web.Response(status=upstream.status, body=await upstream.read(), headers=headers)
        response = web.StreamResponse(status=upstream.status, headers=headers)
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Too late for an error envelope: cut the connection so the client sees a broken transfer,
            # never a short body that looks complete.
            log.warning("upstream_stream_broken", error=repr(exc))
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


def _response_headers(source: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in source.items():
        if name.lower() not in _HOP_BY_HOP:
            out.add(name, value)
    return out


# --- the lean client -----------------------------------------------------------------------------------

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


# --- the client's address ------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CLIENT_IP_KEY = web.RequestKey("client_ip", str)


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str] = ()):
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(c.strip(), strict=False)
                                                   for c in cidrs if c.strip())

    @classmethod
    def parse(cls, setting: str | None) -> TrustedProxies:
        """``"10.0.0.0/8, 192.168.1.7"`` (commas or spaces); a bad entry is a ValueError at start-up."""
        return cls((setting or "").replace(",", " ").split())

    def trusted(self, address: str | None) -> bool:
        ip = _parse(address) if self.networks else None
        return ip is not None and any(ip in network for network in self.networks)

    def client_ip(self, request: web.BaseRequest) -> str:
        """The client's address (cached on the request); ``"unknown"`` when the transport has none."""
        cached = request.get(CLIENT_IP_KEY)
        if cached is not None:
            return str(cached)
        peer = request.remote or "unknown"
        client = peer
        if self.trusted(peer):
            hops = [h.strip() for line in request.headers.getall("X-Forwarded-For", ()) for h in line.split(",")]
            for hop in reversed([h for h in hops if h]):
                client = hop
                if not self.trusted(hop):
                    break
            client = _normalised(client)
        request[CLIENT_IP_KEY] = client
        return client


TRUSTED_PROXIES_KEY = web.AppKey("trusted_proxies", TrustedProxies)
_UNTRUSTING = TrustedProxies()


def client_ip(request: web.BaseRequest) -> str:
    """The client's address by the gateway app's trusted proxies (none configured: the peer address)."""
    proxies = request.config_dict.get(TRUSTED_PROXIES_KEY, _UNTRUSTING) if isinstance(request, web.Request) \
        else _UNTRUSTING
    return proxies.client_ip(request)


def _parse(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: ``203.0.113.7``, ``203.0.113.7:51234``, ``[2001:db8::1]:443``,
    ``2001:db8::1``, ``fe80::1%eth0``; an IPv4-mapped IPv6 address as its IPv4 address."""
    text = (address or "").strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _normalised(hop: str) -> str:
    """A valid address as it prints; anything else (a forged or garbled hop) as one fixed bucket."""
    ip = _parse(hop)
    return str(ip) if ip is not None else "invalid-forwarded-for"
