"""HTTP plumbing shared by every service: envelopes, the one error type, middlewares, JSON bodies, cursors.

Envelopes follow CONTRACT.md §4:
success ``{"data": ..., "next_cursor": null | "...", "request_id": "req_..."}``,
error ``{"error": {"code": ..., "message": ..., "request_id": ...}}``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError
from structlog.contextvars import bind_contextvars, clear_contextvars

log = structlog.get_logger("shared.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

# Headers the gateway sets on every proxied request. Services trust them only with a valid internal credential.
H_INTERNAL = "X-Learn-Internal"
H_TENANT_ID = "X-Learn-Tenant-Id"
H_TENANT = "X-Learn-Tenant"
H_TENANT_NAME = "X-Learn-Tenant-Name"
H_KEY_ID = "X-Learn-Key-Id"
H_SCOPES = "X-Learn-Scopes"
H_OWNER_ID = "X-Learn-Owner-Id"
H_OWNER_NAME = "X-Learn-Owner-Name"
# A per-course API key: the course ids it is limited to, space-separated (ADR 0019). Absent: every course of the
# tenant. The gateway sets it from the key's row and drops any client-sent one (request headers are allow-listed).
H_COURSE_IDS = "X-Learn-Course-Ids"
# The acting tenant staff member on a forwarded admin call (ADR 0021); absent for the platform operator.
H_STAFF_ID = "X-Learn-Staff-Id"
H_STAFF_ROLE = "X-Learn-Staff-Role"
H_REQUEST_ID = "X-Request-Id"

REQUEST_ID_KEY = web.RequestKey("request_id", str)
CONTEXT_KEY = web.RequestKey("learn_context", object)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def not_found_message(resource: str) -> str:
    """``resource`` is the snake_case name: ``api_key`` gives "Api key not found."."""
    label = resource.replace("_", " ")
    return f"{label[0].upper()}{label[1:]} not found."


class ApiError(Exception):
    """The one error type: raised anywhere, rendered into the error envelope by :func:`error_middleware`."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, message: str) -> ApiError:
        return cls(400, "invalid_argument", message)

    @classmethod
    def missing(cls, field: str) -> ApiError:
        return cls(400, "missing_field", f"'{field}' is required and must not be empty.")

    @classmethod
    def not_found(cls, resource: str) -> ApiError:
        """``resource`` is the snake_case name: ``course`` gives ``404 course_not_found`` "Course not found."."""
        return cls(404, f"{resource}_not_found", not_found_message(resource))


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def request_id_of(request: web.Request) -> str:
    rid = request.get(REQUEST_ID_KEY)
    if rid is None:
        rid = new_request_id()
        request[REQUEST_ID_KEY] = rid
    return str(rid)


def ok(request: web.Request, data: Any, next_cursor: str | None = None, status: int = 200) -> web.Response:
    rid = request_id_of(request)
    body = dumps({"data": data, "next_cursor": next_cursor, "request_id": rid})
    return web.Response(
        text=body, status=status, content_type="application/json", headers={H_REQUEST_ID: rid}
    )


def error_body(code: str, message: str, request_id: str) -> str:
    return dumps({"error": {"code": code, "message": message, "request_id": request_id}})


