"""Per-test isolation: fresh database names and broker names for each test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika

from shared.bus.envelope import CloudEvent
from shared.bus.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, QUEUES
from shared.config import CommonSettings
from shared.db import drop_database


class DatabaseReaper:
    """Drops test databases in concurrent batches instead of one at a time.

    PostgreSQL's ``DROP DATABASE`` waits for a checkpoint. One at a time, in every test's teardown, that cost
    0.3 s on a quiet machine and several seconds under load: about a third of the suite's time. Checkpoint
    requests that arrive together are served by one checkpoint, so the names are collected and dropped
    ``BATCH`` at a time, concurrently, and the rest when the test session ends (``tests/conftest.py``).
    SQLite files (the embedded default) are deleted at once.
    """

    BATCH = 24

    def __init__(self) -> None:
        self.pending: list[str] = []

    async def drop(self, url: str) -> None:
        if url.startswith("postgresql"):
            self.pending.append(url)
        else:
            with contextlib.suppress(Exception):
                await drop_database(url)

    async def drop_batch_if_full(self) -> None:
        if len(self.pending) >= self.BATCH * 4:  # eight names per environment, most never created
            await self.drop_all()

    async def drop_all(self) -> None:
        urls, self.pending = self.pending, []
        limit = asyncio.Semaphore(self.BATCH)

        async def one(url: str) -> None:
            async with limit:
                with contextlib.suppress(Exception):
                    await drop_database(url)

        await asyncio.gather(*(one(url) for url in urls))


REAPER = DatabaseReaper()


@dataclass
class TestEnv:
    """Everything a test needs to build services that cannot see any other test's data."""

    __test__ = False

    postgres_url: str
    amqp_url: str
    data_dir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    internal_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def database_prefix(self) -> str:
        return f"t{self.token}_"

    @property
    def namespace(self) -> str:
        return f"t{self.token}."

    def common(self, **overrides) -> CommonSettings:
        values = dict(
            postgres_url=self.postgres_url,
            amqp_url=self.amqp_url,
            database_prefix=self.database_prefix,
            amqp_namespace=self.namespace,
            data_dir=self.data_dir,
            internal_secret=self.internal_secret,
            relay_poll_interval=0.2,
            log_json=True,
            amqp_delivery_limit=3,
        )
        values.update(overrides)
        return CommonSettings(**values)

    def environ(self) -> dict[str, str]:
        """The same settings as environment variables, for services started as separate processes."""
        return {
            "LEARN_POSTGRES_URL": self.postgres_url,
            "LEARN_AMQP_URL": self.amqp_url,
            "LEARN_DATABASE_PREFIX": self.database_prefix,
            "LEARN_AMQP_NAMESPACE": self.namespace,
            "LEARN_DATA_DIR": str(self.data_dir),
            "LEARN_INTERNAL_SECRET": self.internal_secret,
            "LEARN_RELAY_POLL_INTERVAL": "0.2",
            "LEARN_AMQP_DELIVERY_LIMIT": "3",
        }

    def internal_headers(self, tenant_id: int = 1, tenant: str = "acme", scopes: str = "learn:read learn:write",
                         **extra: str) -> dict[str, str]:
        """Headers the gateway would add; for tests that call one service directly."""
        headers = {
            "X-Learn-Internal": self.internal_secret,
            "X-Learn-Tenant-Id": str(tenant_id),
            "X-Learn-Tenant": tenant,
            "X-Learn-Tenant-Name": tenant.title(),
            "X-Learn-Scopes": scopes,
            "X-Learn-Key-Id": "1",
            "X-Learn-Owner-Id": "1",
            "X-Learn-Owner-Name": "Ada%20Admin",
        }
        headers.update(extra)
        return headers

    async def cleanup(self) -> None:
        """Drop this test's databases (batched: see ``DatabaseReaper``) and delete its queues and exchanges.

        The environment takes a fresh token afterwards, so reusing it can never find the old, not yet dropped,
        databases."""
        for service in ("gateway", "catalog", "enrollment", "certificates", "scorm", "webhooks", "bench", "bus"):
            await REAPER.drop(self.common().database_url(service))
        await REAPER.drop_batch_if_full()
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(self.amqp_url, timeout=5)
            async with connection:
                channel = await connection.channel()
                for spec in QUEUES:
                    for name in (spec.name, spec.dead_letter_name):
                        with contextlib.suppress(Exception):
                            await channel.queue_delete(self.namespace + name)
                        if channel.is_closed:
                            channel = await connection.channel()
                for extra in self.extra_queues:
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(extra)
                    if channel.is_closed:
                        channel = await connection.channel()
                for ex in (EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE):
                    with contextlib.suppress(Exception):
                        await channel.exchange_delete(self.namespace + ex)
        self.token = secrets.token_hex(4)

    extra_queues: list[str] = field(default_factory=list)


class EventRecorder:
    """Records the events a test causes, straight from the real broker (a private queue bound to ``#``)."""

    def __init__(self, env: TestEnv, pattern: str = "#"):
        self.env = env
        self.pattern = pattern
        self.events: list[CloudEvent] = []
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.env.amqp_url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self.env.namespace + EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # Named by us and kept through a dropped connection (x-expires cleans up after a crashed test): a broker
        # that closes the connection (a restart, a 541 under load) must not cost the test the events published
        # before the robust connection restored the consumer. A server-named exclusive queue was deleted with the
        # connection, and aio-pika cannot re-declare an ``amq.gen-*`` name.
        self._queue = queue = await channel.declare_queue(f"{self.env.namespace}recorder.{secrets.token_hex(6)}",
                                                          arguments={"x-expires": 600_000})
        await queue.bind(exchange, routing_key=self.pattern)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                self.events.append(CloudEvent.model_validate(json.loads(message.body)))

        await queue.consume(on_message)

    def of_type(self, event_type: str) -> list[CloudEvent]:
        return [e for e in self.events if e.event_type == event_type]

    async def wait_for(self, event_type: str, count: int = 1, timeout: float = 15.0) -> list[CloudEvent]:
        from tests.support.infra import wait_until

        await wait_until(lambda: len(self.of_type(event_type)) >= count, timeout=timeout,
                         message=f"{count} × {event_type} (have {len(self.of_type(event_type))})")
        return self.of_type(event_type)

    async def stop(self) -> None:
        if self._connection is not None:
            if self._queue is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._queue.delete(if_unused=False, if_empty=False), timeout=10)
            await self._connection.close()


@contextlib.asynccontextmanager
async def recording(env: TestEnv, pattern: str = "#") -> AsyncIterator[EventRecorder]:
    recorder = EventRecorder(env, pattern)
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()
