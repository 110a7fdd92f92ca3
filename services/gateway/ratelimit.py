"""The per-key rate limit: one policy (``rate`` requests per second, bursts of ``burst``), held either in Redis,
shared by every replica and worker (``LEARN_REDIS_URL``), or per process (ADR 0019).

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
import math
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter

from services.gateway import domain

log = structlog.get_logger("gateway.ratelimit")

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
            log.warning("rate_limit_redis_unavailable", error=repr(exc)[:300], fallback="per-replica",
                        retry_in_s=self.retry_after)

    async def close(self) -> None:
        close = getattr(self.client, "aclose", None) or self.client.close
        await close()