def error_response(
    request_id: str, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    all_headers = {H_REQUEST_ID: request_id, **(headers or {})}
    return web.Response(
        text=error_body(code, message, request_id),
        status=status,
        content_type="application/json",
        headers=all_headers,
    )


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "a backing store is down", which are 503s, not bugs."""
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    # asyncpg's server errors by SQLSTATE class: 08 (connection) and 57P (shutdown, cannot connect now)
    if _is_asyncpg_connection_class(exc):
        return True
    # ... and the client-side ones: a closed connection, too many connections, its state machine left
    # mid-operation by a connection lost under it
    if type(exc).__name__ in {"InterfaceError", "TooManyConnectionsError", "InternalClientError"}:
        return True
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and cause is not None:
        return is_unavailable(cause)
    orig = getattr(exc, "orig", None)
    if orig is not None and orig is not exc:
        return is_unavailable(orig)
    return False


def _is_asyncpg_connection_class(exc: BaseException) -> bool:
    """SQLSTATE class 08 (connection exception) or 57P (operator intervention: shutdown, cannot connect now)."""
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(exc, asyncpg.PostgresConnectionError) or (
        isinstance(exc, asyncpg.PostgresError) and str(getattr(exc, "sqlstate", "")).startswith("57P"))


_HTTP_EXCEPTION_CODES = {
    404: ("not_found", "No such route."),
    405: ("method_not_allowed", "Method not allowed on this route."),
    413: ("payload_too_large", "The request body is over the size limit."),
    415: ("unsupported_media_type", "This endpoint takes application/json."),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the contract's error envelope; never leak a stack trace."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request_id_of(request), exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_EXCEPTION_CODES.get(exc.status, ("invalid_argument", exc.reason))
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(request_id_of(request), exc.status, code, message, headers)
    except Exception as exc:
        if is_unavailable(exc):
            log.warning("backing_store_unavailable", error=repr(exc), path=request.path)
            return error_response(
                request_id_of(request), 503, "service_unavailable",
                "A backing service is temporarily unavailable; retry shortly.", {"Retry-After": "1"},
            )
        log.exception("unhandled_error", path=request.path, method=request.method)
        return error_response(request_id_of(request), 500, "internal", "Internal error.")


def _protocol_error(self: Any, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                    message: str | None = None) -> web.StreamResponse:
    """aiohttp's answer to a request it could not parse or handle (bad request line, duplicate Host, a line over
    8190 bytes, a handler that escaped every middleware), in the error envelope. Unlike aiohttp's own
    ``text/plain`` page it never echoes the input, and a client's malformed request is a warning with the error's
    class only (the message holds the raw bytes: a token in the path would reach the log)."""
    from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

    if request.writer.output_size > 0:
        raise ConnectionError("Response is sent already, cannot send another response with the error message")
    rid = new_request_id()
    if status >= 500 and not isinstance(exc, HttpProcessingError):
        log.error("unhandled_protocol_error", request_id=rid, status=status, error=type(exc).__name__,
                  exc_info=exc)
        code, text = ("service_unavailable", "The request took too long; retry shortly.") if status == 504 else (
            "internal", "Internal error.")
    else:
        log.warning("bad_http_request", request_id=rid, status=status,
                    error=type(exc).__name__ if exc is not None else None)
        code, text = _HTTP_EXCEPTION_CODES.get(status, ("invalid_argument", ""))
        if status == 400 or not text:
            text = ("The request line or a header is over the size limit." if isinstance(exc, LineTooLong)
                    else "The request is not well-formed HTTP (request line or headers).")
    response = error_response(rid, status, code, text)
    response.force_close()
    return response


def install_protocol_error_envelope() -> None:
    """Make every aiohttp server in this process answer protocol errors with :func:`_protocol_error`.

    aiohttp has no hook for the answer to a request its parser refused (it never reaches a middleware), so the
    method of its connection handler is replaced; idempotent."""
    from aiohttp import web_protocol

    web_protocol.RequestHandler.handle_error = _protocol_error  # type: ignore[method-assign]


@web.middleware
async def service_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Adopt the gateway's request id (trusted: the internal credential was checked) and bind log context."""
    rid = request.headers.get(H_REQUEST_ID)
    if not rid or not rid.startswith("req_") or len(rid) > 64:
        rid = new_request_id()
    request[REQUEST_ID_KEY] = rid
    clear_contextvars()
    bind_contextvars(request_id=rid, tenant=request.headers.get(H_TENANT))
    if request.app.get(SERVICE_NAME_KEY):
        bind_contextvars(service=request.app[SERVICE_NAME_KEY])
    response = await handler(request)
    response.headers.setdefault(H_REQUEST_ID, rid)
    return response


SERVICE_NAME_KEY = web.AppKey("service_name", str)


