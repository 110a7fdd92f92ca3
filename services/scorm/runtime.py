"""The learner runtime behind a token: the player's state, commits and finishing.

Every body is the SCO's whole CMI snapshot (player.js sends everything set since launch), so a commit replaces
the stored snapshot; the attempt fields are derived from it (``cmi.derive_attempt``) and sent as
``runtime.committed`` with the next ``sequence``. ``session_time_delta_seconds`` is what the reported
session time grew by since the previous commit of this launch (never negative), so the enrollment service
can add the deltas up in any order. Finishing stamps ``time_ended_at``; a second finish changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from structlog.contextvars import bind_contextvars

from services.scorm.cmi import CmiError, derive_attempt, initial_cmi, player_state, validate_commit
from services.scorm.context import ScormContext
from services.scorm.launches import runtime_event
from services.scorm.store import now, runtime_sessions
from services.scorm.tokens import invalid_token
from shared.bus import outbox
from shared.db import Database
from shared.http import ApiError

log = structlog.get_logger("scorm.runtime")

FINISHED = "This launch has finished; launch the activity again to continue."


async def session_of(db: Database, scorm: ScormContext, token: str) -> Any:
    """The runtime session a genuine, unexpired token names (401 otherwise)."""
    claims = scorm.tokens.verify(token)
    async with db.transaction() as session:
        row = (await session.execute(sa.select(runtime_sessions).where(
            runtime_sessions.c.id == claims.session_id, runtime_sessions.c.tenant_id == claims.tenant_id,
        ))).first()
    if row is None:
        raise invalid_token()
    bind_contextvars(tenant=row.tenant_slug, attempt_id=row.id)
    return row


def page_state(row: Any, token: str) -> dict[str, object]:
    """What player.html hands to player.js: the launch values plus this launch's saved snapshot."""
    if row.finished_at is not None:
        raise ApiError.invalid(FINISHED)
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
        saved=dict(row.cmi or {}),
    )
    return player_state(token=token, standard=row.standard, launch_url=row.launch_path, cmi=cmi,
                        title=row.title)


@dataclass(frozen=True)
class Committed:
    attempt_id: int
    sequence: int
    status: str
    finished: bool

    def as_dict(self) -> dict[str, Any]:
        return {"attempt_id": self.attempt_id, "sequence": self.sequence, "status": self.status,
                "finished": self.finished}


async def commit(db: Database, scorm: ScormContext, token: str, cmi: dict[str, Any] | None, *,
                 finish: bool, request_id: str) -> Committed:
    """Store a snapshot (``cmi`` None: keep the stored one, finish only) and send ``runtime.committed``."""
    claims = scorm.tokens.verify(token)
    async with db.transaction() as session:
        row = (await session.execute(sa.select(runtime_sessions).where(
            runtime_sessions.c.id == claims.session_id, runtime_sessions.c.tenant_id == claims.tenant_id,
        ).with_for_update())).first()
        if row is None:
            raise invalid_token()
        bind_contextvars(tenant=row.tenant_slug, attempt_id=row.id)
        if row.finished_at is not None:
            if finish:  # a repeated finish (the player's beacon after Terminate): already done
                return Committed(row.id, row.sequence, row.status, True)
            raise ApiError.invalid(FINISHED)
        try:
            snapshot = dict(row.cmi or {}) if cmi is None else validate_commit(row.standard, cmi)
            fields = derive_attempt(row.standard, snapshot, row.mastery_score, row.passing_score_scaled,
                                    completion_threshold=row.completion_threshold)
        except CmiError as exc:
            raise ApiError.invalid(str(exc)) from None
        reported = fields.session_time_seconds
        delta = max(0.0, reported - row.reported_session_seconds) if reported is not None else 0.0
        stamp = now()
        sequence = row.sequence + 1
        ended_at = stamp if finish else None
        await session.execute(sa.update(runtime_sessions).where(runtime_sessions.c.id == row.id).values(
            cmi=snapshot, sequence=sequence, status=fields.status, updated_at=stamp, finished_at=ended_at,
            reported_session_seconds=max(row.reported_session_seconds, reported or 0.0),
        ))
        if not row.preview:  # a preview has no enrollment: nothing to tell
            await outbox.add(session, runtime_event(row, sequence=sequence, status=fields.status,
                                                    fields=fields, delta=delta, ended_at=ended_at,
                                                    request_id=request_id))
    log.info("runtime_committed", attempt_id=row.id, sequence=sequence, status=fields.status, finished=finish,
             session_time_delta=round(delta, 2))
    return Committed(row.id, sequence, fields.status, finish)
