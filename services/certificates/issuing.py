"""The issue queue's consumer: certificates rendered *before* the consumer's transaction (ADR 0024).

The shared consumer (shared/bus/consumer.py) opens one transaction per delivery batch, inserts the inbox rows and
runs the handlers in it. Rendering there meant every issuing transaction held a database connection (and the
tenant's shared templates lock) while its certificates waited for a render worker, one after another. This runner
first renders the whole batch's certificates at once (:func:`handlers.prerender`: one short read, connection
returned, then the renders over every worker), then hands the batch to the shared consumer unchanged: the inbox
row, the certificate, its PDF and ``certificate.issued`` still commit together, in a transaction that now only
writes. Exactly once is the consumer's as before (inbox + the ``(tenant_id, enrollment_id)`` unique key); what a
duplicate delivery costs is, at most, one render thrown away.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from services.certificates import handlers
from services.certificates.handlers import PRERENDERED, Runtime
from shared.bus.consumer import ConsumerRunner, Outcome, PermanentError, Subscription
from shared.bus.envelope import CloudEvent
from shared.db import Database
from shared.events.enrollment import EnrollmentCompleted
from shared.uow import UnitOfWork

log = structlog.get_logger("certificates.issuing")


class IssueRunner(ConsumerRunner):
    def __init__(self, db: Database, subscription: Subscription, service: str, runtime: Runtime):
        super().__init__(db, subscription, service)
        self.runtime = runtime
        self._decoded: dict[int, tuple[bytes, tuple[CloudEvent, Any]]] = {}

    def decode(self, body: bytes) -> tuple[CloudEvent, Any]:
        # Each body is parsed once: by the pre-render, whose result the consumer then reuses.
        known = self._decoded.get(id(body))
        if known is not None and known[0] is body:
            return known[1]
        return super().decode(body)

    async def process(self, body: bytes, delivery_count: int = 0) -> Outcome:
        if PRERENDERED.get() is not None:  # inside process_batch, which rendered already
            return await super().process(body, delivery_count)
        return (await self._prerendered([(body, delivery_count)], single=True))[0]

    async def process_batch(self, bodies: list[tuple[bytes, int]]) -> list[Outcome]:
        return await self._prerendered(bodies, single=False)

    async def _prerendered(self, bodies: list[tuple[bytes, int]], *, single: bool) -> list[Outcome]:
        deliveries: list[tuple[CloudEvent, EnrollmentCompleted]] = []
        for body, _count in bodies:
            try:
                event, payload = super().decode(body)
            except PermanentError:
                continue  # the consumer dead-letters it
            self._decoded[id(body)] = (body, (event, payload))
            if isinstance(payload, EnrollmentCompleted):
                deliveries.append((event, payload))
        token = PRERENDERED.set(await self._prerender(deliveries))
        try:
            if single:
                return [await super().process(*bodies[0])]
            return await super().process_batch(bodies)
        finally:
            PRERENDERED.reset(token)
            for body, _count in bodies:
                self._decoded.pop(id(body), None)

    async def _prerender(self, deliveries: list[tuple[CloudEvent, EnrollmentCompleted]]) -> dict[str, Any]:
        if not deliveries:
            return {}
        try:
            return await handlers.prerender(UnitOfWork(self.db, deps=self.runtime), deliveries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transaction renders what is missing (and reports a lasting failure)
            log.warning("certificate_prerender_failed", certificates=len(deliveries), error=repr(exc)[:300])
            return {}
