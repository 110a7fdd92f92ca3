"""Coalesced acks (shared/bus/amqp.py ``Settlements``): one ``basic.ack multiple`` where the broker allows it,
one ack per message where a batch finished ahead of an older one; never a tag the broker no longer holds.

The first tests check the bookkeeping against a recording channel (pure logic); the last one runs batches that
finish out of order on the real broker and checks that every message is settled exactly once (the broker closes a
channel that acks an unknown tag, and returns whatever stayed unacked)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aio_pika
import sqlalchemy as sa

from shared.bus.amqp import Settlements
from shared.bus.consumer import Outcome
from tests.bus.conftest import TEST_QUEUE, effects
from tests.support.infra import wait_until


class RecordingChannel:
    """Stands in for an aiormq channel: remembers the frames, in order."""

    is_closed = False

    def __init__(self) -> None:
        self.frames: list[tuple[Any, ...]] = []

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.frames.append(("ack", tag, multiple))

    async def basic_nack(self, tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self.frames.append(("nack", tag, requeue))

    async def basic_reject(self, tag: int, requeue: bool = True) -> None:
        self.frames.append(("reject", tag, requeue))


class Delivery:
    def __init__(self, channel: RecordingChannel, tag: int):
        self.channel, self.delivery_tag, self.message_id = channel, tag, f"m{tag}"


def deliveries(settlements: Settlements, channel: RecordingChannel, tags: range) -> dict[int, Delivery]:
    out = {tag: Delivery(channel, tag) for tag in tags}
    for message in out.values():
        settlements.received(message)  # type: ignore[arg-type]
    return out


async def settle(settlements: Settlements, messages: list[Delivery], outcome: Outcome = Outcome.HANDLED) -> None:
    await settlements.settle(messages, [outcome] * len(messages))  # type: ignore[arg-type]


async def test_a_batch_of_the_oldest_deliveries_is_acked_with_one_frame():
    channel, settlements = RecordingChannel(), Settlements()
    m = deliveries(settlements, channel, range(1, 33))
    await settle(settlements, [m[t] for t in range(1, 33)])
    assert channel.frames == [("ack", 32, True)]


async def test_a_batch_that_finishes_before_an_older_one_is_acked_one_by_one_and_never_twice():
    channel, settlements = RecordingChannel(), Settlements()
    m = deliveries(settlements, channel, range(1, 10))
    await settle(settlements, [m[4], m[5], m[6]])  # 1-3 are still in flight
    assert channel.frames == [("ack", 4, False), ("ack", 5, False), ("ack", 6, False)]
    channel.frames.clear()
    await settle(settlements, [m[1], m[2], m[3]])  # the ack multiple names 3: still unsettled, and 4-6 are done
    assert channel.frames == [("ack", 3, True)]
    channel.frames.clear()
    await settle(settlements, [m[7], m[8], m[9]])
    assert channel.frames == [("ack", 9, True)]


async def test_rejects_and_nacks_go_one_by_one_and_an_ack_multiple_never_names_them():
    channel, settlements = RecordingChannel(), Settlements()
    m = deliveries(settlements, channel, range(1, 6))
    await settlements.settle([m[1], m[2], m[3], m[4], m[5]],  # type: ignore[list-item]
                             [Outcome.HANDLED, Outcome.DEAD_LETTER, Outcome.HANDLED, Outcome.DUPLICATE, Outcome.RETRY])
    assert channel.frames == [("reject", 2, False), ("nack", 5, True), ("ack", 4, True)]


async def test_a_new_channel_after_a_reconnect_starts_its_own_tags():
    settlements = Settlements()
    old, new = RecordingChannel(), RecordingChannel()
    stale = deliveries(settlements, old, range(1, 4))
    fresh = deliveries(settlements, new, range(1, 3))  # tags start at 1 again on the new channel
    await settle(settlements, list(stale.values()))  # their channel is gone: nothing is sent on the new one
    assert new.frames == [] and old.frames == []
    await settle(settlements, list(fresh.values()))
    assert new.frames == [("ack", 2, True)]


async def test_batches_finishing_out_of_order_on_the_real_broker_settle_every_message_once(harness, monkeypatch):
    """500 events through the real consumer, whose handler takes a random time: batches overtake each other.
    Every event has its effect once; no delivery comes twice (an ack the broker refuses closes the channel, and
    everything unacked on it comes again, flagged redelivered); nothing is left unacked at the end (the consumer's
    channel is closed: an unacked message would be back in the queue)."""
    seen: list[bool] = []
    received = Settlements.received

    def counting(self: Settlements, message: Any) -> None:
        seen.append(bool(message.redelivered))
        received(self, message)

    monkeypatch.setattr(Settlements, "received", counting)

    async def slow_effect(session: Any, event: Any, payload: Any) -> None:
        await asyncio.sleep(random.random() * 0.02)
        await session.execute(sa.insert(effects).values(n=payload.n))

    bus = await harness.new_bus(prefetch=64, concurrency=8)
    await harness.start_consumer(handler=slow_effect, bus=bus)
    await harness.start_relay()
    await harness.write(*[harness.event(n) for n in range(500)])

    async def all_handled() -> bool:
        return len(await harness.effect_counts()) == 500

    await wait_until(all_handled, timeout=60, message="500 effects")
    assert set((await harness.effect_counts()).values()) == {1}
    assert len(seen) == 500 and not any(seen), (len(seen), sum(seen))
    assert bus.ready, "the consumer's connection was closed (an ack the broker refused closes the channel)"
    await bus.close()
    connection = await aio_pika.connect(harness.env.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(harness.env.namespace + TEST_QUEUE.name, passive=True)
        assert queue.declaration_result.message_count == 0
