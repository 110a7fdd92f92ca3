"""The expiry sweeper: a background job that turns overdue active enrollments into ``expired``.

Every replica runs it. Batches are claimed with ``FOR UPDATE SKIP LOCKED`` and the update re-checks the status,
so replicas never expire one enrollment twice (on SQLite there is a single process).
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from services.enrollment.config import EnrollmentSettings
from services.enrollment.enrollments import expire_overdue
from shared.db import utcnow
from shared.service import DB_KEY, SETTINGS_KEY

log = structlog.get_logger("enrollment.sweeper")


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