def internal_auth_middleware(secret: str) -> Middleware:
    """Reject any request that did not come through the gateway (CONTRACT §1)."""
    expected = secret.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        given = request.headers.get(H_INTERNAL, "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "invalid_api_key", "This service only accepts requests through the gateway.",
                           {"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return middleware


@dataclass(frozen=True)
class RequestContext:
    """Who is calling, as forwarded by the gateway."""

    tenant_id: int
    tenant_slug: str
    tenant_name: str
    request_id: str
    key_id: int | None
    scopes: frozenset[str]
    owner_id: int | None
    owner_name: str | None
    #: the courses a per-course API key is limited to; None: every course of the tenant (ADR 0019)
    course_ids: frozenset[int] | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


def require_scope(ctx: RequestContext, scope: str) -> None:
    """The gateway checks scopes too; this keeps a service safe if a route is ever forwarded without it."""
    if scope not in ctx.scopes:
        raise ApiError(403, "insufficient_scope", f"This request needs the '{scope}' scope.")


def admin_only(handler: Handler) -> Handler:
    """``/admin/v1/*`` is the admin API's: the gateway forwards the scope ``admin`` for admin tokens only."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not context_of(request).is_admin:
            raise ApiError(403, "insufficient_scope", "This endpoint needs the 'admin' scope.")
        return await handler(request)

    return guarded


def context_of(request: web.Request) -> RequestContext:
    cached = request.get(CONTEXT_KEY)
    if cached is not None:
        return cached
    headers = request.headers
    try:
        tenant_id = int(headers[H_TENANT_ID])
        slug = headers[H_TENANT]
    except (KeyError, ValueError):
        raise ApiError(401, "invalid_api_key", "No tenant was forwarded by the gateway.") from None
    key_id = headers.get(H_KEY_ID)
    owner = headers.get(H_OWNER_ID)
    ctx = RequestContext(
        tenant_id=tenant_id,
        tenant_slug=slug,
        tenant_name=_unquote(headers.get(H_TENANT_NAME, slug)),
        request_id=request_id_of(request),
        key_id=positive_int(key_id),
        scopes=frozenset(s for s in headers.get(H_SCOPES, "").split(" ") if s),
        owner_id=positive_int(owner),
        owner_name=_unquote(headers[H_OWNER_NAME]) if H_OWNER_NAME in headers else None,
        course_ids=parse_course_ids(headers.get(H_COURSE_IDS)),
    )
    request[CONTEXT_KEY] = ctx
    return ctx


def parse_course_ids(raw: str | None) -> frozenset[int] | None:
    """The ``X-Learn-Course-Ids`` header: None when absent (no course limit). A present header that does not
    parse limits to no course at all (fail closed: a garbled limit must never widen to the whole tenant)."""
    if raw is None:
        return None
    ids: set[int] = set()
    for part in raw.split():
        value = positive_int(part)
        if value is None:
            return frozenset()
        ids.add(value)
    return frozenset(ids)


def format_course_ids(course_ids: Iterable[int]) -> str:
    return " ".join(str(c) for c in sorted(set(course_ids)))


def require_all_courses(ctx: RequestContext, what: str = "create a course") -> None:
    """A per-course key cannot act outside its courses: creating a course is refused (403 course_limited_key)."""
    if ctx.course_ids is not None:
        raise ApiError(403, "course_limited_key", f"This API key is limited to some courses; it cannot {what}.")


def _unquote(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


# --- JSON bodies -------------------------------------------------------------------------------------------


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body against ``model`` (which should forbid extra fields).

    Absent, null or blank required fields give ``400 missing_field`` naming the field; anything else that does
    not validate gives ``400 invalid_argument`` saying which field and why.
    """
    ctype = request.headers.get("Content-Type", "")
    if ctype and not ctype.split(";")[0].strip().lower().endswith(("/json", "+json")):
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.read()
    return validate_payload(parse_json_body(raw), model)


#: arrays and objects nest at most this deep in a request body (no body of the API needs more than 4)
MAX_JSON_DEPTH = 32


def parse_json_body(raw: bytes) -> Any:
    """The one JSON reader of request bodies: blank is ``{}``; malformed or over-nested is 400, never a 500.

    ``json.loads`` recurses in C and raises ``RecursionError`` (not a ``JSONDecodeError``) at about 1000 levels;
    anything shallower that still passes :data:`MAX_JSON_DEPTH` is refused by the walk in :func:`_check_text`.
    """
    if not raw.strip():
        return {}
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _nested_too_deep(raw):
        # Refused before json.loads: its RecursionError would leave CPython 3.11's recursion accounting off, and a
        # later compile() in the process (templates, schema code) then fails with "AST constructor recursion depth
        # mismatch".
        raise _too_deep()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError.invalid(f"The body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise _too_deep() from None


_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _nested_too_deep(raw: bytes) -> bool:
    """True when ``raw`` nests deeper than :data:`MAX_JSON_DEPTH`, at C speed for the common shapes.

    Strings removed and everything but brackets deleted, each round strips the innermost pairs: a document
    ``d`` levels deep is gone after ``d`` rounds. What is left after the limit is either too deep or has
    unbalanced brackets (malformed: json.loads says so); the exact walk tells them apart.
    """
    skeleton = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        if not skeleton:
            return False
        skeleton = skeleton.replace(b"[]", b"").replace(b"{}", b"")
    return bool(skeleton) and _nesting_depth(raw) > MAX_JSON_DEPTH


def _nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (strings skipped), without recursion."""
    depth = deepest = 0
    for token in _STRUCTURE.finditer(raw):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def _too_deep() -> ApiError:
    return ApiError.invalid(f"The body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep.")


def _check_text(root: Any, root_path: str) -> None:
    """Reject text no database or client can store faithfully (NUL characters, unpaired surrogates) and
    documents nested deeper than :data:`MAX_JSON_DEPTH`. Iterative: a deep document cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(root, root_path, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ApiError.invalid(f"'{path}' must not contain NUL characters.")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError.invalid(f"'{path}' is not valid Unicode text (unpaired surrogate).") from None
        elif isinstance(value, dict):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            for key, item in reversed(value.items()):
                stack.append((item, f"{path}.{key}" if path else str(key), depth + 1))
                stack.append((key, path, depth + 1))
        elif isinstance(value, list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], f"{path}[{index}]", depth + 1))


def validate_payload(payload: Any, model: type[M]) -> M:
    if not isinstance(payload, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    _check_text(payload, "")
    for name, field in model.model_fields.items():
        key = field.alias or name
        if field.is_required():
            value = payload.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ApiError.missing(key)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiError.invalid(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return f"Unknown field '{loc}'."
    msg = first.get("msg", "is invalid")
    msg = msg.removeprefix("Value error, ")
    return f"'{loc}': {msg}." if loc else f"{msg}."


# --- query parameters and keyset cursors ------------------------------------------------------------------


_ASCII_DIGITS = frozenset("0123456789")


def positive_int(raw: str | None) -> int | None:
    """``raw`` as a positive integer when it is 1 to 18 ASCII digits (no sign, no space), else None.

    The one parser of integers from paths, query strings and forms: ``str.isdigit`` and ``int`` also take
    superscripts (``²``, which ``int`` then refuses) and other scripts' digits (``١`` is 1), and ``\\d`` in a
    ``str`` pattern matches those too, so neither is used on request data.
    """
    if not raw or len(raw) > 18 or not _ASCII_DIGITS.issuperset(raw):
        return None
    value = int(raw)
    return value if value >= 1 else None


def int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    value = positive_int(raw)
    if value is None:
        raise ApiError.invalid(f"'{name}' must be a positive integer (ASCII digits).")
    return value


def path_id(request: web.Request, name: str, resource: str) -> int:
    """A positive integer id from the path; anything else (other scripts' digits too) answers like a missing row."""
    value = positive_int(request.match_info.get(name))
    if value is None:
        raise ApiError.not_found(resource)
    return value


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after_id: int | None  # keyset: rows with id < after_id (lists are ordered by id descending)


class CursorCodec:
    """Opaque, tamper-evident keyset cursors bound to the list, the tenant and the filters they came from."""

    def __init__(self, secret: str):
        self._key = hashlib.sha256(b"learn-cursor:" + secret.encode()).digest()

    def _scope(self, list_name: str, tenant_id: int, filters: Mapping[str, Any]) -> bytes:
        canonical = json.dumps([list_name, tenant_id, sorted((k, v) for k, v in filters.items() if v is not None)],
                               separators=(",", ":"), default=str)
        return canonical.encode()

    def encode(self, list_name: str, tenant_id: int, filters: Mapping[str, Any], last_id: int) -> str:
        body = str(last_id).encode()
        mac = hmac.new(self._key, self._scope(list_name, tenant_id, filters) + b"|" + body, "sha256").digest()[:16]
        return base64.urlsafe_b64encode(body + b"." + mac).decode().rstrip("=")

    def decode(self, token: str, list_name: str, tenant_id: int, filters: Mapping[str, Any]) -> int:
        try:
            padded = token + "=" * (-len(token) % 4)
            raw = base64.urlsafe_b64decode(padded.encode())
            body, mac = raw.split(b".", 1)
            expected = hmac.new(self._key, self._scope(list_name, tenant_id, filters) + b"|" + body,
                                "sha256").digest()[:16]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad mac")
            value = int(body)
            if value < 1:
                raise ValueError("bad id")
            return value
        except (ValueError, TypeError):
            raise ApiError.invalid(
                "'cursor' is not valid for this list and these filters; start again without a cursor."
            ) from None


def page_request(
    request: web.Request, codec: CursorCodec, list_name: str, tenant_id: int, filters: Mapping[str, Any]
) -> PageRequest:
    raw_limit = request.query.get("limit")
    limit = 50
    if raw_limit is not None:
        parsed = positive_int(raw_limit)
        if parsed is None or parsed > 100:
            raise ApiError.invalid("'limit' must be an integer from 1 to 100.")
        limit = parsed
    cursor = request.query.get("cursor")
    after = codec.decode(cursor, list_name, tenant_id, filters) if cursor else None
    return PageRequest(limit=limit, after_id=after)


def next_cursor(
    codec: CursorCodec, rows: list[Any], page: PageRequest, list_name: str, tenant_id: int,
    filters: Mapping[str, Any], id_of: Callable[[Any], int] = lambda row: int(row["id"]),
) -> str | None:
    """Call with up to ``page.limit + 1`` rows; trims the extra one and returns the next cursor or None."""
    if len(rows) <= page.limit:
        return None
    del rows[page.limit:]
    return codec.encode(list_name, tenant_id, filters, id_of(rows[-1]))
