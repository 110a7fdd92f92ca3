"""Read-your-writes across services (ADR 0010): causal tokens carried by the gateway.

The mechanism, end to end:

1. A service commits a write and its events in one transaction (the outbox). :func:`record_committed` notes the
   ids of those events for the request that wrote them, and :func:`consistency_middleware` returns them to the
   gateway in the internal ``X-Learn-Events`` response header (``<event_type>=<id>,...``).
2. The gateway (``CausalTracker`` in ``services/gateway/domain.py``) keeps, per tenant, the recent events that
   some service still has to apply, and gives the client a signed ``Consistency-Token`` it may echo (several
   gateway replicas).
3. On the tenant's next request to service S, the gateway sends, in ``X-Learn-After``, the ids of those events
   that S's queues consume (``<queue>=<id>,...``). S answers only once its inbox holds each of them — at once
   when its own consumer already applied them (an in-memory check), else after the wait that its consumer ends
   when it commits them; with a bound (``LEARN_CONSISTENCY_WAIT``). Past the bound the answer is ``503
   not_yet_consistent`` with ``Retry-After``, naming what is missing.

Requests with nothing pending carry no header and pay nothing. The inbox row is the proof of application: it is
inserted in the same transaction as the handler's writes (shared/bus/consumer.py), so "in the inbox" means "its
effects are visible".
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa
import sqlalchemy.ext.asyncio
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.bus.tables import inbox
from shared.bus.topology import QUEUES
from shared.http import ApiError, Handler

log = structlog.get_logger("shared.consistency")

#: service → gateway: the events a request committed (``<event_type>=<id>,<id>;<event_type>=<id>``)
H_EVENTS = "X-Learn-Events"
#: gateway → service: the events the service must have applied first (``<queue name>=<id>,<id>;...``)
H_AFTER = "X-Learn-After"
#: service → gateway: the tenant of those events (pass-through routes: the gateway did not know it)
H_EVENTS_TENANT = "X-Learn-Events-Tenant"
#: gateway ↔ client: the signed token a client may echo to any gateway replica
H_TOKEN = "Consistency-Token"  # noqa: S105 - a header name, not a secret

NOT_YET_CONSISTENT = "not_yet_consistent"

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: the most event ids one X-Learn-After header carries (keeps it far below aiohttp's 8 KiB field limit)
MAX_AFTER_IDS = 96

# The committed events of the current request, or None outside a request that asked for them.
_recorded: contextvars.ContextVar[list[tuple[str, str, str]] | None] = contextvars.ContextVar(
    "learn_recorded_events", default=None)


def start_recording() -> list[tuple[str, str, str]]:
    """Begin collecting the ``(tenant, event type, id)`` of events the current task (a request) commits."""
    events: list[tuple[str, str, str]] = []
    _recorded.set(events)
    return events


def recording() -> list[tuple[str, str, str]] | None:
    return _recorded.get()


def observed(tenant: str, event_type: str, event_id: str) -> None:
    """A read showed the client the effect of an event (committed earlier, by a job): report it like a write's."""
    events = _recorded.get()
    if events is not None:
        events.append((tenant, event_type, event_id))


def format_events(events: Iterable[tuple[str, str]]) -> str:
    by_type: dict[str, list[str]] = {}
    for event_type, event_id in events:
        by_type.setdefault(event_type, []).append(event_id)
    return ";".join(f"{t}={','.join(ids)}" for t, ids in by_type.items())


def parse_pairs(header: str | None, *, limit: int = MAX_AFTER_IDS * 4) -> list[tuple[str, str]]:
    """``a=1,2;b=3`` → ``[(a, 1), (a, 2), (b, 3)]``; malformed parts are ignored (the header is internal)."""
    out: list[tuple[str, str]] = []
    if not header:
        return out
    for part in header.split(";"):
        name, sep, ids = part.partition("=")
        name = name.strip()
        if not sep or not _ID.fullmatch(name):
            continue
        for event_id in ids.split(","):
            event_id = event_id.strip()
            if _ID.fullmatch(event_id):
                out.append((name, event_id))
                if len(out) >= limit:
                    return out
    return out


def consuming_queues(event_type: str) -> list[tuple[str, str]]:
    """``(service, queue name)`` of every queue that consumes ``event_type`` (shared.bus.topology)."""
    return [(q.service, q.name) for q in QUEUES if event_type in q.event_types]


