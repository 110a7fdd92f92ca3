"""RabbitMQ transport (aio-pika): persistent publishes with batched publisher confirms, quorum-queue consumers.

Connections are robust: after a broker restart aio-pika reconnects, re-declares the topology and restores the
consumers. Until then the relay keeps events in the outbox and consumers simply receive nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import ChannelFrame
from pamqp import commands as amqp_spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from shared.bus.consumer import ConsumerRunner, Outcome, stop_tasks
from shared.bus.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, QueueSpec, queue_arguments
from shared.metrics import CONSUMERS_CONNECTED

log = structlog.get_logger("shared.bus.amqp")


class OutgoingMessage:
    __slots__ = ("body", "message_id", "routing_key")

    def __init__(self, routing_key: str, body: bytes, message_id: str):
        self.routing_key = routing_key
        self.body = body
        self.message_id = message_id


CONTENT_TYPE = "application/cloudevents+json"
_PERSISTENT = 2  # AMQP delivery mode


async def publish_batch(channel: aiormq.abc.AbstractChannel, exchange: str,
                        messages: Sequence[OutgoingMessage]) -> None:
    """Publish ``messages`` persistently on a confirm-mode channel in ONE write, then wait for every confirm.

    ``aio_pika.Exchange.publish`` builds an ``aio_pika.Message`` per event (a dozen guarded ``__setattr__``), and
    aiormq's ``basic_publish`` takes the channel lock, queues one write and waits for its drain per message, so a
    batch needed a task per message to pipeline its confirms: that was most of the relay's CPU. Here the frames
    of the whole batch are marshalled into one buffer under the channel lock, each message gets the confirmation
    future aiormq itself would give it (next delivery tag, registered in ``channel.confirmations``, rejected by
    aiormq when the channel closes), and the confirms are awaited after the single write. Same wire protocol and
    same guarantee as before: it returns only once the broker confirmed every message, and raises if one was
    nacked or the channel closed first. ``mandatory`` is off (an unroutable event is dropped by the broker and
    confirmed, which is what the returned-then-confirmed publish amounted to before). Relies on aiormq's channel
    bookkeeping (``lock``, ``delivery_tag``, ``confirmations``, ``write_queue``): aiormq is pinned in
    constraints.txt and ``tests/bus/test_outbox_relay.py`` exercises it on the real broker.
    """
    ch: aiormq.Channel = channel  # type: ignore[assignment]
    if not ch.publisher_confirms:
        raise RuntimeError("publish_batch needs a channel in confirm mode")
    limit = ch.max_content_size
    frames: list[Any] = []
    for m in messages:
        body = m.body
        frames.append(amqp_spec.Basic.Publish(exchange=exchange, routing_key=m.routing_key))
        frames.append(ContentHeader(body_size=len(body), properties=amqp_spec.Basic.Properties(
            content_type=CONTENT_TYPE, delivery_mode=_PERSISTENT, message_id=m.message_id)))
        if len(body) <= limit:
            if body:
                frames.append(ContentBody(body))
        else:
            frames.extend(ContentBody(body[i:i + limit]) for i in range(0, len(body), limit))
    confirmations: list[asyncio.Future[Any]] = []
    done = False
    try:
        async with ch.lock:  # raises ChannelInvalidStateError if the channel is closed
            first = ch.delivery_tag
            drain = ch.create_future()
            payload = ChannelFrame.marshall(channel_number=ch.number, frames=frames, drain_future=drain)
            for tag in range(first + 1, first + len(messages) + 1):
                confirmation = ch.create_future()
                ch.confirmations[tag] = confirmation
                confirmations.append(confirmation)
            ch.delivery_tag = first + len(messages)
            try:
                await ch.write_queue.put(payload)
            except BaseException:
                # Never queued: the broker has not seen these publishes, so their tags are reused.
                for tag in range(first + 1, first + len(messages) + 1):
                    ch.confirmations.pop(tag, None)
                ch.delivery_tag = first
                drain.cancel()
                raise
            await drain
        for confirmation in confirmations:
            await confirmation  # a nack raises aiormq's DeliveryError; a closed channel its close reason
        done = True
    finally:
        if not done:
            for confirmation in confirmations:
                confirmation.cancel()  # a late confirm for it is then ignored by aiormq


class Settlements:
    """The acks of one consumer channel, coalesced: one ``basic.ack multiple`` where the broker allows it.

    A worker's batch is a run of consecutive deliveries, so once it commits, its acks usually cover the oldest
    unsettled deliveries of the channel: then one frame acks them all (a syscall and a frame per message was the
    consumer's largest cost in the bus benchmark). A batch that finishes while an older one is still in flight is
    acked message by message, so nothing waits for a slow batch and no prefetch slot stays taken.

    The broker acks, for ``multiple``, every unsettled delivery up to the tag, and refuses a tag that is no longer
    unsettled (closing the channel); so the tag sent is always one not yet settled, every frame of the channel
    leaves under one lock in the order the bookkeeping assumed, and tags are tracked per underlying channel (a
    reconnect starts them again at 1).
    """

    def __init__(self) -> None:
        self._channel: Any = None
        self._order: deque[int] = deque()  # delivery tags not yet passed by a multiple ack, oldest first
        self._settled: set[int] = set()  # tags in _order already acked, nacked or rejected one by one
        self._lock = asyncio.Lock()

    @staticmethod
    def _channel_of(message: AbstractIncomingMessage) -> Any:
        try:
            return message.channel
        except aio_pika.exceptions.ChannelInvalidStateError:
            return None

    def received(self, message: AbstractIncomingMessage) -> None:
        channel = self._channel_of(message)
        if channel is None or message.delivery_tag is None:
            return
        if channel is not self._channel:
            self._channel, self._order, self._settled = channel, deque(), set()
        self._order.append(message.delivery_tag)

    async def settle(self, messages: Sequence[AbstractIncomingMessage], outcomes: Sequence[Outcome]) -> None:
        async with self._lock:
            channel = self._channel
            acks: set[int] = set()
            for message, outcome in zip(messages, outcomes, strict=True):
                tag = message.delivery_tag
                try:
                    if self._channel_of(message) is not channel or channel is None or tag is None:
                        raise aio_pika.exceptions.ChannelInvalidStateError("the delivery's channel was replaced")
                    if outcome in (Outcome.HANDLED, Outcome.DUPLICATE):
                        acks.add(tag)
                    elif outcome is Outcome.DEAD_LETTER:
                        await channel.basic_reject(tag, requeue=False)
                        self._settled.add(tag)
                    else:
                        await channel.basic_nack(tag, multiple=False, requeue=True)
                        self._settled.add(tag)
                except aio_pika.exceptions.ChannelInvalidStateError:
                    # The channel died (broker restart) after our commit: the broker redelivers, the inbox dedupes.
                    log.warning("ack_lost_channel_closed", message_id=message.message_id)
            if not acks:
                return
            last = None
            order, settled = self._order, self._settled
            while order and (order[0] in settled or order[0] in acks):
                tag = order.popleft()
                settled.discard(tag)
                if tag in acks:
                    acks.discard(tag)
                    last = tag
            try:
                if last is not None:
                    await channel.basic_ack(last, multiple=True)
                for tag in sorted(acks):
                    await channel.basic_ack(tag)
                    settled.add(tag)
            except aio_pika.exceptions.ChannelInvalidStateError:
                log.warning("ack_lost_channel_closed", messages=len(messages))


class AmqpBus:
    def __init__(self, url: str, *, service: str, namespace: str = "", prefetch: int = 64,
                 delivery_limit: int = 5, concurrency: int = 8, publish_timeout: float = 15.0,
                 batch_size: int = 32, linger: float = 0.002, reconnect_interval: float = 1.0):
        self.url = url
        self.service = service
        self.namespace = namespace
        self.prefetch = prefetch
        self.delivery_limit = delivery_limit
        self.concurrency = concurrency
        self.publish_timeout = publish_timeout
        self.batch_size = batch_size
        #: how long a free worker waits for a fuller batch while other batches of the queue are in flight
        self.linger = linger
        #: seconds between reconnect attempts after the broker dropped the connection (aio-pika's default is 5)
        self.reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._consumer_tasks: list[asyncio.Task[None]] = []
        self._consumer_channels: list[AbstractRobustChannel] = []
        self._connected = asyncio.Event()
        self._consuming = 0

    @property
    def ready(self) -> bool:
        return self._connection is not None and not self._connection.is_closed and self._connected.is_set()

    async def connect(self, *, retry_forever: bool = True) -> None:
        delay = 0.5
        while True:
            try:
                self._connection = await aio_pika.connect_robust(
                    self.url, client_properties={"connection_name": f"learn-{self.service}"}, timeout=10,
                    reconnect_interval=self.reconnect_interval,
                )
                break
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
                if not retry_forever:
                    raise
                log.warning("broker_unreachable", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection.close_callbacks.add(self._on_close)
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._declare_exchanges(self._publish_channel)
        self._connected.set()
        log.info("broker_connected")

    async def wait_connected(self) -> None:
        """Return once the broker connection is up (at once if it is)."""
        await self._connected.wait()

    def _on_close(self, *_: Any) -> None:
        self._connected.clear()
        if self._consuming:
            log.warning("broker_connection_lost", note="no consumer on this service's queues until reconnect",
                        queues=self._consuming)
        CONSUMERS_CONNECTED.labels(self.service).set(0)

    def _on_reconnect(self, *_: Any) -> None:
        self._connected.set()
        CONSUMERS_CONNECTED.labels(self.service).set(self._consuming)
        log.info("broker_reconnected", queues=self._consuming)

    async def _declare_exchanges(self, channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractExchange:
        exchange = await channel.declare_exchange(
            self.namespace + EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_exchange(
            self.namespace + DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        return exchange

    async def declare_queue(self, channel: aio_pika.abc.AbstractChannel, spec: QueueSpec) -> aio_pika.abc.AbstractQueue:
        ns = self.namespace
        exchange = await self._declare_exchanges(channel)
        dlx = await channel.get_exchange(ns + DEAD_LETTER_EXCHANGE)
        dlq = await channel.declare_queue(ns + spec.dead_letter_name, durable=True,
                                          arguments={"x-queue-type": "quorum"})
        await dlq.bind(dlx, routing_key=ns + spec.name)
        queue = await channel.declare_queue(
            ns + spec.name, durable=True, arguments=queue_arguments(spec, ns, self.delivery_limit)
        )
        for key in spec.binding_keys:
            await queue.bind(exchange, routing_key=key)
        return queue

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish persistently and wait for every confirm, pipelined (never one confirm at a time).

        The batch goes out as one write on the publishing channel (:func:`publish_batch`); raises if the broker
        nacks any message, if the channel closes before every confirm arrived, or after ``publish_timeout``.
        """
        if self._publish_channel is None or not self.ready:
            raise ConnectionError("broker not connected")
        if not messages:
            return
        channel = await self._publish_channel.get_underlay_channel()
        async with asyncio.timeout(self.publish_timeout):
            await publish_batch(channel, self.namespace + EVENTS_EXCHANGE, messages)

    async def consume(self, spec: QueueSpec, runner: ConsumerRunner) -> None:
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        queue = await self.declare_queue(channel, spec)
        work: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        settlements = Settlements()

        filled = asyncio.Event()
        want = 0  # the queue length a lingering worker waits for (0: nobody lingers)
        in_flight = 0  # batches being handled

        async def on_message(message: AbstractIncomingMessage) -> None:
            settlements.received(message)
            work.put_nowait(message)
            if want and work.qsize() >= want:
                filled.set()

        # Only one idle worker waits for the next delivery at a time. With every idle worker blocked in
        # ``work.get()``, a burst was dealt out one message per worker (batches of 1: one transaction and one
        # commit per event); behind the gate a free worker takes everything that has arrived, up to batch_size.
        gate = asyncio.Lock()

        async def worker() -> None:
            nonlocal want, in_flight
            while True:
                async with gate:
                    batch = [await work.get()]
                    if work.empty():
                        await asyncio.sleep(0)  # frames already read from the socket are queued in this turn
                    if in_flight and self.linger > 0 and work.qsize() + 1 < self.batch_size:
                        # Busy (other batches are committing): wait a moment for a fuller batch rather than start
                        # one more small transaction. An idle consumer never waits.
                        want = self.batch_size - 1
                        filled.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(self.linger):
                                await filled.wait()
                        want = 0
                    while len(batch) < self.batch_size and not work.empty():
                        batch.append(work.get_nowait())
                    in_flight += 1
                try:
                    await self._deliver(runner, batch, settlements)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("delivery_failed", queue=spec.name)
                finally:
                    in_flight -= 1

        for _ in range(max(1, min(self.concurrency, self.prefetch))):
            self._consumer_tasks.append(asyncio.create_task(worker()))
        await queue.consume(on_message)
        self._consumer_channels.append(channel)
        self._consuming += 1
        CONSUMERS_CONNECTED.labels(self.service).set(self._consuming)
        log.info("consumer_started", queue=self.namespace + spec.name)

    async def _deliver(self, runner: ConsumerRunner, messages: list[AbstractIncomingMessage],
                       settlements: Settlements) -> None:
        counts = [
            int(str(m.headers.get("x-delivery-count", 0) or 0)) if m.headers else 0 for m in messages
        ]
        outcomes = await runner.process_batch([(m.body, c) for m, c in zip(messages, counts, strict=True)])
        retries = [c for c, o in zip(counts, outcomes, strict=True) if o is Outcome.RETRY]
        if retries:
            # Back off before handing the messages back, so a failing handler does not spin.
            await asyncio.sleep(min(0.1 * (2 ** min(retries[0], 5)), 2.0))
        await settlements.settle(messages, outcomes)

    async def close(self) -> None:
        await stop_tasks(self._consumer_tasks)
        if self._connection is not None:
            # Bounded: a channel whose RPC (a queue declare, say) was cancelled by the shutdown can leave the
            # client library waiting for an answer that never comes, and shutdown must still end.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), timeout=10)
        self._connected.clear()
