"""The expiry sweeper: a background job that turns overdue active enrollments into ``expired``.

Every replica runs it. Each step (``handlers.expire_overdue_batch``) claims a batch with ``FOR UPDATE SKIP
LOCKED`` and the update re-checks the status, so replicas never expire one enrollment twice (on SQLite there is a
single process).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog
from aiohttp import web

from services.enrollment import handlers
from services.enrollment.config import EnrollmentSettings
from shared.db import Database, utcnow
from shared.service import DB_KEY, SETTINGS_KEY
from shared.uow import UnitOfWork

log = structlog.get_logger("enrollment.sweeper")


async def expire_overdue(db: Database, now: datetime, batch_size: int = 100) -> int:
    """One sweep: batches (one transaction each) until one is not full. Returns how many expired."""
    uow = UnitOfWork(db)
    total = 0
    while (count := await handlers.expire_overdue_batch(uow, now, batch_size)) > 0:
        total += count
        if count < batch_size:
            break
    return total


async def expiry_sweeper(app: web.Application) -> None:
    settings = app[SETTINGS_KEY]
    assert isinstance(settings, EnrollmentSettings)
    while True:
        await asyncio.sleep(settings.sweep_interval)
        try:
            expired = await expire_overdue(app[DB_KEY], utcnow(), settings.sweep_batch_size)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be down for a while: try again next round
            log.warning("expiry_sweep_failed", error=repr(exc))
            continue
        if expired:
            log.info("expiry_sweep_done", expired=expired)
