"""An external system's subscriber: receives one tenant's learning events from mobieusLearn.

    learnctl subscribers create acme hr-system      # prints the AMQP URL once
    LEARN_SUBSCRIBER_AMQP_URL='amqp://learn-sub.acme.hr-system:<password>@rabbitmq:5672/%2F' \
    LEARN_SUBSCRIBER_TENANT=acme python examples/subscriber.py

It declares its own durable queue ``<tenant>.subscriber``, binds it to ``learn.events`` with ``<tenant>.#``,
and handles each CloudEvent once (events are delivered at least once: it deduplicates on the CloudEvent ``id``,
here in a small SQLite file, in your system inside your own database transaction). It acks only after handling.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys

import aio_pika

EXCHANGE = os.environ.get("LEARN_SUBSCRIBER_EXCHANGE", "learn.events")


def handle(event: dict) -> None:
    """Your integration goes here: e.g. push completions to an HR system."""
    data = event.get("data", {})
    sys.stdout.write(f"{event['time']} {event['type']} tenant={event['tenant']} subject={event.get('subject')} "
                     f"{json.dumps(data)[:120]}\n")
    sys.stdout.flush()


async def main() -> None:
    url = os.environ.get("LEARN_SUBSCRIBER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    tenant = os.environ.get("LEARN_SUBSCRIBER_TENANT", "acme")
    seen = sqlite3.connect(os.environ.get("LEARN_SUBSCRIBER_STATE", "subscriber-state.sqlite3"))
    seen.execute("CREATE TABLE IF NOT EXISTS handled (event_id TEXT PRIMARY KEY)")

    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        queue = await channel.declare_queue(f"{tenant}.subscriber", durable=True,
                                            arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key=f"{tenant}.#")
        sys.stderr.write(f"Listening for {tenant}.# on {EXCHANGE} (Ctrl-C to stop)\n")
        async with queue.iterator() as messages:
            async for message in messages:
                event = json.loads(message.body)
                with seen:  # one transaction: the dedupe row and your effect commit together
                    if seen.execute("SELECT 1 FROM handled WHERE event_id = ?", (event["id"],)).fetchone():
                        await message.ack()
                        continue
                    handle(event)
                    seen.execute("INSERT INTO handled VALUES (?)", (event["id"],))
                await message.ack()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
