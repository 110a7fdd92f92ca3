"""The background importer: turns ``processing`` packages into ``ready`` or ``failed`` ones.

Each slot claims the oldest unclaimed ``processing`` package with a lease (``SKIP LOCKED`` on PostgreSQL, so
replicas share the work), renews the lease while it imports, and ends the package in one transaction with its
event (outbox). A worker that dies leaves a lease that runs out: the package is picked up again, by this
process after a restart or by another replica. A refusal ends the package ``failed`` at once; an unexpected
error (the database or the store down) is retried a few times before the package fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from services.scorm import handlers
from services.scorm.context import SCORM_KEY, ScormContext, package_prefix
from services.scorm.domain import TOO_MANY_ATTEMPTS, UPLOAD_LOST, LeaseLost
from services.scorm.manifest.items import ItemLaunchData, item_launch_data
from services.scorm.manifest.zip_safety import MANIFEST_NAME, ImportResult, PackageRejected, import_package
from shared.db import Database
from shared.service import DB_KEY
from shared.uow import UnitOfWork

log = structlog.get_logger("scorm.importer")

class Importer:
    def __init__(self, db: Database, scorm: ScormContext) -> None:
        self.db = db
        self.scorm = scorm
        self.settings = scorm.settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _uow(self) -> UnitOfWork:
        """A unit of work per step: the slots and their lease renewals run at the same time."""
        return UnitOfWork(self.db, deps=self.scorm)

    async def run(self) -> None:
        with contextlib.suppress(Exception):  # best effort: a database still starting must not stop imports
            await self.sweep_orphan_uploads()
        async with asyncio.TaskGroup() as slots:  # one slot failing cancels the others (then all restart)
            for _ in range(self.settings.import_concurrency):
                slots.create_task(self._slot())

    async def sweep_orphan_uploads(self, min_age_seconds: float = 3600) -> int:
        """Delete upload files no package points to (a crash between writing one and recording it).

        Only old files go: a younger one may be an upload still streaming in on another replica.
        """
        directory = self.settings.upload_path
        wanted = await handlers.upload_paths(self._uow())

        def sweep() -> int:
            if not directory.is_dir():
                return 0
            cutoff = time.time() - min_age_seconds
            removed = 0
            for path in directory.glob("*.zip"):
                with contextlib.suppress(OSError):
                    if str(path) not in wanted and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
            return removed

        removed = await asyncio.to_thread(sweep)
        if removed:
            log.info("scorm_orphan_uploads_removed", files=removed)
        return removed

    async def _slot(self) -> None:
        wanted = self.scorm.import_wanted
        while True:
            try:
                row = await self.claim()
            except Exception:
                log.warning("scorm_import_claim_failed", exc_info=True)  # the database is down: wait
                row = None
            if row is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wanted.wait(), self.settings.import_poll_interval)
                wanted.clear()
                continue
            await self.import_claimed(row)

    async def claim(self) -> Any | None:
        """Lease the oldest ``processing`` package nobody holds; None when there is none."""
        return await handlers.claim_package(self._uow(), self.worker_id)

    async def import_claimed(self, row: Any) -> None:
        structlog.contextvars.bind_contextvars(request_id=row.request_id, tenant=row.tenant_slug)
        bound = log.bind(package_id=row.id, attempt=row.import_attempts)
        prefix = package_prefix(row.tenant_id, row.id)
        upload = Path(row.upload_path) if row.upload_path else None
        renewing = asyncio.create_task(self._renew(row.id))
        try:
            outcome = await self._attempt(row, upload, prefix)
            if isinstance(outcome, ImportResult):
                assert upload is not None
                extras = await asyncio.to_thread(_launch_data_of, upload)
                await handlers.package_imported(self._uow(), row, self.worker_id, outcome, extras)
                bound.info("scorm_import_ready", scos=len(outcome.manifest.scos), files=len(outcome.files))
            else:
                await handlers.package_refused(self._uow(), row, self.worker_id, outcome)
        except LeaseLost:
            bound.warning("scorm_import_lease_lost")
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            bound.exception("scorm_import_error")
            await self._release(row)
            return
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            structlog.contextvars.unbind_contextvars("request_id", "tenant")
        if upload is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(upload.unlink, True)

    async def _attempt(self, row: Any, upload: Path | None, prefix: str) -> ImportResult | str:
        """The import's result, or why the package is refused."""
        if row.import_attempts > self.settings.import_max_attempts:
            return TOO_MANY_ATTEMPTS
        if upload is None or not await asyncio.to_thread(upload.is_file):
            return UPLOAD_LOST
        log.info("scorm_import_started", package_id=row.id, bytes=row.bytes)
        try:
            return await import_package(upload, self.scorm.blob_store(self.db), prefix,
                                        self.settings.import_limits())
        except PackageRejected as exc:
            return str(exc)

    async def _renew(self, package_id: int) -> None:
        lease = self.settings.import_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            with contextlib.suppress(Exception):
                await handlers.renew_lease(self._uow(), package_id, self.worker_id)

    async def _release(self, row: Any) -> None:
        """Give the package back after an unexpected error; it is retried after a pause."""
        with contextlib.suppress(Exception):
            await handlers.release_package(self._uow(), row, self.worker_id)


def _launch_data_of(upload: Path) -> dict[str, ItemLaunchData]:
    """Objectives, completion threshold and launch data per item (the manifest was checked by the import)."""
    try:
        with zipfile.ZipFile(upload) as archive:
            return item_launch_data(archive.read(MANIFEST_NAME))
    except Exception:
        log.warning("scorm_launch_data_unreadable", exc_info=True)
        return {}


async def package_importer(app: web.Application) -> None:
    """Background job (ServiceSpec.background)."""
    await Importer(app[DB_KEY], app[SCORM_KEY]).run()
