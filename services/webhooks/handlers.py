"""Use cases: one function per command of the admin API, the event handler that fans every event out to the
tenant's endpoints, and the two steps of a delivery (claim the due rows, record an attempt's result).

Command handlers open their own transaction and raise domain errors (domain.py); the event handler runs inside
the consumer's transaction, so the delivery rows commit with the inbox row (a redelivered event adds nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from services.webhooks import domain, events, store
from services.webhooks.config import WebhooksSettings
from services.webhooks.sender import refused_name
from shared.bus.envelope import CloudEvent, Origin
from shared.db import as_utc, utcnow
from shared.events import EVENT_MODELS
from shared.events.base import EventModel
from shared.uow import UnitOfWork

NOTIFY_CHANNEL = "webhooks_due"


@dataclass(frozen=True)
class Deps:
    settings: WebhooksSettings


@dataclass(frozen=True)
class NewEndpoint:
    url: str
    description: str = ""
    event_types: Sequence[str] = ()
    status: str = "enabled"


@dataclass(frozen=True)
class EndpointChanges:
    url: str | None = None
    description: str | None = None
    event_types: Sequence[str] | None = None
    status: str | None = None


@dataclass(frozen=True)
class Claimed:
    """A delivery row leased for one attempt, with its endpoint."""

    message_id: int
    webhook_id: str
    body: bytes
    failures: int
    endpoint: Any


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    latency_ms: int
    response: str | None


def _settings(uow: UnitOfWork) -> WebhooksSettings:
    settings: WebhooksSettings = uow.deps.settings
    return settings


def _known_types() -> list[str]:
    return [*EVENT_MODELS, domain.TEST_EVENT_TYPE]


def _filters(raw: Sequence[str]) -> list[str]:
    return domain.normalize_filters(raw, _known_types())


def _status(value: str) -> str:
    if value not in domain.STATUSES:
        raise domain.InvalidEndpoint(f"'status' must be one of {', '.join(domain.STATUSES)}.")
    return value


# --- commands -----------------------------------------------------------------------------------------------


async def create_endpoint(uow: UnitOfWork, origin: Origin, command: NewEndpoint) -> tuple[Any, str]:
    """The endpoint and its signing secret (shown once)."""
    settings = _settings(uow)
    url = domain.check_url(command.url, allow_http=settings.allow_http, networks=settings.networks)
    await _check_name(url, settings)
    secret = domain.new_secret()
    now = utcnow()
    async with uow:
        row = await store.insert_endpoint(uow.session, dict(
            tenant_id=origin.tenant_id, tenant_slug=origin.tenant_slug, url=url, description=command.description,
            event_types=_filters(command.event_types), status=_status(command.status), secret=secret,
            created_at=now, updated_at=now))
    return row, secret


async def _check_name(url: str, settings: WebhooksSettings) -> None:
    """A name that resolves to a refused address now is refused at once (it is checked again at send time)."""
    reason = await refused_name(url, settings.networks)
    if reason:
        raise domain.UnsafeDestination(reason)


async def list_endpoints(uow: UnitOfWork, origin: Origin, limit: int, before: int | None) -> list[Any]:
    async with uow:
        return await store.list_endpoints(uow.session, origin.tenant_id, limit, before)


async def get_endpoint(uow: UnitOfWork, origin: Origin, endpoint_id: int) -> Any:
    async with uow:
        return await _endpoint(uow, origin, endpoint_id)


async def _endpoint(uow: UnitOfWork, origin: Origin, endpoint_id: int, *, lock: bool = False) -> Any:
    row = await store.endpoint(uow.session, origin.tenant_id, endpoint_id, lock=lock)
    if row is None:
        raise domain.EndpointNotFound()
    return row


async def update_endpoint(uow: UnitOfWork, origin: Origin, endpoint_id: int, changes: EndpointChanges) -> Any:
    settings = _settings(uow)
    values: dict[str, Any] = {}
    if changes.url is not None:
        values["url"] = domain.check_url(changes.url, allow_http=settings.allow_http, networks=settings.networks)
        await _check_name(values["url"], settings)
    if changes.description is not None:
        values["description"] = changes.description
    if changes.event_types is not None:
        values["event_types"] = _filters(changes.event_types)
    if changes.status is not None:
        values["status"] = _status(changes.status)
        if changes.status == "enabled":  # a fresh start: the failure run that disabled it is over
            values.update(failing_since=None, disabled_reason=None)
    async with uow:
        await _endpoint(uow, origin, endpoint_id, lock=True)
        return await store.update_endpoint(uow.session, endpoint_id, {**values, "updated_at": utcnow()})


async def delete_endpoint(uow: UnitOfWork, origin: Origin, endpoint_id: int) -> None:
    async with uow:
        if not await store.delete_endpoint(uow.session, origin.tenant_id, endpoint_id):
            raise domain.EndpointNotFound()


async def rotate_secret(uow: UnitOfWork, origin: Origin, endpoint_id: int) -> tuple[Any, str]:
    """A new secret; the previous one keeps signing (next to it) for the overlap window."""
    settings = _settings(uow)
    secret = domain.new_secret()
    now = utcnow()
    async with uow:
        row = await _endpoint(uow, origin, endpoint_id, lock=True)
        row = await store.update_endpoint(uow.session, endpoint_id, dict(
            secret=secret, previous_secret=row.secret,
            previous_secret_until=now + timedelta(seconds=settings.secret_overlap), updated_at=now))
    return row, secret


async def list_messages(uow: UnitOfWork, origin: Origin, endpoint_id: int, limit: int, before: int | None,
                        status: str | None) -> tuple[list[Any], dict[int, list[Any]]]:
    """A page of the endpoint's messages (newest first) and each one's attempts (oldest first)."""
    async with uow:
        await _endpoint(uow, origin, endpoint_id)
        rows = await store.list_messages(uow.session, origin.tenant_id, endpoint_id, limit, before, status)
        tries = await store.attempts_of(uow.session, [r.id for r in rows])
    by_message: dict[int, list[Any]] = {r.id: [] for r in rows}
    for attempt in tries:
        by_message[attempt.message_id].append(attempt)
    return rows, by_message


async def get_message(uow: UnitOfWork, origin: Origin, endpoint_id: int, message_id: int) -> tuple[Any, list[Any]]:
    async with uow:
        row = await store.message(uow.session, origin.tenant_id, endpoint_id, message_id)
        if row is None:
            raise domain.MessageNotFound()
        return row, await store.attempts_of(uow.session, [row.id])


async def replay_message(uow: UnitOfWork, origin: Origin, endpoint_id: int, message_id: int) -> Any:
    """Deliver a message again (same ``webhook-id``), whatever its state."""
    async with uow:
        await _endpoint(uow, origin, endpoint_id)
        if not await store.make_pending(uow.session, origin.tenant_id, endpoint_id, utcnow(), message_id=message_id):
            raise domain.MessageNotFound()
        await _notify(uow)
        return await store.message(uow.session, origin.tenant_id, endpoint_id, message_id)


async def replay_since(uow: UnitOfWork, origin: Origin, endpoint_id: int, since: datetime) -> int:
    """Deliver again every message of the endpoint created at or after ``since``; returns how many."""
    async with uow:
        await _endpoint(uow, origin, endpoint_id)
        count = await store.make_pending(uow.session, origin.tenant_id, endpoint_id, utcnow(), since=since)
        await _notify(uow)
        return count


async def send_test(uow: UnitOfWork, origin: Origin, endpoint_id: int) -> Any:
    """Queue a ``webhook.test`` message for this endpoint only."""
    now = utcnow()
    async with uow:
        await _endpoint(uow, origin, endpoint_id)
        event = events.test_message(origin, endpoint_id, now)
        await store.enqueue(uow.session, [_delivery(event, endpoint_id, now)])
        await _notify(uow)
        rows = await store.list_messages(uow.session, origin.tenant_id, endpoint_id, 1, None, None)
    return rows[0]


# --- events -------------------------------------------------------------------------------------------------


async def event_received(uow: UnitOfWork, event: CloudEvent, payload: EventModel) -> None:
    """Every event of every tenant: one delivery row per enabled endpoint of the tenant whose filter takes it.

    The consumer hands a batch of events to this handler in one transaction. The rows are written when that
    transaction commits (its ``before_commit``, so they still commit with the inbox rows, or not at all): one
    read of the endpoints of the batch's tenants, one insert of every row, one NOTIFY, whatever the batch's size.
    A statement per event (three round trips to the database each) was most of the consumer's time."""
    session = uow.session
    transaction = session.sync_session.get_transaction()  # what the hook sees (not the async wrapper)
    pending: tuple[Any, list[CloudEvent]] | None = session.info.get(_PENDING)
    if pending is None or pending[0] is not transaction:
        pending = session.info[_PENDING] = (transaction, [])
        sa_event.listen(session.sync_session, "before_commit", _fan_out, once=True)
    pending[1].append(event)


