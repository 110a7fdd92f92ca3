"""The admin UI's only way to change anything: the gateway's admin API, over HTTP, with the admin token.

By default the UI calls the gateway it runs in, on the local address the browser's request arrived at (so the
UI works on whatever port and interface the gateway listens on); ``LEARN_GATEWAY_UI_API_URL`` overrides that.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web

log = structlog.get_logger("gateway.ui")

API_PREFIX = "/admin/api/v1"


class AdminApiError(Exception):
    """The admin API said no (``status`` >= 400) or could not be reached (``status`` 503, code ``unreachable``)."""

    def __init__(self, status: int, code: str, message: str, route: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.route = route  # "POST /tenants/acme/..." (for the message when the API lacks the route)

    @property
    def no_such_route(self) -> bool:
        """The API has no such endpoint (as opposed to a missing resource)."""
        return self.status in (404, 405) and self.code in ("not_found", "method_not_allowed")


@dataclass(frozen=True)
class Reply:
    data: Any
    next_cursor: str | None = None


@dataclass(frozen=True)
class Document:
    """A binary answer (a PDF, a preview image)."""

    content_type: str
    body: bytes


def tenant_path(slug: str, rest: str = "") -> str:
    return f"/tenants/{quote(slug, safe='')}" + (f"/{rest}" if rest else "")


def _params(params: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}


class AdminClient:
    """One pooled HTTP session for the UI's calls; :meth:`for_request` binds it to an API base URL."""

    def __init__(self, admin_token: str, api_url: str | None, timeout: float):
        self.admin_token = admin_token
        self.api_url = api_url.rstrip("/") if api_url else None
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout, cookie_jar=aiohttp.DummyCookieJar(),
                                              trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def for_request(self, request: web.Request, token: str | None = None) -> AdminApi:
        """The admin API for this request, as the operator or (``token``: a staff session) as that member."""
        assert self._session is not None, "AdminClient.start() first"
        return AdminApi(self._session, token or self.admin_token, (self.api_url or _local_base(request)) + API_PREFIX)


def _local_base(request: web.Request) -> str:
    """The gateway itself, reached at the local address of the connection the browser's request came in on."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        raise AdminApiError(503, "unreachable", "The admin API address is unknown; set LEARN_GATEWAY_UI_API_URL.")
    host, port = sockname[0], sockname[1]  # an accepted connection's own address: never the wildcard
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class AdminApi:
    def __init__(self, session: aiohttp.ClientSession, token: str, base: str):
        self.session = session
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Reply:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None, params: Mapping[str, Any] | None = None) -> Reply:
        return await self.call("POST", path, body=body if body is not None else {}, params=params)

    async def put(self, path: str, body: Any) -> Reply:
        return await self.call("PUT", path, body=body)

    async def delete(self, path: str) -> Reply:
        return await self.call("DELETE", path)

    async def call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None,
                   data: bytes | AsyncIterator[bytes] | None = None, content_type: str | None = None) -> Reply:
        headers = dict(self.headers)
        payload: Any = data
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif content_type is not None:
            headers["Content-Type"] = content_type
        try:
            async with self.session.request(method, self.base + path, params=_params(params), data=payload,
                                            headers=headers, allow_redirects=False) as resp:
                raw = await resp.read()
                status = resp.status
                ctype = resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("admin_api_unreachable", method=method, path=path, error=repr(exc))
            raise AdminApiError(503, "unreachable", "The admin API could not be reached; retry shortly.") from None
        document = _json(raw) if "json" in ctype else None
        if status >= 400:
            raise _refusal(status, document, f"{method} {API_PREFIX}{path}")
        if not isinstance(document, dict) or "data" not in document:
            raise AdminApiError(502, "bad_answer", "The admin API gave an answer the UI does not understand.")
        return Reply(document["data"], document.get("next_cursor"))

    async def document(self, method: str, path: str, *, body: Any = None,
                       params: Mapping[str, Any] | None = None) -> Document:
        """A binary answer (PDF, PNG); JSON errors raise :class:`AdminApiError` like :meth:`call`."""
        headers = {**self.headers, "Accept": "*/*"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(method, self.base + path, params=_params(params), data=payload,
                                            headers=headers, allow_redirects=False) as resp:
                raw = await resp.read()
                status, ctype = resp.status, resp.headers.get("Content-Type", "application/octet-stream")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("admin_api_unreachable", method=method, path=path, error=repr(exc))
            raise AdminApiError(503, "unreachable", "The admin API could not be reached; retry shortly.") from None
        if status >= 400:
            raise _refusal(status, _json(raw) if "json" in ctype else None, f"{method} {API_PREFIX}{path}")
        return Document(ctype.split(";")[0].strip(), raw)

    async def all_pages(self, path: str, *, most: int = 1000, params: Mapping[str, Any] | None = None
                        ) -> list[Any]:
        """Every item of a list endpoint, up to ``most`` (the UI's pickers need whole lists)."""
        items: list[Any] = []
        cursor: str | None = None
        while len(items) < most:
            reply = await self.get(path, {**(params or {}), "limit": 100, "cursor": cursor})
            items.extend(reply.data)
            cursor = reply.next_cursor
            if not cursor:
                break
        return items[:most]


def _refusal(status: int, document: Any, route: str) -> AdminApiError:
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        return AdminApiError(status, str(error.get("code", "error")), str(error.get("message", "")), route)
    return AdminApiError(status, "error", f"The admin API answered {status}.", route)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
