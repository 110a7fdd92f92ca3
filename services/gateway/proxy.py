"""Forwarding to the services: pooled keep-alive connections, timeouts, bodies streamed both ways.

Small responses (the common case) are read whole and sent with one write; large or unsized ones (PDFs, SCORM
content) are streamed chunk by chunk. Request bodies above a small size, or without a length, are streamed with
a byte counter that stops at the route's limit (413).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from services.gateway.clientip import client_ip
from services.gateway.consistency import CausalExchange
from services.gateway.lean import LeanPool, UpstreamError
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