class AppliedEvents:
    """What this process's consumers have committed, and the requests waiting for it.

    One per process (``APPLIED``): in the embedded default every service shares it, which is right because the
    keys are ``(queue, event id)`` and queue names are per service.
    """

    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}

    def mark(self, queue: str, event_ids: Iterable[str]) -> None:
        """Called by the consumer after its transaction committed (or found the event already handled)."""
        for event_id in event_ids:
            key = (queue, event_id)
            self._done[key] = None
            self._done.move_to_end(key)
            for future in self._waiters.pop(key, ()):
                if not future.done():
                    future.set_result(None)
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)

    def known(self, queue: str, event_id: str) -> bool:
        return (queue, event_id) in self._done

    def waiter(self, queue: str, event_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((queue, event_id), []).append(future)
        return future

    def forget(self, queue: str, event_id: str, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get((queue, event_id))
        if waiters is None:
            return
        with_out = [f for f in waiters if f is not future]
        if with_out:
            self._waiters[(queue, event_id)] = with_out
        else:
            del self._waiters[(queue, event_id)]


APPLIED = AppliedEvents()


async def _in_inbox(engine: sa.ext.asyncio.AsyncEngine, pending: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    queues = sorted({q for q, _ in pending})
    ids = sorted({e for _, e in pending})
    stmt = sa.select(inbox.c.consumer, inbox.c.event_id).where(
        inbox.c.consumer.in_(queues), inbox.c.event_id.in_(ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return {(str(c), str(e)) for c, e in rows} & set(pending)


async def wait_applied(engine: sa.ext.asyncio.AsyncEngine, wanted: Sequence[tuple[str, str]], *, timeout: float,
                       recheck: float = 0.1, applied: AppliedEvents = APPLIED) -> list[tuple[str, str]]:
    """Wait until every ``(queue, event id)`` in ``wanted`` is in this service's inbox; return what is still
    missing when ``timeout`` runs out (empty when all arrived).

    Local consumers wake the wait the moment they commit. The inbox is read once up front and then every
    ``recheck`` seconds, for events that another replica of this service applies.
    """
    pending = [pair for pair in dict.fromkeys(wanted) if not applied.known(*pair)]
    if not pending:
        return []
    futures = {pair: applied.waiter(*pair) for pair in pending}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            found = await _in_inbox(engine, [p for p in pending if not futures[p].done()])
            for queue, event_id in found:  # remembered: the next request that needs them pays nothing
                applied.mark(queue, [event_id])
            pending = [p for p in pending if p not in found and not futures[p].done()]
            if not pending:
                return []
            remaining = deadline - loop.time()
            if remaining <= 0:
                return pending
            await asyncio.wait([futures[p] for p in pending], timeout=min(recheck, remaining))
            pending = [p for p in pending if not futures[p].done()]
            if not pending:
                return []
            if loop.time() >= deadline:
                return pending
    finally:
        for pair, future in futures.items():
            applied.forget(pair[0], pair[1], future)
            future.cancel()


def queues_of(service: str) -> frozenset[str]:
    return frozenset(q.name for q in QUEUES if q.service == service)


def missing_message(missing: Sequence[tuple[str, str]], service: str) -> str:
    queue, event_id = missing[0]
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    return (f"The {service} service has not yet applied an earlier write of this tenant (event {event_id} on "
            f"{queue}{more}); retry shortly.")


def after_header(items: Mapping[str, Iterable[str]]) -> str:
    """``{queue: ids}`` → the ``X-Learn-After`` value."""
    return ";".join(f"{queue}={','.join(ids)}" for queue, ids in items.items() if ids)


def consistency_middleware(service: str, engine_of: Callable[[web.Application], sa.ext.asyncio.AsyncEngine],
                           wait_of: Callable[[web.Application], float]) -> Middleware:
    """Waits for the events named in ``X-Learn-After`` before the handler runs; reports committed events after.

    Placed after the internal-credential check: only the gateway can make a service wait.
    """
    own_queues = queues_of(service)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        after = request.headers.get(H_AFTER)
        if after:
            wanted = [(q, e) for q, e in parse_pairs(after) if q in own_queues]
            if wanted:
                missing = await wait_applied(engine_of(request.app), wanted, timeout=wait_of(request.app))
                if missing:
                    log.warning("not_yet_consistent", missing=len(missing), first=missing[0][1])
                    raise ApiError(503, NOT_YET_CONSISTENT, missing_message(missing, service),
                                   {"Retry-After": "1"})
        events = start_recording()
        response = await handler(request)
        if events and not response.prepared:
            response.headers[H_EVENTS] = format_events((t, e) for _, t, e in events)
            response.headers[H_EVENTS_TENANT] = events[0][0]
        return response

    return middleware
