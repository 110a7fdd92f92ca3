"""The in-process bus: the same interface as :class:`AmqpBus`, for the embedded default and unit tests.

It keeps AMQP's topic-matching and retry/dead-letter semantics, but nothing survives a process exit: the
embedded default is for trying the API, not for production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from shared.bus.amqp import OutgoingMessage
from shared.bus.consumer import ConsumerRunner, Outcome, stop_tasks
from shared.bus.topology import QueueSpec

log = structlog.get_logger("shared.bus.inprocess")


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` is zero or more words."""
    pat, words = pattern.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        while i < len(pat):
            if pat[i] == "#":
                return any(match(i + 1, k) for k in range(j, len(words) + 1))
            if j >= len(words) or (pat[i] != "*" and pat[i] != words[j]):
                return False
            i, j = i + 1, j + 1
        return j == len(words)

    return match(0, 0)


@dataclass
class _Queue:
    spec: QueueSpec
    items: asyncio.Queue[tuple[bytes, int]] = field(default_factory=asyncio.Queue)
    dead_letters: list[bytes] = field(default_factory=list)


class InProcessBus:
    def __init__(self, *, delivery_limit: int = 5, concurrency: int = 4):
        self.delivery_limit = delivery_limit
        self.concurrency = concurrency
        self.queues: dict[str, _Queue] = {}
        self.taps: list[tuple[str, asyncio.Queue[bytes]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        return True

    async def connect(self, *, retry_forever: bool = True) -> None:
        return None

    def _queue(self, spec: QueueSpec) -> _Queue:
        return self.queues.setdefault(spec.name, _Queue(spec))

    def tap(self, pattern: str) -> asyncio.Queue[bytes]:
        """Receive a copy of every message whose routing key matches ``pattern`` (tests, subscribers)."""
        q: asyncio.Queue[bytes] = asyncio.Queue()
        self.taps.append((pattern, q))
        return q

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        for m in messages:
            for q in self.queues.values():
                if any(topic_matches(k, m.routing_key) for k in q.spec.binding_keys):
                    q.items.put_nowait((m.body, 0))
            for pattern, tq in self.taps:
                if topic_matches(pattern, m.routing_key):
                    tq.put_nowait(m.body)

    async def consume(self, spec: QueueSpec, runner: ConsumerRunner) -> None:
        queue = self._queue(spec)

        async def worker() -> None:
            while True:
                body, count = await queue.items.get()
                outcome = await runner.process(body, count)
                if outcome is Outcome.DEAD_LETTER or (
                    outcome is Outcome.RETRY and count + 1 >= self.delivery_limit
                ):
                    queue.dead_letters.append(body)
                    log.error("message_dead_lettered", queue=spec.name)
                elif outcome is Outcome.RETRY:
                    await asyncio.sleep(min(0.05 * (2**count), 1.0))
                    queue.items.put_nowait((body, count + 1))

        for _ in range(self.concurrency):
            self._tasks.append(asyncio.create_task(worker()))

    async def close(self) -> None:
        await stop_tasks(self._tasks)
