"""The learner runtime behind a token: the player's state, commits and finishing.

Every body is the SCO's whole CMI snapshot (player.js sends everything set since launch), so a commit replaces
the stored snapshot; the attempt fields are derived from it (``cmi.derive_attempt``) and sent as
``runtime.committed`` with the next ``sequence``. ``session_time_delta_seconds`` is what the reported
session time grew by since the previous commit of this launch (never negative), so the enrollment service
can add the deltas up in any order. Finishing stamps ``time_ended_at``; a second finish changes nothing.

**Ordering** (docs/scorm-runtime.md, "Ordering"): a commit or finish first claims its sequence with one
``UPDATE runtime_sessions SET sequence = sequence + 1 ... WHERE finished_at IS NULL RETURNING ...``. That
statement takes the launch's write lock on both databases (PostgreSQL: the row; SQLite: the database's one
writer lock, taken by the first statement of the transaction, so no stale read can precede it) and holds it
until the transaction ends, so the writes of one launch are totally ordered, each gets its own sequence, and
nothing is accepted once a finish has committed (the ``finished_at IS NULL`` condition is evaluated on the row
as the previous writer left it).

**Token lifetime** (``ended``): a token works only while its launch is live: not finished, its enrollment
neither cancelled nor expired, its tenant not suspended. Otherwise the player, the content and the runtime
answer ``410 launch_ended``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from structlog.contextvars import bind_contextvars

from services.scorm.cmi import CmiError, CmiLimits, derive_attempt, initial_cmi, player_state, validate_commit
from services.scorm.context import ScormContext
from services.scorm.launches import runtime_event
from services.scorm.store import enrollments, now, runtime_sessions, tenants
from services.scorm.tokens import invalid_token
from shared.bus import outbox
from shared.db import Database, as_utc
from shared.http import ApiError

log = structlog.get_logger("scorm.runtime")

FINISHED = "This launch has finished; launch the activity again to continue."
CANCELLED = "The enrollment of this launch was cancelled; the launch has ended."
EXPIRED = "The enrollment of this launch has expired; the launch has ended."
SUSPENDED = "The organisation of this launch is suspended; the launch has ended."

_s = runtime_sessions.c
_e = enrollments.c
# Every column but the snapshot: content requests (one per file) and commits never parse it on the event loop.
_COLUMNS = [c for c in runtime_sessions.c if c.name != "cmi"]
# The snapshot as stored text, parsed off the event loop when needed (a snapshot may be close to 1 MiB).
_CMI_TEXT = sa.cast(_s.cmi, sa.Text).label("cmi_text")
# The session with what decides whether it is still live: its enrollment (read model) and tenant status.
_SESSION = (
    sa.select(*_COLUMNS, _e.status.label("enrollment_status"),
              _e.expires_at.label("enrollment_expires_at"), tenants.c.status.label("tenant_status"))
    .select_from(runtime_sessions
                 .outerjoin(enrollments, sa.and_(_e.tenant_id == _s.tenant_id, _e.enrollment_id == _s.enrollment_id))
                 .outerjoin(tenants, tenants.c.tenant_id == _s.tenant_id))
    .where(_s.id == sa.bindparam("session_id"), _s.tenant_id == sa.bindparam("tenant_id"))
)
_SESSION_WITH_CMI = _SESSION.add_columns(_CMI_TEXT)
_STANDARD = sa.select(_s.standard).where(_s.id == sa.bindparam("session_id"),
                                         _s.tenant_id == sa.bindparam("tenant_id"))
# Claims the next sequence of a live launch and takes its write lock (see the module docstring).
_CLAIM = (
    sa.update(runtime_sessions)
    .where(_s.id == sa.bindparam("claim_id"), _s.tenant_id == sa.bindparam("claim_tenant_id"),
           _s.finished_at.is_(None))
    .values(sequence=_s.sequence + 1)
    .returning(*_COLUMNS)
)
_STORED_CMI = sa.select(_CMI_TEXT).where(_s.id == sa.bindparam("session_id"))
_LIVENESS = sa.select(
    sa.select(_e.status).where(_e.tenant_id == sa.bindparam("tenant_id"),
                               _e.enrollment_id == sa.bindparam("enrollment_id")).scalar_subquery().label("status"),
    sa.select(_e.expires_at).where(_e.tenant_id == sa.bindparam("tenant_id"),
                                   _e.enrollment_id == sa.bindparam("enrollment_id"))
    .scalar_subquery().label("expires_at"),
    sa.select(tenants.c.status).where(tenants.c.tenant_id == sa.bindparam("tenant_id"))
    .scalar_subquery().label("tenant_status"),
)


def _parsed(text: str | None) -> dict[str, str]:
    value = json.loads(text) if text else {}
    return dict(value) if isinstance(value, dict) else {}


def launch_ended(message: str) -> ApiError:
    """The answer for a token whose launch has ended: genuine, but no longer good for anything."""
    return ApiError(410, "launch_ended", message)


def ended(*, finished_at: datetime | None, preview: bool, enrollment_status: str | None,
          enrollment_expires_at: datetime | None, tenant_status: str | None, stamp: datetime) -> str | None:
    """Why a launch has ended (the message), or None while it is live.

    A ``completed`` enrollment does not end its launches: the launch that completed it still has its finish to
    send, and completed enrollments may play in review mode (ADR 0015, ADR 0013). An enrollment the scorm service
    has not heard of yet is live: the launch itself proved it was launchable.
    """
    if tenant_status == "suspended":
        return SUSPENDED
    if finished_at is not None:
        return FINISHED
    if preview:
        return None
    if enrollment_status == "cancelled":
        return CANCELLED
    expires_at = as_utc(enrollment_expires_at)
    if enrollment_status == "expired" or (expires_at is not None and expires_at <= stamp
                                          and enrollment_status != "completed"):
        return EXPIRED
    return None


async def session_of(db: Database, scorm: ScormContext, token: str, *, with_cmi: bool = False) -> Any:
    """The live runtime session a genuine, unexpired token names (401 otherwise; 410 once it has ended).

    ``with_cmi``: also its stored snapshot, as text (``cmi_text``; ``page_state`` parses it)."""
    claims = scorm.tokens.verify(token)
    async with db.transaction() as session:
        row = (await session.execute(_SESSION_WITH_CMI if with_cmi else _SESSION,
                                     {"session_id": claims.session_id, "tenant_id": claims.tenant_id})).first()
    if row is None:
        raise invalid_token()
    bind_contextvars(tenant=row.tenant_slug, attempt_id=row.id)
    reason = ended(finished_at=row.finished_at, preview=row.preview, enrollment_status=row.enrollment_status,
                   enrollment_expires_at=row.enrollment_expires_at, tenant_status=row.tenant_status, stamp=now())
    if reason is not None:
        raise launch_ended(reason)
    return row


def page_state(row: Any, token: str, *, limits: CmiLimits | None = None) -> dict[str, object]:
    """What player.html hands to player.js: the launch values plus this launch's saved snapshot.

    CPU-bound on a large snapshot: call it off the event loop (``asyncio.to_thread``)."""
    if row.finished_at is not None:
        raise launch_ended(FINISHED)
    cmi = initial_cmi(
        row.standard,
        learner_id=str(row.user_id),
        learner_name=row.learner_name,  # the full directory name, as of the launch (docs/scorm.md)
        suspend_data=None,
        location=None,
        mastery_score=row.mastery_score,
        scaled_passing_score=row.passing_score_scaled,
        launch_data=row.launch_data,
        credit=row.mode == "normal",
        mode=row.mode,
        completion_threshold=row.completion_threshold,
        total_time_seconds=row.prior_total_seconds,
        objective_ids=list(row.objective_ids or []),
        saved=_parsed(row.cmi_text),
    )
    state = player_state(token=token, standard=row.standard, launch_url=row.launch_path, cmi=cmi,
                         title=row.title)
    if limits is not None:  # player.js refuses to create items past them (SetValue error), as the server does
        state["cmi_limits"] = {"items": limits.max_items, "nested_items": limits.max_nested_items}
    return state


@dataclass(frozen=True)
class Committed:
    attempt_id: int
    sequence: int
    status: str
    finished: bool

    def as_dict(self) -> dict[str, Any]:
        return {"attempt_id": self.attempt_id, "sequence": self.sequence, "status": self.status,
                "finished": self.finished}


async def validated(db: Database, scorm: ScormContext, token: str, cmi: dict[str, Any]) -> dict[str, str]:
    """The commit's snapshot checked against its launch's standard, off the event loop and before the launch's
    lock is taken (a 10,000-element snapshot takes a good fraction of a second to check)."""
    claims = scorm.tokens.verify(token)
    async with db.transaction() as session:
        standard = (await session.execute(_STANDARD, {"session_id": claims.session_id,
                                                      "tenant_id": claims.tenant_id})).scalar()
    if standard is None:
        raise invalid_token()
    try:
        return await asyncio.to_thread(validate_commit, standard, cmi, scorm.settings.cmi_limits())
    except CmiError as exc:
        raise ApiError.invalid(str(exc)) from None


async def commit(db: Database, scorm: ScormContext, token: str, snapshot: dict[str, str] | None, *,
                 finish: bool, request_id: str) -> Committed:
    """Store a snapshot (from ``validated``; None: keep the stored one, finish only) and send
    ``runtime.committed``."""
    claims = scorm.tokens.verify(token)
    async with db.transaction() as session:
        # First statement of the transaction: takes the launch's write lock (module docstring).
        row = (await session.execute(_CLAIM, {"claim_id": claims.session_id,
                                              "claim_tenant_id": claims.tenant_id})).first()
        if row is None:
            existing = (await session.execute(_SESSION, {"session_id": claims.session_id,
                                                         "tenant_id": claims.tenant_id})).first()
            if existing is None:
                raise invalid_token()
            bind_contextvars(tenant=existing.tenant_slug, attempt_id=existing.id)
            if finish:  # a repeated finish (the player's beacon after Terminate): already done, nothing changes
                return Committed(existing.id, existing.sequence, existing.status, True)
            log.info("runtime_commit_after_finish_refused", attempt_id=existing.id)
            raise launch_ended(FINISHED)
        bind_contextvars(tenant=row.tenant_slug, attempt_id=row.id)
        stamp = now()
        live = (await session.execute(_LIVENESS, {"tenant_id": row.tenant_id,
                                                  "enrollment_id": row.enrollment_id})).one()
        reason = ended(finished_at=None, preview=row.preview, enrollment_status=live.status,
                       enrollment_expires_at=live.expires_at, tenant_status=live.tenant_status, stamp=stamp)
        if reason is not None:
            raise launch_ended(reason)  # rolls the claimed sequence back
        if snapshot is None:  # a bare finish: the stored snapshot, as the last commit left it
            stored = (await session.execute(_STORED_CMI, {"session_id": row.id})).scalar()
            snapshot = await asyncio.to_thread(_parsed, stored)
        try:
            fields = derive_attempt(row.standard, snapshot, row.mastery_score, row.passing_score_scaled,
                                    completion_threshold=row.completion_threshold)
        except CmiError as exc:
            raise ApiError.invalid(str(exc)) from None
        reported = fields.session_time_seconds
        delta = max(0.0, reported - row.reported_session_seconds) if reported is not None else 0.0
        sequence = row.sequence  # already the claimed one
        ended_at = stamp if finish else None
        await session.execute(sa.update(runtime_sessions).where(_s.id == row.id).values(
            cmi=snapshot, status=fields.status, updated_at=stamp, finished_at=ended_at,
            reported_session_seconds=max(row.reported_session_seconds, reported or 0.0),
        ))
        if not row.preview:  # a preview has no enrollment: nothing to tell
            await outbox.add(session, runtime_event(row, sequence=sequence, status=fields.status,
                                                    fields=fields, delta=delta, ended_at=ended_at,
                                                    request_id=request_id))
    log.info("runtime_committed", attempt_id=row.id, sequence=sequence, status=fields.status, finished=finish,
             session_time_delta=round(delta, 2))
    return Committed(row.id, sequence, fields.status, finish)
