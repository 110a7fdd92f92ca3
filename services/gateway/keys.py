"""Who is calling and how fast: API-key resolution for the hot path, usage stamps, and the per-key rate limit.

Keys: a per-replica cache with a short TTL, revocation hooks, usage stamps. A key is looked up by its HMAC (an
indexed column), then the stored hash is compared in constant time. Results (also "no such key") are cached for
``ttl`` seconds (≤ 5 s: the revocation promise); a revoke on this replica or an ``api_key.revoked`` event from
another one drops the entry at once.

The rate limit (ADR 0019): one policy (``rate`` requests per second, bursts of ``burst``), held either in Redis,
shared by every replica and worker (``LEARN_REDIS_URL``), or per process.

Shared: GCRA (the generic cell rate algorithm, the token bucket's equivalent) in one Lua script, so reading and
moving a key's theoretical arrival time is one atomic round trip, timed by the Redis server's clock (replicas'
clocks never enter). A key's state is one string that expires when its bucket would be full again.

Fallback: if Redis cannot answer (down, unreachable, too slow, an error), the request is decided by this
process's own token bucket, ``learn_gateway_rate_limit_fallbacks_total`` counts it and a warning is logged at most
every ``warn_every`` seconds; Redis is not asked again for ``retry_after`` seconds, so a dead Redis costs one
timeout per second, not one per request. A request is never refused because Redis failed.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from prometheus_client import Counter

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
limit_log = structlog.get_logger("gateway.ratelimit")


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


# --- the per-key rate limit (ADR 0019) ----------------------------------------------------------------

FALLBACKS = Counter(
    "learn_gateway_rate_limit_fallbacks_total",
    "Rate-limit decisions taken by this process's own buckets because Redis (LEARN_REDIS_URL) did not answer.",
)

# KEYS[1]: the key's state (its theoretical arrival time, in ms of the Redis clock).
# ARGV[1]: ms between two requests at the steady rate; ARGV[2]: the burst.
# Returns {allowed (0|1), remaining, ms until a request is allowed, ms until the bucket is full}.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local tolerance = interval * burst
local next_tat = tat + interval
local allowed_at = next_tat - tolerance
if allowed_at > now then
  return {0, 0, math.ceil(allowed_at - now), math.ceil(tat - now)}
end
local ttl = math.max(1, math.ceil(next_tat - now))
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', ttl)
return {1, math.floor((tolerance - (next_tat - now)) / interval), 0, ttl}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: int  # whole seconds (>= 1) until a request is allowed again; 0 when allowed
    reset: int  # whole seconds until the bucket is full again


class RateLimiter:
    """Token bucket per key in this process: each replica (and worker) limits on its own."""

    shared = False

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = burst
        self._buckets: dict[int, domain.TokenBucket] = {}
        # IETF draft-ietf-httpapi-ratelimit-headers: quota ``q`` per window ``w`` (time to refill from empty).
        self.policy = f'"per-key";q={burst};w={max(1, math.ceil(burst / rate))}'

    def decide(self, key_id: int, now: float) -> Decision:
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = domain.TokenBucket.full(self.rate, self.burst, now)
        if bucket.take(now):
            return Decision(True, bucket.remaining, 0, bucket.seconds_until_full())
        return Decision(False, 0, bucket.seconds_until_token(), bucket.seconds_until_full())

    async def take(self, key_id: int, now: float) -> Decision:
        return self.decide(key_id, now)

    async def close(self) -> None:
        return None


class RedisRateLimiter(RateLimiter):
    """GCRA in Redis, shared by every replica; this process's buckets when Redis does not answer."""

    shared = True

    def __init__(self, rate: float, burst: int, client: Any, *, prefix: str = "learn:", retry_after: float = 1.0,
                 warn_every: float = 10.0):
        super().__init__(rate, burst)
        self.client = client
        self.prefix = prefix + "ratelimit:"
        self.interval_ms = 1000.0 / rate
        self.retry_after = retry_after
        self.warn_every = warn_every
        self._script = client.register_script(GCRA_LUA)
        self._down_until = 0.0
        self._warned = -math.inf

    @classmethod
    def from_url(cls, url: str, rate: float, burst: int, *, prefix: str = "learn:",
                 timeout: float = 0.25) -> RedisRateLimiter:
        from redis.asyncio import Redis

        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                health_check_interval=30, retry_on_timeout=False)
        return cls(rate, burst, client, prefix=prefix)

    async def take(self, key_id: int, now: float) -> Decision:
        if now >= self._down_until:
            try:
                allowed, remaining, retry_ms, reset_ms = await self._script(
                    keys=[f"{self.prefix}{key_id}"], args=[repr(self.interval_ms), self.burst])
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # redis.exceptions.*, OSError, timeouts: decide here, never refuse for it
                self._down_until = now + self.retry_after
                self._warn(now, exc)
            else:
                if allowed:
                    return Decision(True, int(remaining), 0, math.ceil(int(reset_ms) / 1000))
                return Decision(False, 0, max(1, math.ceil(int(retry_ms) / 1000)), math.ceil(int(reset_ms) / 1000))
        FALLBACKS.inc()
        return self.decide(key_id, now)

    def _warn(self, now: float, exc: BaseException) -> None:
        if now - self._warned >= self.warn_every:
            self._warned = now
            limit_log.warning("rate_limit_redis_unavailable", error=repr(exc)[:300], fallback="per-replica",
                        retry_in_s=self.retry_after)

    async def close(self) -> None:
        close = getattr(self.client, "aclose", None) or self.client.close
        await close()