_PENDING = "webhooks_pending_events"


def _fan_out(session: Session) -> None:
    """``before_commit`` of a transaction that received events: write their delivery rows (sync: SQLAlchemy runs
    the hook inside the commit, where the session may still execute statements)."""
    pending = session.info.pop(_PENDING, None)
    if pending is None or pending[0] is not session.get_transaction() or not pending[1]:
        return
    received: list[CloudEvent] = pending[1]
    targets = store.enabled_endpoints_of(session, sorted({e.tenantid for e in received}))
    by_tenant: dict[int, list[Any]] = {}
    for row in targets:
        by_tenant.setdefault(row.tenant_id, []).append(row)
    now = utcnow()
    rows = [_delivery(event, row.id, now) for event in received for row in by_tenant.get(event.tenantid, ())
            if domain.matches(row.event_types, event.event_type)]
    if rows:
        store.enqueue_now(session, rows)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))


def _delivery(event: CloudEvent, endpoint_id: int, now: datetime) -> dict[str, Any]:
    return dict(tenant_id=event.tenantid, endpoint_id=endpoint_id, webhook_id=event.id,
                event_type=event.event_type, body=event.to_bytes().decode(), status="pending", failures=0,
                attempts=0, next_attempt_at=now, created_at=now)


async def _notify(uow: UnitOfWork) -> None:
    """Wake the delivery loops when the transaction commits (PostgreSQL; SQLite's loop polls)."""
    if uow.session.get_bind().dialect.name == "postgresql":
        await uow.session.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))


