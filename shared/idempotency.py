"""``Idempotency-Key`` for every write of every service (IETF httpapi draft "The Idempotency-Key HTTP Header
Field"): one rule, written once, used by the services' middleware and by the gateway's own admin routes.

A key names one request of one scope (a tenant; the gateway's admin routes: the admin, per tenant slug):

- the first request with a key claims it (a row with an in-flight lease), runs, and if it answers 2xx its
  status, ``Content-Type``/``Location``/``ETag`` and body are stored with the key;
- the same key and the same request (method, path with query, body: JSON compared by value, not by key order or
  whitespace) replays that answer with ``Idempotent-Replayed: true`` (only ``request_id`` is the new request's);
- the same key with another request → ``422 idempotency_key_reused``;
- the same key while its first request is still running → ``409 idempotency_key_in_flight`` with ``Retry-After``;
- an answer that is not 2xx is not stored: the key is released and the request can be sent again with the same
  key (errors make no change — CONTRACT: no partial write — so running it again is safe; a 4xx that depended
  on the world, such as a course not yet published, gets a fresh answer once the world changed);
- a lease whose request died with its process expires after ``LEARN_IDEMPOTENCY_LEASE`` seconds and the key
  can then be claimed again; keys expire ``LEARN_IDEMPOTENCY_TTL`` seconds (24 h) after their first use, and
  the sweeper deletes expired rows every ``LEARN_IDEMPOTENCY_SWEEP_INTERVAL`` seconds.

See docs/idempotency.md (clients) and docs/decisions/0012-idempotency-key.md (why this shape).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from aiohttp import web
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import Database, Timestamp, as_utc
from shared.http import H_TENANT_ID, ApiError, Handler, dumps, parse_json_body, request_id_of

log = structlog.get_logger("shared.idempotency")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STORED_HEADERS = ("Content-Type", "Location", "Content-Location", "ETag")
MAX_STORED_BODY = 1024 * 1024  # a larger answer is not stored (none of the API's writes answers that much)
MAX_KEY_LENGTH = 255

idempotency_metadata = sa.MetaData()
records = sa.Table(
    "idempotency_records",
    idempotency_metadata,
    sa.Column("scope", sa.String(80), primary_key=True),
    sa.Column("key", sa.String(MAX_KEY_LENGTH), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("lease_token", sa.String(32), nullable=False),
    sa.Column("lease_until", Timestamp, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),  # None while the first request is in flight
    sa.Column("headers", sa.JSON, nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
)


def create_idempotency_table(op: Any) -> None:
    """Call from a service's alembic migration (every service database carries the table)."""
    op.create_table(
        "idempotency_records",
        sa.Column("scope", sa.String(80), primary_key=True),
        sa.Column("key", sa.String(MAX_KEY_LENGTH), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("lease_token", sa.String(32), nullable=False),
        sa.Column("lease_until", Timestamp, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("headers", sa.JSON, nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
    )
    op.create_index("ix_idempotency_records_expires_at", "idempotency_records", ["expires_at"])


def drop_idempotency_table(op: Any) -> None:
    op.drop_index("ix_idempotency_records_expires_at", "idempotency_records")
    op.drop_table("idempotency_records")


# --- the key and the request's fingerprint -------------------------------------------------------------------


def parse_key(raw: str) -> str:
    """The key as sent: 1 to 255 printable ASCII characters. The draft's structured-field form ``"..."`` is
    accepted too and means the same key without its quotes."""
    value = raw
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in value):
        raise ApiError.invalid(f"'{HEADER}' must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.")
    return value


def canonical_body(raw: bytes, content_type: str) -> bytes:
    """JSON compared by value (key order and whitespace do not make another request); anything else by bytes.
    An empty body is the empty JSON object."""
    if not raw.strip():
        return b"{}"
    ctype = content_type.split(";")[0].strip().lower()
    if not ctype or ctype.endswith(("/json", "+json")):
        try:  # the shared reader: a body nested too deep never reaches json.loads's recursion
            return json.dumps(parse_json_body(raw), sort_keys=True, separators=(",", ":")).encode()
        except ApiError:
            pass
    return raw


def fingerprint(method: str, path_qs: str, body_digest: str) -> str:
    return hashlib.sha256(f"{method} {path_qs}\n{body_digest}".encode()).hexdigest()


# --- the store ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """This request holds the key (its lease token proves it) until it stores its answer or releases it."""

    scope: str
    key: str
    token: str


def _reused() -> ApiError:
    return ApiError(422, "idempotency_key_reused",
                    f"This '{HEADER}' was already used for another request (another method, path or body); "
                    "use a new key for a new request.")


def _in_flight() -> ApiError:
    return ApiError(409, "idempotency_key_in_flight",
                    f"A request with this '{HEADER}' is still being processed; retry shortly to get its answer.",
                    {"Retry-After": "1"})


_SELECT = sa.select(records).where(records.c.scope == sa.bindparam("s"), records.c.key == sa.bindparam("k"))
_INSERTS = {name: dialect.insert(records).on_conflict_do_nothing()
            for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_TAKE_OVER = (sa.update(records)
              .where(records.c.scope == sa.bindparam("s"), records.c.key == sa.bindparam("k"),
                     records.c.lease_token == sa.bindparam("old_token"))
              .values(fingerprint=sa.bindparam("n_fingerprint"), lease_token=sa.bindparam("n_lease_token"),
                      lease_until=sa.bindparam("n_lease_until"), status_code=None, headers=None, body=None,
                      created_at=sa.bindparam("n_created_at"), expires_at=sa.bindparam("n_expires_at")))
_STORE = (sa.update(records)
          .where(records.c.scope == sa.bindparam("s"), records.c.key == sa.bindparam("k"),
                 records.c.lease_token == sa.bindparam("token"))
          .values(status_code=sa.bindparam("n_status_code"), headers=sa.bindparam("n_headers"),
                  body=sa.bindparam("n_body")))
_RELEASE = sa.delete(records).where(records.c.scope == sa.bindparam("s"), records.c.key == sa.bindparam("k"),
                                    records.c.lease_token == sa.bindparam("token"))


class Idempotency:
    """The rule over one database's ``idempotency_records``."""

    def __init__(self, db_of: Callable[[], Database], *, ttl: float = 86400.0, lease: float = 120.0):
        self._db_of = db_of  # a callable: the database opens when the app starts
        self.ttl = timedelta(seconds=ttl)
        self.lease = timedelta(seconds=lease)

    @property
    def db(self) -> Database:
        return self._db_of()

    async def claim(self, request: web.Request, scope: str, key: str, fp: str) -> Claim | web.Response:
        """Claim ``key`` for this request, or answer it: the stored answer, 409 or 422 (raised)."""
        db = self.db
        insert = _INSERTS["postgresql" if db.is_postgres else "sqlite"]
        for _ in range(5):
            now = datetime.now(UTC)
            token = secrets.token_hex(16)
            values = {"scope": scope, "key": key, "fingerprint": fp, "lease_token": token,
                      "lease_until": now + self.lease, "status_code": None, "headers": None, "body": None,
                      "created_at": now, "expires_at": now + self.ttl}
            async with db.transaction() as session:
                if (await session.execute(insert, values)).rowcount == 1:  # type: ignore[attr-defined]
                    return Claim(scope, key, token)
                row = (await session.execute(_SELECT, {"s": scope, "k": key})).first()
                if row is None:
                    continue  # released (or swept) between the two statements: try again
                expired = as_utc(row.expires_at) <= now
                abandoned = row.status_code is None and as_utc(row.lease_until) <= now
                if expired or abandoned:
                    # Forgotten, or its request died with its process: this request takes the key over.
                    params = {"s": scope, "k": key, "old_token": row.lease_token, "n_fingerprint": fp,
                              "n_lease_token": token, "n_lease_until": values["lease_until"],
                              "n_created_at": now, "n_expires_at": values["expires_at"]}
                    if (await session.execute(_TAKE_OVER, params)).rowcount == 1:  # type: ignore[attr-defined]
                        return Claim(scope, key, token)
                    continue
                if row.fingerprint != fp:
                    raise _reused()
                if row.status_code is None:
                    raise _in_flight()
                return self.replay(request, row)
        raise _in_flight()  # the key changed hands five times while we looked: it is busy

    def replay(self, request: web.Request, row: Any) -> web.Response:
        headers = {name: value for name, value in (row.headers or {}).items()}
        headers[REPLAYED] = "true"
        body = _with_request_id(bytes(row.body or b""), request_id_of(request), headers.get("Content-Type", ""))
        return web.Response(status=row.status_code, body=body, headers=headers)

    async def complete(self, claim: Claim, response: web.StreamResponse, request: web.Request | None = None) -> None:
        """Store a 2xx answer with its key (or what the handler asked to store instead, see
        :func:`store_instead`); release the key for anything else."""
        body = getattr(response, "body", None) if isinstance(response, web.Response) else None
        if request is not None and (instead := request.get(_STORED_INSTEAD)) is not None:
            body = instead
        storable = (200 <= response.status < 300 and isinstance(body, bytes | bytearray)
                    and len(body) <= MAX_STORED_BODY)
        if not storable:
            await self.release(claim)
            return
        headers = {name: response.headers[name] for name in STORED_HEADERS if name in response.headers}
        try:
            async with self.db.transaction() as session:
                await session.execute(_STORE, {"s": claim.scope, "k": claim.key, "token": claim.token,
                                               "n_status_code": response.status, "n_headers": headers,
                                               "n_body": bytes(body or b"")})
        except Exception as exc:
            # The answer still goes out; the key stays in flight until its lease ends, then can be claimed again.
            log.warning("idempotency_store_failed", key=claim.key, error=repr(exc))

    async def release(self, claim: Claim) -> None:
        try:
            async with self.db.transaction() as session:
                await session.execute(_RELEASE, {"s": claim.scope, "k": claim.key, "token": claim.token})
        except Exception as exc:
            log.warning("idempotency_release_failed", key=claim.key, error=repr(exc))

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete expired keys; returns how many."""
        async with self.db.transaction() as session:
            result = await session.execute(sa.delete(records).where(records.c.expires_at <= (now or datetime.now(UTC))))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def sweeper(self, interval: float) -> None:
        """Run :meth:`sweep` every ``interval`` seconds, for ever."""
        while True:
            try:
                swept = await self.sweep()
                if swept:
                    log.info("idempotency_keys_swept", count=swept)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("idempotency_sweep_failed", error=repr(exc))
            await asyncio.sleep(interval)

    # --- running a request under its key -------------------------------------------------------------------

    async def handle(self, request: web.Request, handler: Handler, scope: str) -> web.StreamResponse:
        """Run ``handler`` for an unsafe request that carries a key (call only then)."""
        key = parse_key(request.headers[HEADER])
        if _streams_its_body(request):
            # The handler reads the body itself (an upload): it calls :func:`claim_streamed` with its digest.
            request[_PENDING] = _Pending(self, scope, key)
            try:
                response = await handler(request)
            except BaseException:
                if (claim := request.get(_CLAIM)) is not None:
                    await asyncio.shield(self.release(claim))
                raise
            if (claim := request.get(_CLAIM)) is not None:
                await self.complete(claim, response, request)
            return response
        raw = await request.read()
        digest = hashlib.sha256(canonical_body(raw, request.headers.get("Content-Type", ""))).hexdigest()
        outcome = await self.claim(request, scope, key, fingerprint(request.method, request.rel_url.raw_path_qs,
                                                                      digest))
        if isinstance(outcome, web.StreamResponse):
            return outcome
        try:
            response = await handler(request)
        except BaseException:
            await asyncio.shield(self.release(outcome))
            raise
        await self.complete(outcome, response, request)
        return response

    def guard(self, handler: Handler, scope_of: Callable[[web.Request], str]) -> Handler:
        """Wrap one handler (the gateway's own admin routes): unsafe requests with a key go through the rule."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if request.method not in UNSAFE_METHODS or HEADER not in request.headers:
                return await handler(request)
            return await self.handle(request, handler, scope_of(request))

        return guarded


@dataclass(frozen=True)
class _Pending:
    idempotency: Idempotency
    scope: str
    key: str


_PENDING = web.RequestKey("idempotency_pending", _Pending)
_CLAIM = web.RequestKey("idempotency_claim", Claim)
_STREAMED_ATTR = "idempotency_streams_body"
_STORED_INSTEAD = web.RequestKey("idempotency_stored_instead", bytes)


def store_instead(request: web.Request, body: bytes) -> None:
    """Keep ``body`` with the key instead of the answer's (an answer holding a secret shown once: the replay
    carries the resource without it)."""
    request[_STORED_INSTEAD] = body


def streams_its_body(handler: Callable[..., Awaitable[web.StreamResponse]]
                     ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Mark a handler that streams its request body (an upload): the middleware does not read the body; the
    handler calls :func:`claim_streamed` with the body's sha256 once it has it."""
    setattr(handler, _STREAMED_ATTR, True)
    return handler


def _streams_its_body(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, _STREAMED_ATTR, False))


async def claim_streamed(request: web.Request, body_sha256: str) -> web.Response | None:
    """For a :func:`streams_its_body` handler: claim the request's key now that the body is known. Returns the
    stored answer to send instead (a replay), None to go on (no key, or the key is now this request's), or
    raises 409/422."""
    pending = request.get(_PENDING)
    if pending is None:
        return None
    outcome = await pending.idempotency.claim(request, pending.scope, pending.key,
                                              fingerprint(request.method, request.rel_url.raw_path_qs, body_sha256))
    if isinstance(outcome, web.Response):
        return outcome
    request[_CLAIM] = outcome
    return None


def _with_request_id(body: bytes, request_id: str, content_type: str) -> bytes:
    """The stored envelope with this request's id (a replay is a new request, with its own id in the logs)."""
    if "json" not in content_type:
        return body
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict):
        return body
    if "request_id" in document:
        document["request_id"] = request_id
    elif isinstance(document.get("error"), dict) and "request_id" in document["error"]:
        document["error"]["request_id"] = request_id
    else:
        return body
    return dumps(document).encode()


# --- the services' middleware ------------------------------------------------------------------------------


def idempotency_middleware(idempotency: Idempotency) -> Any:
    """Innermost middleware of every service (after the internal credential check): writes of a tenant that
    carry a key go through the rule, scoped by the tenant the gateway forwarded. Requests without a tenant (the
    learner runtime, the verification page) are outside it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in UNSAFE_METHODS or HEADER not in request.headers:
            return await handler(request)
        tenant = request.headers.get(H_TENANT_ID, "")
        if not tenant.isdigit():
            return await handler(request)
        return await idempotency.handle(request, handler, tenant)

    return middleware
