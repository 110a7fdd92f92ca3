"""The gateway's half of read-your-writes (ADR 0010, shared/consistency.py).

Per tenant, the gateway remembers the events of recent writes that some service's queue still has to apply, and
which queues those are (shared.bus.topology). A request to service S carries, in ``X-Learn-After``, the ids that
S's queues still owe; once S answered anything but ``503 not_yet_consistent``, S has applied them and the gateway
stops sending them to S. An event is forgotten when every queue has confirmed it, or after the window.

Several gateway replicas (or workers) do not share this memory. Every response that leaves anything pending
carries a signed ``Consistency-Token`` (tenant-bound, HMAC with the internal secret, items with their expiry);
a client that echoes the latest token it received gets the same guarantee on any replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog

from shared.consistency import (
    H_AFTER,
    H_EVENTS,
    H_EVENTS_TENANT,
    H_TOKEN,
    MAX_AFTER_IDS,
    consuming_queues,
    parse_pairs,
)
from shared.db import listen_forever

log = structlog.get_logger("gateway.consistency")

#: the most events one token carries (the newest)
MAX_TOKEN_ITEMS = 32


@dataclass
class _Pending:
    event_type: str
    expires_at: float  # wall clock (tokens cross replicas)
    queues: dict[str, str] = field(default_factory=dict)  # queue name -> service, still owed


class CausalTracker:
    def __init__(self, secret: str, *, window: float = 30.0, max_per_tenant: int = 1024, enabled: bool = True):
        self.enabled = enabled
        self.fanout: ReplicaFanout | None = None
        self._key = hashlib.sha256(b"learn-consistency-token:" + secret.encode()).digest()
        self.window = window
        self.max_per_tenant = max_per_tenant
        self._tenants: dict[str, OrderedDict[str, _Pending]] = {}

    # --- what writes committed --------------------------------------------------------------------------

    def record(self, tenant: str, events: list[tuple[str, str]], expires_at: float | None = None) -> None:
        if not events or not self.enabled:
            return
        expires = expires_at if expires_at is not None else time.time() + self.window
        pending = self._tenants.setdefault(tenant, OrderedDict())
        for event_type, event_id in events:
            if event_id in pending:
                continue
            queues = {name: service for service, name in consuming_queues(event_type)}
            if not queues:
                continue  # nobody consumes it: nothing to wait for
            pending[event_id] = _Pending(event_type, expires, queues)
        while len(pending) > self.max_per_tenant:
            pending.popitem(last=False)

    def record_header(self, tenant: str | None, header: str | None) -> None:
        if tenant and header:
            self.record(tenant, parse_pairs(header))

    # --- what a request must wait for -------------------------------------------------------------------

    def owed(self, tenant: str, service: str) -> dict[str, list[str]]:
        """``{queue: [event ids]}`` that ``service`` still owes this tenant (the newest, at most MAX_AFTER_IDS)."""
        pending = self._tenants.get(tenant)
        if not pending:
            return {}
        now = time.time()
        out: dict[str, list[str]] = {}
        count = 0
        expired: list[str] = []
        for event_id, item in reversed(pending.items()):
            if item.expires_at <= now:
                expired.append(event_id)
                continue
            for queue, owner in item.queues.items():
                if owner == service and count < MAX_AFTER_IDS:
                    out.setdefault(queue, []).append(event_id)
                    count += 1
        for event_id in expired:
            del pending[event_id]
        if not pending:
            self._tenants.pop(tenant, None)
        return out

    def after_header(self, tenant: str, service: str) -> tuple[str | None, dict[str, list[str]]]:
        owed = self.owed(tenant, service)
        if not owed:
            return None, owed
        return ";".join(f"{q}={','.join(ids)}" for q, ids in owed.items()), owed

    def confirm(self, tenant: str, owed: dict[str, list[str]]) -> None:
        """The service answered after applying ``owed``: stop asking for them."""
        pending = self._tenants.get(tenant)
        if not pending:
            return
        for queue, ids in owed.items():
            for event_id in ids:
                item = pending.get(event_id)
                if item is None:
                    continue
                item.queues.pop(queue, None)
                if not item.queues:
                    del pending[event_id]
        if not pending:
            self._tenants.pop(tenant, None)

    # --- the client's token -----------------------------------------------------------------------------

    def token(self, tenant: str) -> str | None:
        """A token for everything this tenant still has pending here, or None when nothing is."""
        pending = self._tenants.get(tenant)
        if not pending:
            return None
        now = time.time()
        items = [[item.event_type, event_id, int(item.expires_at)]
                 for event_id, item in list(pending.items())[-MAX_TOKEN_ITEMS:] if item.expires_at > now]
        if not items:
            return None
        body = base64.urlsafe_b64encode(json.dumps({"t": tenant, "e": items}, separators=(",", ":")).encode())
        mac = base64.urlsafe_b64encode(hmac.new(self._key, body, hashlib.sha256).digest()[:18])
        return (body + b"." + mac).decode().rstrip("=")

    def absorb(self, tenant: str, token: str | None) -> None:
        """Adopt a client-echoed token (from any replica). Forged, foreign or expired items are ignored."""
        if not token or len(token) > 16384:
            return
        body, sep, mac = token.rpartition(".")
        if not sep:
            return
        try:
            raw_body = body.encode()
            padded = raw_body + b"=" * (-len(raw_body) % 4)
            expected = base64.urlsafe_b64encode(hmac.new(self._key, padded, hashlib.sha256).digest()[:18])
            if not hmac.compare_digest(expected.decode().rstrip("="), mac):
                return
            data = json.loads(base64.urlsafe_b64decode(padded))
        except (ValueError, UnicodeError):
            return
        if not isinstance(data, dict) or data.get("t") != tenant or not isinstance(data.get("e"), list):
            return
        now = time.time()
        pending: dict[str, _Pending] = self._tenants.get(tenant, {})
        for entry in data["e"][:MAX_TOKEN_ITEMS]:
            if not (isinstance(entry, list) and len(entry) == 3):
                continue
            event_type, event_id, expires = entry
            if not (isinstance(event_type, str) and isinstance(event_id, str) and isinstance(expires, int)):
                continue
            if expires <= now or event_id in pending:
                continue
            self.record(tenant, [(event_type, event_id)], expires_at=float(expires))
            pending = self._tenants.get(tenant, {})


    def begin(self, tenant: str | None, service: str, headers: dict[str, str],
              client_token: str | None = None) -> CausalExchange:
        """Before forwarding: adopt the client's token and name in ``headers`` what ``service`` must apply first."""
        owed: dict[str, list[str]] = {}
        if tenant is not None:
            if client_token:
                self.absorb(tenant, client_token)
            after, owed = self.after_header(tenant, service)
            if after:
                headers[H_AFTER] = after
        return CausalExchange(self, tenant, owed)