# --- delivery -----------------------------------------------------------------------------------------------


@dataclass
class Claim:
    """What one claim leased, and whether due rows were left behind (for want of room): the loop then claims
    again as soon as an attempt ends, instead of waiting for a notification or the next poll."""

    items: list[Claimed]
    more_due: bool


async def claim_due(uow: UnitOfWork, limit: int, room: Callable[[int], int], lease: float,
                    known: dict[int, Any] | None = None) -> Claim:
    """Lease up to ``limit`` due rows, at most ``room(endpoint_id)`` per endpoint (its concurrency and rate).

    ``known`` caches endpoint rows between claims (the delivery loop's): an endpoint is read again only when its
    ``updated_at`` changed (url, secrets, status, filter: every change sets it), so a claim is two statements."""
    settings = _settings(uow)
    known = {} if known is None else known
    now = utcnow()
    async with uow:
        query_limit = limit * 4
        candidates = await store.due_candidates(uow.session, now, settings.endpoint_concurrency, query_limit)
        picked: list[int] = []
        taken: dict[int, int] = {}
        versions: dict[int, Any] = {}
        for row in candidates:
            versions[row.endpoint_id] = row.endpoint_updated_at
            if len(picked) < limit and taken.get(row.endpoint_id, 0) < room(row.endpoint_id):
                taken[row.endpoint_id] = taken.get(row.endpoint_id, 0) + 1
                picked.append(row.id)
        more_due = (len(picked) < len(candidates) or len(candidates) >= query_limit
                    or any(row.rn >= settings.endpoint_concurrency for row in candidates))
        claimed = await store.claim(uow.session, picked, now, now + timedelta(seconds=lease))
        stale = sorted({row.endpoint_id for row in claimed
                        if row.endpoint_id not in known or known[row.endpoint_id].updated_at
                        != versions[row.endpoint_id]})
        known.update(await store.endpoints_by_id(uow.session, stale))
    return Claim([Claimed(row.id, row.webhook_id, row.body.encode(), row.failures, known[row.endpoint_id])
                  for row in claimed], more_due)


async def record_attempt(uow: UnitOfWork, claimed: Claimed, result: AttemptResult, at: datetime) -> str:
    """Log the attempt; a 2xx delivers the row, anything else schedules the next try (or gives up), and an
    endpoint failing for ``disable_after`` is disabled with a ``webhook_endpoint.disabled`` event. Returns
    ``delivered``, ``retrying`` or ``failed``."""
    (outcome,) = await record_attempts(uow, [(claimed, result, at)])
    return outcome


