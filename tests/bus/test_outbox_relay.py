"""The outbox and relay on real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import aiormq
import pytest
from yarl import URL

from shared.bus.amqp import AmqpBus, OutgoingMessage, publish_batch
from shared.bus.relay import OutboxRelay
from tests.support import infra
from tests.support.env import recording
from tests.support.infra import wait_until


async def test_rolled_back_event_is_never_published_and_committed_one_is_published_once(harness):
    async with recording(harness.env, "acme.test.happened") as rec:
        await harness.start_relay()
        rolled_back = harness.event(1)
        committed = harness.event(2)
        await harness.write(rolled_back, commit=False)
        await harness.write(committed)
        await wait_until(lambda: len(rec.events) >= 1, message="the committed event")
        await asyncio.sleep(1.0)  # give a wrongly published or duplicated event time to show up
        assert [e.id for e in rec.events] == [committed.id]
        assert await harness.outbox_size() == 0


async def test_relay_wakes_on_notify_without_waiting_for_the_poll(harness):
    async with recording(harness.env, "acme.test.happened") as rec:
        bus = await harness.new_bus()
        relay = OutboxRelay(harness.db, bus, service="bus", poll_interval=30)
        harness.tasks.append(asyncio.create_task(relay.run()))
        await asyncio.sleep(0.5)  # the relay is now idle, waiting up to 30 s
        await harness.write(harness.event(7))
        await wait_until(lambda: rec.events, timeout=5, message="a NOTIFY-driven publish")


async def test_two_relays_at_once_deliver_every_event(harness):
    await harness.start_consumer()
    await harness.start_relay(batch_size=20)
    await harness.start_relay(batch_size=20)
    await harness.write(*[harness.event(n) for n in range(1000)])
    await wait_until(lambda: _count(harness, 1000), timeout=60, message="1000 effects")
    counts = await harness.effect_counts()
    assert set(counts) == set(range(1000))
    assert set(counts.values()) == {1}


async def _count(harness, expected: int) -> bool:
    return len(await harness.effect_counts()) >= expected


class CrashAfterPublish:
    """A publisher that publishes, then dies before the relay can delete the rows (a crashed relay)."""

    def __init__(self, bus):
        self.bus = bus
        self.crashes = 0

    async def publish_many(self, messages: list[OutgoingMessage]) -> None:
        await self.bus.publish_many(messages)
        self.crashes += 1
        raise RuntimeError("relay killed between publish and mark-sent")


async def test_relay_killed_between_publish_and_mark_sent_duplicates_but_effect_happens_once(harness):
    async with recording(harness.env, "acme.test.happened") as rec:
        await harness.start_consumer()
        crashing = CrashAfterPublish(await harness.new_bus())
        events = [harness.event(n) for n in range(20)]
        await harness.write(*events)
        with_crash = OutboxRelay(harness.db, crashing, service="bus")
        try:
            await with_crash.publish_batch()
        except RuntimeError:
            pass
        assert crashing.crashes == 1
        assert await harness.outbox_size() == 20  # nothing marked sent: the rows stay
        await harness.start_relay()  # the replacement relay publishes them again
        await wait_until(lambda: len(rec.events) >= 40, message="both copies on the wire")
        await wait_until(lambda: _count(harness, 20), message="20 effects")
        await asyncio.sleep(0.5)
        counts = await harness.effect_counts()
        assert counts == {n: 1 for n in range(20)}
        assert await harness.outbox_size() == 0


async def test_a_batch_whose_channel_closes_before_its_confirms_fails_and_its_rows_stay(harness):
    """``publish_batch`` returns only after every confirm: publishing to an exchange that does not exist makes the
    broker close the channel (404) instead of confirming, and the batch must fail, so the relay keeps the rows."""
    bus = await harness.new_bus()
    channel = await bus._publish_channel.get_underlay_channel()
    with pytest.raises(aiormq.exceptions.AMQPError):
        await asyncio.wait_for(publish_batch(channel, harness.env.namespace + "no.such.exchange",
                                             [OutgoingMessage("acme.test.happened", b"{}", f"m{n}")
                                              for n in range(5)]), timeout=10)

    class ToNowhere:
        async def publish_many(self, messages: list[OutgoingMessage]) -> None:
            await publish_batch(await bus._publish_channel.get_underlay_channel(),
                                harness.env.namespace + "no.such.exchange", messages)

    await asyncio.sleep(0.5)  # the robust channel reopens
    await harness.write(*[harness.event(n) for n in range(5)])
    with pytest.raises(aiormq.exceptions.AMQPError):
        await asyncio.wait_for(OutboxRelay(harness.db, ToNowhere(), service="bus").publish_batch(), timeout=10)
    assert await harness.outbox_size() == 5


async def test_an_outbox_write_notifies_the_relay_at_commit_once_and_never_on_rollback(harness):
    """The row and its ``pg_notify`` are one statement: the notification comes with the commit (one per
    transaction, however many events), and a rolled-back write sends none."""
    import asyncpg

    from shared.bus.outbox import NOTIFY_CHANNEL
    from shared.db import listen_dsn

    received: list[str] = []
    listener = await asyncpg.connect(listen_dsn(harness.db.url))
    try:
        await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.append(args[2]))
        await harness.write(harness.event(11), commit=False)
        await harness.write(harness.event(12), harness.event(13))
        await wait_until(lambda: received, timeout=5, message="the commit's notification")
        await listener.execute("SELECT 1")  # a round trip: anything still queued for us has arrived
        assert received == [NOTIFY_CHANNEL]
        assert await harness.outbox_size() == 2  # no relay runs here: the committed pair, and not the rolled-back one
    finally:
        await listener.close()


class CountingPublisher:
    """The bus, with a count of the relay's publish attempts (it passes for a reconnecting publisher)."""

    def __init__(self, bus: AmqpBus):
        self.bus = bus
        self.attempts = 0

    @property
    def ready(self) -> bool:
        return self.bus.ready

    async def wait_connected(self) -> None:
        await self.bus.wait_connected()

    async def publish_many(self, messages: list[OutgoingMessage]) -> None:
        self.attempts += 1
        await self.bus.publish_many(messages)


