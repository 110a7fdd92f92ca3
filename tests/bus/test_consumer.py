"""Idempotent consumers, dead-lettering and broker restarts on the real broker."""

from __future__ import annotations

import asyncio
import json
import subprocess

import aio_pika
import pytest

from tests.bus.conftest import TEST_QUEUE
from tests.support.infra import wait_until


async def test_same_event_delivered_twice_in_sequence_has_one_effect(harness):
    runner = await harness.start_consumer()
    event = harness.event(1)
    bus = harness.buses[0]
    await harness.write(event)
    relay_bus = await harness.new_bus()
    from shared.bus.amqp import OutgoingMessage

    message = OutgoingMessage(event.routing_key, event.to_bytes(), event.id)
    await relay_bus.publish_many([message])
    await wait_until(lambda: _has(harness, 1), message="first effect")
    await relay_bus.publish_many([message])
    await asyncio.sleep(0.7)
    assert await harness.effect_counts() == {1: 1}
    assert runner is not None and bus.ready


async def test_same_event_delivered_concurrently_has_one_effect(harness):
    runner = await harness.start_consumer()
    event = harness.event(5)
    outcomes = await asyncio.gather(*[runner.process(event.to_bytes()) for _ in range(20)])
    assert await harness.effect_counts() == {5: 1}
    assert sorted(o.value for o in outcomes) == ["duplicate"] * 19 + ["handled"]


async def test_concurrent_duplicates_through_the_broker_have_one_effect(harness):
    await harness.start_consumer()
    bus = await harness.new_bus()
    from shared.bus.amqp import OutgoingMessage

    event = harness.event(9)
    await bus.publish_many([OutgoingMessage(event.routing_key, event.to_bytes(), event.id)] * 30)
    await wait_until(lambda: _has(harness, 1), message="effect")
    await asyncio.sleep(1.0)
    assert await harness.effect_counts() == {9: 1}


async def _has(harness, n: int) -> bool:
    return len(await harness.effect_counts()) >= n


async def _dead_letters(harness) -> list[dict]:
    connection = await aio_pika.connect(harness.env.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(harness.env.namespace + TEST_QUEUE.dead_letter_name, passive=True)
        bodies = []
        while (message := await queue.get(fail=False, no_ack=False)) is not None:
            bodies.append(json.loads(message.body) if message.body.startswith(b"{") else {"raw": message.body})
            if len(bodies) > 50:
                break
        return bodies  # unacked: closing the channel puts them back


async def test_failing_handler_dead_letters_after_the_limit_while_the_rest_flows(harness):
    await harness.start_consumer()
    await harness.start_relay()
    poison = harness.event(100, fail=True)
    await harness.write(poison, *[harness.event(n) for n in range(50)])
    await wait_until(lambda: _has(harness, 50), timeout=30, message="the 50 healthy events")
    dead = await wait_until(lambda: _dead_letters(harness), timeout=30, message="the poison message in the DLQ")
    assert [d["id"] for d in dead] == [poison.id]
    assert 100 not in await harness.effect_counts()


async def test_undecodable_message_goes_to_the_dead_letter_queue_at_once(harness):
    await harness.start_consumer()
    bus = await harness.new_bus()
    from shared.bus.amqp import OutgoingMessage

    await bus.publish_many([OutgoingMessage("acme.test.happened", b"\xff not json", "junk-1")])
    good = harness.event(1)
    await bus.publish_many([OutgoingMessage(good.routing_key, good.to_bytes(), good.id)])
    await wait_until(lambda: _has(harness, 1), message="the good event")
    dead = await wait_until(lambda: _dead_letters(harness), timeout=15, message="the junk in the DLQ")
    assert dead == [{"raw": b"\xff not json"}]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.exclusive
async def test_broker_restart_while_500_events_flow_loses_and_duplicates_nothing(harness):
    await harness.start_consumer()
    await harness.start_relay(batch_size=50)
    try:
        await harness.write(*[harness.event(n) for n in range(250)])
        await asyncio.sleep(0.3)
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
        await harness.write(*[harness.event(n) for n in range(250, 500)])  # written while the broker is down
        await asyncio.sleep(1.0)
    finally:
        await asyncio.to_thread(_rabbitmqctl, "start_app")
        await asyncio.to_thread(_rabbitmqctl, "await_startup")
    await wait_until(lambda: _has(harness, 500), timeout=120, interval=0.5, message="all 500 effects")
    await asyncio.sleep(1.0)
    counts = await harness.effect_counts()
    assert set(counts) == set(range(500))
    assert set(counts.values()) == {1}
    assert await harness.outbox_size() == 0


async def test_a_batch_commits_once_and_skips_already_handled_and_repeated_events(harness):
    runner = await harness.start_consumer()
    seen_before = harness.event(1)
    assert (await runner.process(seen_before.to_bytes())).value == "handled"
    fresh = [harness.event(n) for n in range(2, 6)]
    bodies = [(seen_before.to_bytes(), 1)] + [(e.to_bytes(), 0) for e in fresh] + [(fresh[0].to_bytes(), 0)]
    outcomes = await runner.process_batch(bodies)
    assert [o.value for o in outcomes] == ["duplicate", "handled", "handled", "handled", "handled", "duplicate"]
    assert await harness.effect_counts() == {n: 1 for n in range(1, 6)}


async def test_one_failing_or_poison_message_in_a_batch_costs_the_others_nothing(harness):
    runner = await harness.start_consumer()
    good = [harness.event(n) for n in range(3)]
    failing = harness.event(50, fail=True)
    poison = harness.event(60, poison=True)
    bodies = [(good[0].to_bytes(), 0), (failing.to_bytes(), 0), (b"{broken", 0), (good[1].to_bytes(), 0),
              (poison.to_bytes(), 0), (good[2].to_bytes(), 0)]
    outcomes = await runner.process_batch(bodies)
    assert [o.value for o in outcomes] == ["handled", "failed", "dead_lettered", "handled", "dead_lettered",
                                           "handled"]
    assert await harness.effect_counts() == {0: 1, 1: 1, 2: 1}