async def record_attempts(uow: UnitOfWork, attempts: Sequence[tuple[Claimed, AttemptResult, datetime]]) -> list[str]:
    """:func:`record_attempt` for several attempts in one transaction (the delivery loop's recorders batch what
    finished meanwhile). The outcomes come in the order of ``attempts``.

    A batch is a few statements whatever its size: every attempt of the log in one insert, every delivered row in
    one update (both executemany, compiled once), a failed row's retry on its own (failures are the exception),
    then each endpoint's health once, endpoint by endpoint in id order (so two such transactions lock endpoint rows
    in the same order and cannot deadlock), following its attempts in the order they ended."""
    settings = _settings(uow)
    outcomes: list[str] = [""] * len(attempts)
    log_rows: list[dict[str, Any]] = []
    delivered: list[tuple[int, datetime]] = []
    by_endpoint: dict[int, list[int]] = {}
    for i, (claimed, result, at) in enumerate(attempts):
        log_rows.append(dict(message_id=claimed.message_id, endpoint_id=claimed.endpoint.id, attempted_at=at,
                             status_code=result.status_code, error=result.error, latency_ms=result.latency_ms,
                             response=result.response))
        by_endpoint.setdefault(claimed.endpoint.id, []).append(i)
        if domain.delivered(result.status_code):
            delivered.append((claimed.message_id, at))
            outcomes[i] = "delivered"
    async with uow:
        await store.record_attempts(uow.session, log_rows)
        await store.finish_delivered(uow.session, delivered)
        for i, (claimed, _result, at) in enumerate(attempts):
            if not outcomes[i]:
                outcomes[i] = await _schedule_retry(uow, settings, claimed, at)
        for endpoint_id in sorted(by_endpoint):
            await _endpoint_health(uow, settings, endpoint_id,
                                   [(outcomes[i] == "delivered", attempts[i][2]) for i in by_endpoint[endpoint_id]])
    return outcomes


async def _schedule_retry(uow: UnitOfWork, settings: WebhooksSettings, claimed: Claimed, at: datetime) -> str:
    """A failed attempt: the row's next try (or ``failed`` when the schedule is over)."""
    failures = claimed.failures + 1
    delay = domain.retry_delay(failures, settings.retries, settings.jitter)
    await store.finish_attempt(uow.session, claimed.message_id, dict(
        failures=failures, last_attempt_at=at,
        status="failed" if delay is None else "pending",
        next_attempt_at=None if delay is None else utcnow() + timedelta(seconds=delay)))
    return "failed" if delay is None else "retrying"


async def _endpoint_health(uow: UnitOfWork, settings: WebhooksSettings, endpoint_id: int,
                           results: Sequence[tuple[bool, datetime]]) -> None:
    """Follow an endpoint's attempts (delivered?, time) in order: a delivery ends a failure run, a failure starts
    one (``failing_since``) or continues it, and a run of ``disable_after`` disables the endpoint with a
    ``webhook_endpoint.disabled`` event."""
    healthy = False  # marked healthy in this transaction since its last failure
    for ok, at in results:
        if ok:
            if not healthy:
                healthy = True
                await store.mark_healthy(uow.session, endpoint_id)
            continue
        healthy = False
        endpoint = await store.mark_failing(uow.session, endpoint_id, at)
        if endpoint is None or endpoint.status != "enabled":
            continue
        failing_since = as_utc(endpoint.failing_since)
        if domain.should_disable(failing_since, at, settings.disable_after):
            reason = f"every delivery failed since {failing_since.isoformat()}"
            await store.update_endpoint(uow.session, endpoint_id, dict(
                status="disabled", disabled_reason=reason, updated_at=at))
            origin = Origin(endpoint.tenant_id, endpoint.tenant_slug)
            await uow.emit(events.endpoint_disabled(origin, endpoint_id, endpoint.url, reason, failing_since, at))


async def backlog(uow: UnitOfWork) -> list[Any]:
    async with uow:
        return await store.backlog(uow.session)


async def purge(uow: UnitOfWork) -> int:
    """Forget finished messages and attempts older than the retention."""
    async with uow:
        return await store.purge(uow.session, utcnow() - timedelta(seconds=_settings(uow).retention))
