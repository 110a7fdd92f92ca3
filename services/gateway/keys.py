"""API-key resolution for the hot path: a per-replica cache with a short TTL, revocation hooks, usage stamps.

A key is looked up by its HMAC (an indexed column), then the stored hash is compared in constant time. Results
(also "no such key") are cached for ``ttl`` seconds (≤ 5 s: the revocation promise); a revoke on this replica
or an ``api_key.revoked`` event from another one drops the entry at once.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import structlog

from services.gateway import domain, store
from shared.db import Database
from shared.http import (
    H_COURSE_IDS,
    H_INTERNAL,
    H_KEY_ID,
    H_OWNER_ID,
    H_OWNER_NAME,
    H_SCOPES,
    H_TENANT,
    H_TENANT_ID,
    H_TENANT_NAME,
    format_course_ids,
)

log = structlog.get_logger("gateway.keys")


@dataclass(slots=True)
class Principal:
    """What a valid key stands for, with the identity headers already built (no per-request formatting)."""

    key_id: int
    key_hash: str
    tenant_id: int
    slug: str
    plan_allowed: bool
    tenant_active: bool
    scopes: frozenset[str]
    expires_at: float | None  # epoch seconds
    revoked: bool
    headers: dict[str, str]
    #: a per-course key's courses (ADR 0019); None: every course of the tenant
    course_ids: frozenset[int] | None = None


@dataclass(slots=True)
class _Entry:
    principal: Principal | None  # None: no such key (negative cache)
    fetched: float


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives naive datetimes: they are UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class KeyDirectory:
    def __init__(self, db: Database, pepper: str, internal_secret: str, *, ttl: float = 5.0,
                 max_negative: int = 10_000):
        self.db = db
        self.pepper = pepper.encode()
        self.internal_secret = internal_secret
        self.ttl = ttl
        self.max_negative = max_negative
        self._cache: dict[str, _Entry] = {}
        self._negative: OrderedDict[str, float] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Principal | None]] = {}

    def digest(self, key: str) -> str:
        return domain.hash_key(self.pepper, key)

    async def resolve(self, key: str) -> Principal | None:
        digest = domain.hash_key(self.pepper, key)
        now = time.monotonic()
        entry = self._cache.get(digest)
        if entry is not None and now - entry.fetched < self.ttl:
            return entry.principal
        seen = self._negative.get(digest)
        if seen is not None and now - seen < self.ttl:
            return None
        pending = self._inflight.get(digest)
        if pending is not None:  # many concurrent requests with one cold key: one query
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            principal = await self._load(digest)
            future.set_result(principal)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: concurrent waiters re-raise it themselves
            raise
        finally:
            del self._inflight[digest]
        if principal is None:
            self._negative[digest] = now
            self._negative.move_to_end(digest)
            while len(self._negative) > self.max_negative:
                self._negative.popitem(last=False)
        else:
            self._cache[digest] = _Entry(principal, now)
        return principal

    async def _load(self, digest: str) -> Principal | None:
        async with self.db.engine.connect() as conn:
            row = await store.key_by_hash(conn, digest)
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return None
        scopes = frozenset(row.scopes)
        headers = {
            H_INTERNAL: self.internal_secret,
            H_TENANT_ID: str(row.tenant_id),
            H_TENANT: row.slug,
            H_TENANT_NAME: quote(row.tenant_name, safe=""),
            H_KEY_ID: str(row.id),
            H_SCOPES: " ".join(sorted(scopes)),
        }
        course_ids = frozenset(int(c) for c in row.course_ids) if row.course_ids is not None else None
        if course_ids is not None:
            # The services filter every query of this request on these courses (shared.db.TenantScope).
            headers[H_COURSE_IDS] = format_course_ids(course_ids)
        if row.created_by is not None:
            headers[H_OWNER_ID] = str(row.created_by)
            if row.owner_name is not None:
                headers[H_OWNER_NAME] = quote(row.owner_name, safe="")
        return Principal(
            key_id=row.id, key_hash=row.key_hash, tenant_id=row.tenant_id, slug=row.slug,
            plan_allowed=domain.plan_allows_api(row.plan), tenant_active=row.status == "active",
            scopes=scopes, expires_at=_epoch(row.expires_at), revoked=row.revoked_at is not None,
            headers=headers, course_ids=course_ids,
        )

    def forget_key(self, key_id: int) -> None:
        """Drop a key from this replica's cache (revocation)."""
        for digest, entry in list(self._cache.items()):
            if entry.principal is not None and entry.principal.key_id == key_id:
                del self._cache[digest]
        log.info("api_key_cache_dropped", key_id=key_id)

    def forget_tenant(self, tenant_id: int) -> None:
        """Drop a tenant's keys (its plan, status or name changed)."""
        for digest, entry in list(self._cache.items()):
            if entry.principal is not None and entry.principal.tenant_id == tenant_id:
                del self._cache[digest]


class UsageRecorder:
    """Stamps ``last_used_at`` at most once per ``resolution`` seconds per key, off the request path."""

    def __init__(self, db: Database, resolution: float = 60.0):
        self.db = db
        self.resolution = resolution
        self._written: dict[int, float] = {}
        self._due: set[int] = set()

    def used(self, key_id: int, now: float) -> None:
        last = self._written.get(key_id)
        if last is None or now - last >= self.resolution:
            self._written[key_id] = now
            self._due.add(key_id)

    async def flush(self) -> None:
        if not self._due:
            return
        due, self._due = sorted(self._due), set()
        async with self.db.engine.begin() as conn:
            await store.touch_keys(conn, due, datetime.now(UTC))

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stamp is best effort; the next minute tries again
                log.warning("last_used_flush_failed", error=repr(exc))
