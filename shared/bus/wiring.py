"""Each service's event wiring, declared once: ``EVENT_HANDLERS`` in ``services/<name>/app.py``.

The table maps a queue purpose to the typed payloads that queue carries and the handlers each one runs, in
order::

    EVENT_HANDLERS: EventTable = {
        "courses": {CoursePublished: [handlers.course_published], CourseUpdated: [handlers.course_changed]},
        "users": {UserUpserted: [handlers.user_upserted]},
    }

From it come the queue specs and their bindings (:func:`queue_specs`), the consumer's dispatch
(:func:`subscriptions`) and the AsyncAPI document's subscribers (``shared/events/asyncapi.py``). The deploy-side
declaration (``shared/bus/topology.QUEUES``, which generates ``deploy/rabbitmq/definitions.json``) is checked
against every service's table by a test, so the two cannot drift.

A queue purpose, not the event type, names the queue: events that must not wait behind each other (issuing
certificates, regenerating thousands of PDFs) get their own queues.

Every event handler has the signature ``async def handler(uow: UnitOfWork, event: CloudEvent, payload: Model)``.
It runs inside the consumer's transaction (``uow`` is joined to it), so its writes commit with the inbox row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.consumer import PermanentError, Subscription
from shared.bus.envelope import CloudEvent
from shared.bus.topology import QueueSpec
from shared.events.base import EventModel
from shared.uow import UnitOfWork

EventHandler = Callable[[UnitOfWork, CloudEvent, Any], Awaitable[None]]
#: queue purpose -> payload model -> handlers (run in order, in one transaction)
EventTable = Mapping[str, Mapping[type[EventModel], Sequence[EventHandler]]]


def queue_specs(service: str, table: EventTable) -> list[QueueSpec]:
    """The queues a service's table asks for, each bound to exactly the event types of its payload models."""
    specs = []
    for purpose, handlers in table.items():
        event_types = []
        for model in handlers:
            if not model.event_type:
                raise TypeError(f"{model.__name__} in {service}.{purpose} is not an event payload")
            event_types.append(model.event_type)
        specs.append(QueueSpec(service, purpose, tuple(event_types)))
    return specs


def subscriptions(service: str, table: EventTable, *, deps: Any = None) -> list[Subscription]:
    """One subscription per queue of the table; its dispatch picks the handlers by the payload's model."""
    result = []
    for spec in queue_specs(service, table):
        by_model = table[spec.purpose]
        result.append(Subscription(spec, _dispatcher(spec, by_model, deps),
                                   models={model.event_type: model for model in by_model}))
    return result


def _dispatcher(spec: QueueSpec, by_model: Mapping[type[EventModel], Sequence[EventHandler]],
                deps: Any) -> Callable[[AsyncSession, CloudEvent, Any], Awaitable[None]]:
    async def dispatch(session: AsyncSession, event: CloudEvent, payload: Any) -> None:
        handlers = by_model.get(type(payload))
        if handlers is None:
            raise PermanentError(f"{spec.name} has no handler for {event.event_type}")
        uow = UnitOfWork.joined(session, deps=deps)
        for handler in handlers:
            await handler(uow, event, payload)

    return dispatch
