"""Webhook delivery benchmark (issue 19): events on ``learn.events`` → the webhooks service (inbox consumer,
delivery table, delivery loop) → signed POST to a local receiver that answers 204 at once, against the bus
pipeline's own throughput (bench_bus.pipeline_path) in the same run.

- burst: ``n`` events published at once; throughput is events delivered per second, first publish to last
  delivery;
- paced: 300 events at 50/s; latency is publish → received by the endpoint.

The two paths run alternately (``ROUNDS``), each path's best round kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aiohttp import web

from bench.bench_bus import AMQP, PG, pipeline_path
from services.webhooks import handlers
from services.webhooks.app import create_app
from services.webhooks.config import WebhooksSettings
from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import Origin, build_event
from shared.config import CommonSettings
from shared.db import drop_database
from shared.events.directory import TenantUpdated
from shared.logging import configure_logging
from shared.service import BUS_KEY, DB_KEY
from shared.uow import UnitOfWork


class Endpoint:
    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.setdefault(request.headers["webhook-id"], time.time())
        self.changed.set()
        return web.Response(status=204)


async def _wait_for(endpoint: Endpoint, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(endpoint.received) < count:
        endpoint.changed.clear()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(endpoint.received)} of {count} delivered")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endpoint.changed.wait(), 1)


#: the burst goes out as the services' relay publishes (AmqpBus.publish_many: confirms pipelined), this many at a
#: time; publishing one message at a time, each waiting for its confirm, paced the burst at the publisher's speed
PUBLISH_BATCH = 200


async def _publish(bus: AmqpBus, count: int, rate: float | None) -> dict[str, float]:
    """Publish ``count`` tenant.updated events of tenant ``bench``; returns event id -> publish time. Without a
    ``rate``, in batches of ``PUBLISH_BATCH`` as fast as the broker confirms them."""
    sent: dict[str, float] = {}
    start = time.perf_counter()
    origin = Origin(1, "bench")
    batch: list[OutgoingMessage] = []
    for i in range(count):
        if rate:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        event = build_event(origin, TenantUpdated(status="active", updated_at=datetime.now(UTC)), service="bench")
        sent[event.id] = time.time()
        batch.append(OutgoingMessage(event.routing_key, event.to_bytes(), event.id))
        if rate or len(batch) >= PUBLISH_BATCH:
            await bus.publish_many(batch)
            batch = []
    if batch:
        await bus.publish_many(batch)
    return sent


async def webhooks_path(n: int, namespace: str, prefix: str, *, paced: bool = True) -> dict[str, Any]:
    endpoint = Endpoint()
    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", endpoint.handle)
    receiver = web.AppRunner(receiver_app, access_log=None)
    await receiver.setup()
    await web.TCPSite(receiver, "127.0.0.1", 0).start()
    port = receiver.addresses[0][1]

    common = CommonSettings(postgres_url=PG, amqp_url=AMQP, database_prefix=prefix, amqp_namespace=namespace,
                            log_json=True)
    settings = WebhooksSettings(common=common, allow_http=True, allowed_networks="127.0.0.1/32",
                                endpoint_concurrency=32, endpoint_rate=100000, concurrency=64, poll_interval=0.2)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        while not app[BUS_KEY].ready:  # noqa: ASYNC110 - the bus exposes a flag, no event
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # the consumer declares and binds its queue after connecting
        uow = UnitOfWork(app[DB_KEY], deps=handlers.Deps(settings))
        await handlers.create_endpoint(uow, Origin(1, "bench"), handlers.NewEndpoint(f"http://127.0.0.1:{port}/hook"))
        bus = AmqpBus(AMQP, service="bench", namespace=namespace)
        await bus.connect()
        try:
            start = time.time()
            cpu = time.process_time()
            await _publish(bus, n, None)
            await _wait_for(endpoint, n)
            burst_s = max(endpoint.received.values()) - start
            burst = {"msgs_per_s": n / burst_s, "cpu_ms_per_msg": (time.process_time() - cpu) * 1000 / n}
            if not paced:
                return burst
            endpoint.received.clear()
            sent = await _publish(bus, 300, 50)
            await _wait_for(endpoint, 300)
        finally:
            await bus.close()
        latencies = sorted((endpoint.received[i] - t) * 1000 for i, t in sent.items())
        return {**burst, "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1]}
    finally:
        await runner.cleanup()
        await receiver.cleanup()
        await drop_database(common.database_url("webhooks"))
        conn = await aio_pika.connect(AMQP)
        async with conn:
            channel = await conn.channel()
            for name in ("webhooks.events", "webhooks.events.dlq"):
                await channel.queue_delete(namespace + name)
            await channel.exchange_delete(namespace + "learn.events")
            await channel.exchange_delete(namespace + "learn.dlx")


#: the two paths run alternately this many times (pipeline, webhooks, pipeline, webhooks ...): on a shared machine
#: the load moves within a run, and one pair of runs compared whatever moment each landed on
ROUNDS = 2


async def _run(n: int, rounds: int) -> dict[str, Any]:
    token = secrets.token_hex(3)
    pipes: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    for i in range(rounds):
        pipes.append(await pipeline_path(n, f"benchw{token}{i}.", f"benchw{token}{i}_"))
        last = i == rounds - 1
        hooks.append(await webhooks_path(n, f"benchw{token}{i}h.", f"benchw{token}{i}h_", paced=last))
    pipe = max(pipes, key=lambda r: r["msgs_per_s"])
    best = max(hooks, key=lambda r: r["msgs_per_s"])
    return {"events": n, "rounds": rounds, "pipeline": pipe,
            "webhooks": {**hooks[-1], "msgs_per_s": best["msgs_per_s"], "cpu_ms_per_msg": best["cpu_ms_per_msg"]},
            "ratio": best["msgs_per_s"] / pipe["msgs_per_s"],
            "round_ratios": [h["msgs_per_s"] / p["msgs_per_s"] for p, h in zip(pipes, hooks, strict=True)],
            "round_rates": [(p["msgs_per_s"], h["msgs_per_s"]) for p, h in zip(pipes, hooks, strict=True)]}


def run(n: int = 2000, rounds: int = ROUNDS) -> dict[str, Any]:
    configure_logging("bench", "warning")
    return asyncio.run(_run(n, rounds))


def markdown(result: dict[str, Any]) -> str:
    pipe, hooks = result["pipeline"], result["webhooks"]
    ok = "holds" if result["ratio"] >= 0.5 else "misses"
    return "\n".join([
        "| path | events/s (burst) | client CPU per event | p50 | p99 |",
        "|---|---|---|---|---|",
        f"| bus pipeline: outbox → relay → RabbitMQ → inbox consumer | {pipe['msgs_per_s']:.0f} "
        f"| {pipe['cpu_ms_per_msg']:.2f} ms | – | – |",
        f"| webhooks: RabbitMQ → inbox consumer → delivery table → signed POST (receiver answers at once) "
        f"| {hooks['msgs_per_s']:.0f} | {hooks['cpu_ms_per_msg']:.2f} ms | {hooks['p50_ms']:.1f} ms "
        f"| {hooks['p99_ms']:.1f} ms |",
        "",
        f"Throughput ratio webhooks / pipeline: **{result['ratio']:.2f}** (target ≥ 0.5: {ok}); {result['events']} "
        "events, one endpoint, both paths in one process and one run. Latency (event published → received by "
        "the endpoint) is measured at light load: 300 events paced at 50/s. Client CPU per event is the benchmark "
        "process's CPU time over the burst divided by the events (the pipeline's: producer, relay and consumer; the "
        "webhooks': publisher, consumer, delivery loop and the receiver, all in the one process); it moves much less "
        "with the machine's load than the throughput does.",
        *_rounds(result),
    ])


def _rounds(result: dict[str, Any]) -> list[str]:
    rates = result.get("round_rates")
    if not rates or len(rates) < 2:
        return []
    pairs = "; ".join(f"{p:.0f} and {h:.0f} events/s ({h / p:.2f}×)" for p, h in rates)
    return ["", f"The paths ran alternately, {len(rates)} rounds (pipeline, then webhooks): {pairs}. The table keeps "
            "each path's best round; the ratio is best against best."]


if __name__ == "__main__":
    print(markdown(run()))
