"""The delivery loop (a background job of the service): lease due rows from the delivery table, POST each one
signed, record the attempt. Many loops (replicas) can run: a row is leased by one of them at a time.

- ``concurrency`` attempts in flight per process, ``endpoint_concurrency`` and ``endpoint_rate`` per endpoint,
  so one slow endpoint cannot take the capacity of the others;
- woken by ``NOTIFY webhooks_due`` (PostgreSQL) when rows are added, and polls every ``poll_interval`` anyway
  (retries fall due by time);
- a process killed mid-attempt leaves its rows leased until the lease ends, then they are sent again: delivery is
  at least once, duplicates carry the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import structlog
from aiohttp import web

from services.webhooks import domain, handlers
from services.webhooks.config import WebhooksSettings
from services.webhooks.sender import Sender
from shared.db import Database, as_utc, listen_dsn, listen_forever, utcnow
from shared.metrics import WEBHOOK_ATTEMPT_DURATION, WEBHOOK_BACKLOG, WEBHOOK_BACKLOG_AGE, WEBHOOK_DELIVERIES
from shared.service import DB_KEY, SETTINGS_KEY
from shared.uow import UnitOfWork

log = structlog.get_logger("webhooks.delivery")

PURGE_EVERY = 3600.0
GAUGES_EVERY = 5.0
#: after a wake, how long the loop lets more wakes pile up before it claims
COALESCE = 0.005
#: tasks writing finished attempts to the database, each one transaction for whatever finished meanwhile (at most
#: RECORD_BATCH): a commit per attempt, with every attempt in flight wanting a connection of the pool, was what
#: limited a burst's throughput
RECORDERS = 2
RECORD_BATCH = 200


class TokenBucket:
    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def available(self) -> int:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return int(self.tokens)

    def take(self) -> None:
        self.tokens -= 1


class Deliverer:
    def __init__(self, db: Database, settings: WebhooksSettings, deps: handlers.Deps):
        self.db = db
        self.settings = settings
        self.deps = deps
        self.sender = Sender(settings)
        self.wake = asyncio.Event()
        self.active = 0
        self.in_flight: dict[int, int] = defaultdict(int)
        self.buckets: dict[int, TokenBucket] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        #: endpoint rows by id, read again when their updated_at changes (handlers.claim_due)
        self.endpoints: dict[int, Any] = {}
        #: the last claim left due rows behind for want of room: an attempt ending wakes the loop to claim again
        self.more_due = False
        #: notifications (new or replayed rows) so far: one arriving during a claim keeps ``more_due``
        self.notified = 0
        self.finished: asyncio.Queue[tuple[handlers.Claimed, handlers.AttemptResult, datetime,
                                           asyncio.Future[str]]] = asyncio.Queue()
        #: a leased row is sent again after this (twice the attempt's timeout, and room for recording it)
        self.lease = settings.timeout * 2 + 5.0

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, deps=self.deps)

    def _bucket(self, endpoint_id: int) -> TokenBucket:
        bucket = self.buckets.get(endpoint_id)
        if bucket is None:
            rate = self.settings.endpoint_rate
            bucket = self.buckets[endpoint_id] = TokenBucket(rate, max(1.0, rate))
        return bucket

    def room(self, endpoint_id: int) -> int:
        free = self.settings.endpoint_concurrency - self.in_flight[endpoint_id]
        return max(0, min(free, self._bucket(endpoint_id).available()))

    async def run(self) -> None:
        await self.sender.start()
        listener = None
        if self.db.is_postgres:
            listener = asyncio.create_task(listen_forever(
                listen_dsn(self.db.url), handlers.NOTIFY_CHANNEL, lambda *_: self.new_rows(),
                on_connect=self.new_rows, what="webhooks_listen"))
        last_purge = last_gauges = 0.0
        recorders = [asyncio.create_task(self.recorder(), name=f"webhooks-recorder-{i}") for i in range(RECORDERS)]
        try:
            while True:
                self.wake.clear()
                free = self.settings.concurrency - self.active
                started = await self.tick()
                now = time.monotonic()
                if now - last_gauges >= GAUGES_EVERY:
                    last_gauges = now
                    await self.refresh_gauges()
                if now - last_purge >= PURGE_EVERY:
                    last_purge = now
                    await handlers.purge(self.uow())
                if started and started >= free and self.active < self.settings.concurrency:
                    continue  # a full claim: there may be more due right now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.poll_interval)
                    # Gather the wakes of a burst (new rows, attempts ending) into one claim: claiming after every
                    # single one cost a claim per message.
                    await asyncio.sleep(COALESCE)
        finally:
            if listener is not None:
                listener.cancel()
            for task in [*self.tasks, *recorders]:
                task.cancel()
            await asyncio.gather(listener or asyncio.sleep(0), *self.tasks, *recorders, return_exceptions=True)
            await self.sender.close()

    def new_rows(self) -> None:
        self.notified += 1
        self.more_due = True
        self.wake.set()

    def room_freed(self) -> None:
        """An attempt's endpoint slot or process slot is free: worth a claim only if due rows were left behind."""
        if self.more_due:
            self.wake.set()

    async def tick(self) -> int:
        free = self.settings.concurrency - self.active
        if free <= 0:
            self.more_due = True  # nothing claimed: whatever is due is still there
            return 0
        notified = self.notified
        try:
            claim = await handlers.claim_due(self.uow(), free, self.room, self.lease, self.endpoints)
        except Exception:
            log.exception("webhooks_claim_failed")
            await asyncio.sleep(1)
            return 0
        self.more_due = claim.more_due or self.notified != notified
        claimed = claim.items
        for item in claimed:
            self.active += 1
            self.in_flight[item.endpoint.id] += 1
            self._bucket(item.endpoint.id).take()
            task = asyncio.create_task(self.attempt(item))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return len(claimed)

    async def attempt(self, item: handlers.Claimed) -> None:
        """Send, then record. The endpoint's slot is given back as soon as its answer is in (the cap is on requests
        to the endpoint), the process's slot once the attempt is recorded (the cap on the work held in memory)."""
        endpoint = item.endpoint
        sending = True
        try:
            now = utcnow()
            timestamp = int(now.timestamp())
            secrets = domain.active_secrets(endpoint.secret, endpoint.previous_secret,
                                            as_utc(endpoint.previous_secret_until), now)
            headers = {"webhook-id": item.webhook_id, "webhook-timestamp": str(timestamp),
                       "webhook-signature": domain.signature_header(secrets, item.webhook_id, timestamp, item.body)}
            start = time.perf_counter()
            try:
                status, error, response = await self.sender.post(endpoint.url, headers, item.body)
            finally:
                sending = False
                self.in_flight[endpoint.id] -= 1
                self.room_freed()
            elapsed = time.perf_counter() - start
            WEBHOOK_ATTEMPT_DURATION.observe(elapsed)
            result = handlers.AttemptResult(status, error, int(elapsed * 1000), response or None)
            outcome = await self._record(item, result, now)
            WEBHOOK_DELIVERIES.labels(str(endpoint.id), outcome).inc()
            if outcome != "delivered":
                log.info("webhook_attempt_failed", endpoint=endpoint.id, message=item.message_id, status=status,
                         error=error, outcome=outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook_attempt_crashed", endpoint=endpoint.id, message=item.message_id)
        finally:
            if sending:
                self.in_flight[endpoint.id] -= 1
            self.active -= 1
            self.room_freed()

    async def _record(self, item: handlers.Claimed, result: handlers.AttemptResult, at: datetime) -> str:
        """Hand the finished attempt to a recorder; its outcome once it is written."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.finished.put_nowait((item, result, at, done))
        return await done

    async def recorder(self) -> None:
        """Write what finished meanwhile in one transaction; if that fails, each attempt on its own."""
        while True:
            batch = [await self.finished.get()]
            while len(batch) < RECORD_BATCH and not self.finished.empty():
                batch.append(self.finished.get_nowait())
            try:
                outcomes = await handlers.record_attempts(self.uow(), [(i, r, at) for i, r, at, _ in batch])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhook_record_batch_failed", size=len(batch), exc_info=True)
                outcomes = [await self._record_alone(i, r, at) for i, r, at, _ in batch]
            for (*_, done), outcome in zip(batch, outcomes, strict=True):
                if not done.done():
                    done.set_result(outcome)

    async def _record_alone(self, item: handlers.Claimed, result: handlers.AttemptResult, at: datetime) -> str:
        """Record one attempt, retrying while the database is briefly away (the lease would resend it anyway)."""
        for pause in (0.5, 1, 2, 4, 8):
            try:
                return await handlers.record_attempt(self.uow(), item, result, at)
            except Exception:
                log.warning("webhook_record_failed", message=item.message_id, exc_info=True)
                await asyncio.sleep(pause)
        return "retrying"

    async def refresh_gauges(self) -> None:
        try:
            rows = await handlers.backlog(self.uow())
        except Exception:
            log.warning("webhook_backlog_failed", exc_info=True)
            return
        now = utcnow()
        WEBHOOK_BACKLOG.clear()
        WEBHOOK_BACKLOG_AGE.clear()
        for row in rows:
            WEBHOOK_BACKLOG.labels(str(row.endpoint_id)).set(row.pending)
            age: timedelta = now - as_utc(row.oldest)
            WEBHOOK_BACKLOG_AGE.labels(str(row.endpoint_id)).set(max(0.0, age.total_seconds()))


DELIVERER_KEY = web.AppKey("webhooks_deliverer", Deliverer)


async def deliver_forever(app: web.Application) -> None:
    """The service's background job (shared/service.py supervises it)."""
    settings = app[SETTINGS_KEY]
    assert isinstance(settings, WebhooksSettings)
    deliverer = Deliverer(app[DB_KEY], settings, handlers.Deps(settings))
    await deliverer.run()