async def test_after_a_broker_outage_the_relay_publishes_as_soon_as_the_connection_is_back(harness):
    """The broker drops the bus's connection and refuses it for a while (its user is deleted, then created again).
    An event committed meanwhile fails to publish; the relay's pause after that failure is two minutes here, yet
    the event goes out once the bus has reconnected: the pause ends with the reconnect, not with the backoff."""
    api, auth = infra.management_api()
    user, password = f"{harness.env.namespace}relay", secrets.token_hex(12)

    async with aiohttp.ClientSession(headers=auth) as http:
        async def management_call(method: str, path: str, body: dict[str, str] | None = None) -> None:
            try:
                async with http.request(method, f"{api}{path}", json=body) as resp:
                    assert resp.status in (201, 204), f"{method} {path}: {resp.status} {await resp.text()}"
            except aiohttp.ClientConnectionError:
                pytest.fail(infra.management_unreachable(api), pytrace=False)

        async def admit() -> None:
            await management_call("PUT", f"/users/{user}", {"password": password, "tags": ""})
            await management_call("PUT", f"/permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"})

        await admit()
        try:
            amqp = URL(harness.env.amqp_url).with_user(user).with_password(password)
            bus = AmqpBus(str(amqp), service="bus", namespace=harness.env.namespace, reconnect_interval=0.5)
            await bus.connect(retry_forever=False)
            harness.buses.append(bus)
            publisher = CountingPublisher(bus)
            async with recording(harness.env, "acme.test.happened") as rec:
                relay = OutboxRelay(harness.db, publisher, service="bus", poll_interval=30, min_backoff=120,
                                    max_backoff=120)
                harness.tasks.append(asyncio.create_task(relay.run()))
                await management_call("DELETE", f"/users/{user}")  # closes the user's connections
                await wait_until(lambda: not bus.ready, timeout=15, message="the broker dropping the connection")
                await harness.write(harness.event(11))
                await wait_until(lambda: publisher.attempts >= 1, timeout=15, message="a publish that fails")
                assert await harness.outbox_size() == 1
                assert not rec.events
                await admit()
                await wait_until(lambda: rec.events, timeout=30, message="the event, after the reconnect")
                assert [e.data["n"] for e in rec.events] == [11]
                await wait_until(lambda: _outbox_is(harness, 0), timeout=10, message="an empty outbox")
        finally:
            async with http.delete(f"{api}/users/{user}"):
                pass


async def _outbox_is(harness, size: int) -> bool:
    return await harness.outbox_size() == size