@dataclass
class CausalExchange:
    """One forwarded request's part in the protocol; :meth:`finish` runs on the upstream's response headers."""

    tracker: CausalTracker
    tenant: str | None
    owed: dict[str, list[str]]
    recorded: list[tuple[str, str]] = field(default_factory=list)

    async def share(self) -> None:
        """Tell the other gateway replicas what this request recorded (before its answer leaves)."""
        fanout = self.tracker.fanout
        if fanout is not None:
            for tenant, events in self.recorded:
                await fanout.publish(tenant, events)

    def finish(self, status: int, events: str | None, events_tenant: str | None) -> dict[str, str]:
        tenant = self.tenant
        if tenant is not None and status != 503 and self.owed:
            self.tracker.confirm(tenant, self.owed)
        if events:
            if tenant is None:
                tenant = events_tenant  # pass-through routes: the service resolved the tenant from a token
            elif events_tenant is not None and events_tenant != tenant:
                return {}
            self.tracker.record_header(tenant, events)
            if tenant is not None:
                self.recorded.append((tenant, events))
        if tenant is None:
            return {}
        token = self.tracker.token(tenant)
        return {H_TOKEN: token} if token else {}


class ReplicaFanout:
    """Best effort between gateway replicas on PostgreSQL: each replica NOTIFYs the events it recorded, and every
    other replica LISTENs and records them too, so a client that does not echo ``Consistency-Token`` still reads
    its writes on another replica in practice. (The echoed token is the guarantee: a notification may arrive a
    moment after the client's next request.)"""

    CHANNEL = "learn_consistency"

    def __init__(self, tracker: CausalTracker, engine: Any, dsn: str):
        self.tracker = tracker
        self.engine = engine
        self.dsn = dsn
        self.origin = secrets.token_hex(6)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, rest = payload.partition("|")
        tenant, _, events = rest.partition("|")
        if origin != self.origin and tenant and events:
            self.tracker.record_header(tenant, events)

    async def publish(self, tenant: str, events: str) -> None:
        payload = f"{self.origin}|{tenant}|{events}"
        if len(payload) > 7900:  # NOTIFY's payload limit is 8000 bytes
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.text("SELECT pg_notify(:channel, :payload)"),
                                   {"channel": self.CHANNEL, "payload": payload})
        except Exception as exc:  # the write itself succeeded; the replicas only miss a hint
            log.warning("consistency_fanout_failed", error=repr(exc))

    async def run(self) -> None:
        await listen_forever(self.dsn, self.CHANNEL, self._received, what="consistency_listen")


__all__ = ["H_AFTER", "H_EVENTS", "H_EVENTS_TENANT", "H_TOKEN", "CausalExchange", "CausalTracker", "ReplicaFanout"]
