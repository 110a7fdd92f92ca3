"""Idempotent consumption: the transport-independent part of every consumer.

For each delivery: decode the CloudEvent and its typed payload, then in ONE database transaction insert the
event id into the inbox and run the handler's writes. A unique violation on the inbox row means the event
was already handled: the message is acked and nothing else happens. The transport acks only after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy.dialects.sqlite import insert as _sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.contextvars import bound_contextvars

from shared.bus.envelope import CloudEvent
from shared.bus.tables import inbox
from shared.bus.topology import QueueSpec
from shared.consistency import APPLIED
from shared.db import Database, is_unique_violation
from shared.http import is_unavailable
from shared.metrics import CONSUMER_MESSAGES

log = structlog.get_logger("shared.bus.consumer")

Handler = Callable[[AsyncSession, CloudEvent, Any], Awaitable[None]]


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel a transport's consumer tasks and wait for them to end (whatever they end with); empties ``tasks``."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    tasks.clear()


class PermanentError(Exception):
    """The message can never be handled (bad payload, unknown tenant...): dead-letter it now, do not retry."""


class Outcome(enum.Enum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    RETRY = "failed"  # transient failure: redeliver (counts toward the delivery limit)
    DEAD_LETTER = "dead_lettered"  # poison: straight to the dead-letter queue


@dataclass
class Subscription:
    """A queue of the topology and the use case that handles its events."""

    queue: QueueSpec
    handler: Handler
    #: event type -> pydantic model of ``data``; defaults to the shared registry
    models: dict[str, type[BaseModel]] = field(default_factory=dict)

    @property
    def consumer_name(self) -> str:
        return self.queue.name


_INBOX_INSERT = sa.insert(inbox)
_PG_INBOX_BATCH = sa.text(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS varchar[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)


class _AlreadyHandled(Exception):
    pass


class ConsumerRunner:
    """Runs one subscription's handler with the inbox; the transports call :meth:`process`."""

    def __init__(self, db: Database, subscription: Subscription, service: str):
        self.db = db
        self.subscription = subscription
        self.service = service
        if not subscription.models:
            from shared.events import EVENT_MODELS

            subscription.models = {t: EVENT_MODELS[t] for t in subscription.queue.event_types}

        # one labelled child per outcome, looked up once (``labels()`` per message was a dict build + lock each time)
        self._counters = {o: CONSUMER_MESSAGES.labels(service, subscription.queue.name, o.value) for o in Outcome}

    def _count(self, outcome: Outcome) -> None:
        self._counters[outcome].inc()

    def decode(self, body: bytes) -> tuple[CloudEvent, Any]:
        try:
            # Parsed and validated in one pass by pydantic-core (not json.loads into dicts, then validated again).
            event = CloudEvent.model_validate_json(body)
            model = self.subscription.models.get(event.event_type)
            if model is None:
                raise PermanentError(f"queue {self.subscription.queue.name} does not handle {event.type}")
            return event, model.model_validate(event.data)
        except (ValueError, ValidationError) as exc:  # json.JSONDecodeError is a ValueError
            raise PermanentError(f"undecodable message: {str(exc)[:500]}") from exc

    async def process(self, body: bytes, delivery_count: int = 0) -> Outcome:
        try:
            event, payload = self.decode(body)
        except PermanentError as exc:
            log.error("message_dead_lettered", queue=self.subscription.queue.name, reason=str(exc))
            self._count(Outcome.DEAD_LETTER)
            return Outcome.DEAD_LETTER
        with bound_contextvars(event_id=event.id, tenant=event.tenant, request_id=event.requestid,
                               event_type=event.event_type):
            outcome = await self._handle(event, payload, delivery_count)
        self._count(outcome)
        return outcome

    async def process_batch(self, bodies: list[tuple[bytes, int]]) -> list[Outcome]:
        """Handle several deliveries in ONE transaction when they all succeed (one commit instead of N).

        The inbox rows go in with one ``INSERT … ON CONFLICT DO NOTHING RETURNING``: ids it returns are new and get
        their handler run; the others are duplicates. If any handler fails, the whole batch rolls back and every
        message is handled on its own with :meth:`process`, so one bad message never costs the others anything.
        """
        if len(bodies) == 1:
            return [await self.process(*bodies[0])]
        outcomes: list[Outcome | None] = [None] * len(bodies)
        decoded: list[tuple[int, CloudEvent, Any]] = []
        first_index: dict[str, int] = {}
        for index, (body, _count) in enumerate(bodies):
            try:
                event, payload = self.decode(body)
            except PermanentError as exc:
                log.error("message_dead_lettered", queue=self.subscription.queue.name, reason=str(exc))
                outcomes[index] = Outcome.DEAD_LETTER
                continue
            if event.id in first_index:
                outcomes[index] = Outcome.DUPLICATE  # the same event twice in one batch
                continue
            first_index[event.id] = index
            decoded.append((index, event, payload))
        if decoded:
            try:
                await self._handle_together(decoded, outcomes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("batch_fallback_to_single", queue=self.subscription.queue.name, error=repr(exc)[:200])
                for index, event, payload in decoded:
                    with bound_contextvars(event_id=event.id, tenant=event.tenant, request_id=event.requestid,
                                           event_type=event.event_type):
                        outcomes[index] = await self._handle(event, payload, bodies[index][1])
        final = [o if o is not None else Outcome.RETRY for o in outcomes]
        for outcome in final:
            self._count(outcome)
        return final

    async def _handle_together(self, decoded: list[tuple[int, CloudEvent, Any]],
                               outcomes: list[Outcome | None]) -> None:
        consumer = self.subscription.consumer_name
        async with self.db.transaction() as session:
            ids = [e.id for _, e, _ in decoded]
            if self.db.is_postgres:
                # One cached statement whatever the batch size (a multi-row VALUES compiles anew for every size and
                # coerces every value in Python): the ids travel as one array parameter.
                result = await session.execute(_PG_INBOX_BATCH, {"consumer": consumer, "ids": ids})
            else:
                rows = [{"consumer": consumer, "event_id": event_id} for event_id in ids]
                result = await session.execute(
                    _sqlite_insert(inbox).values(rows).on_conflict_do_nothing().returning(inbox.c.event_id))
            new_ids = set(result.scalars().all())
            for index, event, payload in decoded:
                if event.id not in new_ids:
                    outcomes[index] = Outcome.DUPLICATE
                    continue
                with bound_contextvars(event_id=event.id, tenant=event.tenant, request_id=event.requestid,
                                       event_type=event.event_type):
                    await self.subscription.handler(session, event, payload)
                outcomes[index] = Outcome.HANDLED
        # Committed (or already in the inbox): requests waiting for these events may go on (shared/consistency.py).
        APPLIED.mark(consumer, (e.id for _, e, _ in decoded))
        log.debug("event_batch_handled", queue=self.subscription.queue.name, size=len(decoded))

    async def _handle(self, event: CloudEvent, payload: Any, delivery_count: int) -> Outcome:
        backoff = 0.2
        while True:
            try:
                async with self.db.transaction() as session:
                    try:
                        await session.execute(
                            _INBOX_INSERT, {"consumer": self.subscription.consumer_name, "event_id": event.id}
                        )
                    except IntegrityError as exc:
                        if is_unique_violation(exc):
                            raise _AlreadyHandled from None
                        raise
                    await self.subscription.handler(session, event, payload)
                APPLIED.mark(self.subscription.consumer_name, (event.id,))
                log.debug("event_handled", queue=self.subscription.queue.name)
                return Outcome.HANDLED
            except _AlreadyHandled:
                APPLIED.mark(self.subscription.consumer_name, (event.id,))
                log.info("event_duplicate_skipped", queue=self.subscription.queue.name)
                return Outcome.DUPLICATE
            except PermanentError as exc:
                log.error("message_dead_lettered", queue=self.subscription.queue.name, reason=str(exc))
                return Outcome.DEAD_LETTER
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_unavailable(exc):
                    # The database is down: this is not the message's fault, so do not spend its delivery
                    # budget. Keep it unacked and retry until the store is back.
                    log.warning("consumer_store_unavailable", error=repr(exc), retry_in=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                log.exception("event_handler_failed", queue=self.subscription.queue.name,
                              delivery_count=delivery_count)
                return Outcome.RETRY
