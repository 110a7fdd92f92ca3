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
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from aiohttp import web

from services.scorm.context import SCORM_KEY, ScormContext, package_prefix
from services.scorm.launch_data import ItemLaunchData, item_launch_data
from services.scorm.package_import import MANIFEST_NAME, ImportResult, PackageRejected, import_package
from services.scorm.packages import UNTITLED
from services.scorm.store import now, scorm_packages, scorm_scos
from shared.bus import outbox
from shared.bus.envelope import new_event
from shared.db import Database
from shared.events.scorm import ScoInfo, ScormPackageFailed, ScormPackageReady
from shared.service import DB_KEY

log = structlog.get_logger("scorm.importer")

UPLOAD_LOST = ("the uploaded file was lost before it could be imported (the server restarted or moved); "
               "upload the package again")


class LeaseLost(Exception):
    """Another worker took the package over (our lease ran out): our result is dropped."""


def _number(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class Importer:
    def __init__(self, db: Database, scorm: ScormContext) -> None:
        self.db = db
        self.scorm = scorm
        self.settings = scorm.settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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
        async with self.db.transaction() as session:
            wanted = set((await session.execute(
                sa.select(scorm_packages.c.upload_path).where(scorm_packages.c.upload_path.is_not(None))
            )).scalars())

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
        table = scorm_packages
        stamp = now()
        free = sa.and_(table.c.status == "processing",
                       sa.or_(table.c.lease_until.is_(None), table.c.lease_until < stamp))
        async with self.db.transaction() as session:
            candidate = (await session.execute(
                sa.select(table.c.id).where(free).order_by(table.c.id).limit(1).with_for_update(skip_locked=True)
            )).first()
            if candidate is None:
                return None
            return (await session.execute(
                sa.update(table).where(table.c.id == candidate.id, free)
                .values(lease_owner=self.worker_id,
                        lease_until=stamp + timedelta(seconds=self.settings.import_lease_seconds),
                        import_attempts=table.c.import_attempts + 1, updated_at=stamp)
                .returning(*table.c)
            )).first()

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
                await self._succeed(row, outcome, extras)
                bound.info("scorm_import_ready", scos=len(outcome.manifest.scos), files=len(outcome.files))
            else:
                await self._fail(row, outcome)
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
            return "the package could not be imported because of a server error; upload it again"
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
                async with self.db.transaction() as session:
                    await session.execute(
                        sa.update(scorm_packages)
                        .where(scorm_packages.c.id == package_id,
                               scorm_packages.c.lease_owner == self.worker_id)
                        .values(lease_until=now() + timedelta(seconds=lease))
                    )

    def _held(self, row: Any) -> sa.ColumnElement[bool]:
        return sa.and_(scorm_packages.c.id == row.id, scorm_packages.c.status == "processing",
                       scorm_packages.c.lease_owner == self.worker_id)

    async def _succeed(self, row: Any, result: ImportResult, extras: dict[str, ItemLaunchData]) -> None:
        manifest = result.manifest
        title = row.title if row.title_given else (manifest.title or UNTITLED)
        stamp = now()
        scos = [
            {
                "package_id": row.id, "position": sco.position, "tenant_id": row.tenant_id,
                "identifier": sco.identifier, "title": sco.title, "launch_url": sco.launch_url,
                "parameters": sco.parameters, "mastery_score": sco.mastery_score,
                "passing_score_scaled": sco.passing_score_scaled, "parent_identifier": sco.parent_identifier,
                "resource_identifier": sco.resource_identifier,
                "objective_ids": extras.get(sco.identifier, ItemLaunchData()).objective_ids,
                "completion_threshold": extras.get(sco.identifier, ItemLaunchData()).completion_threshold,
                "launch_data": extras.get(sco.identifier, ItemLaunchData()).launch_data,
            }
            for sco in manifest.scos
        ]
        event = ScormPackageReady(
            package_id=row.id, title=title, scorm_version=manifest.scorm_version,
            scos=[ScoInfo(identifier=s["identifier"], title=s["title"], launch_url=s["launch_url"],
                          parameters=s["parameters"], mastery_score=_number(s["mastery_score"]),
                          passing_score_scaled=_number(s["passing_score_scaled"]), position=s["position"],
                          parent_identifier=s["parent_identifier"]) for s in scos],
        )
        async with self.db.transaction() as session:
            updated = await session.execute(sa.update(scorm_packages).where(self._held(row)).values(
                status="ready", title=title, scorm_version=manifest.scorm_version, error=None,
                organization_identifier=manifest.organization_identifier, warnings=result.warnings,
                files=len(result.files), upload_path=None, lease_owner=None, lease_until=None,
                updated_at=stamp,
            ))
            if updated.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost()
            await session.execute(sa.delete(scorm_scos).where(scorm_scos.c.package_id == row.id))
            if scos:
                await session.execute(sa.insert(scorm_scos), scos)
            await outbox.add(session, self._event(row, "scorm_package.ready", event))

    async def _fail(self, row: Any, error: str) -> None:
        # A crashed earlier attempt may have left files behind: a failed package keeps none.
        await self.scorm.blob_store(self.db).delete_prefix(package_prefix(row.tenant_id, row.id))
        async with self.db.transaction() as session:
            updated = await session.execute(sa.update(scorm_packages).where(self._held(row)).values(
                status="failed", error=error, upload_path=None, lease_owner=None, lease_until=None,
                updated_at=now(),
            ))
            if updated.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost()
            await outbox.add(session, self._event(
                row, "scorm_package.failed",
                ScormPackageFailed(package_id=row.id, title=row.title, error=error)))
        log.info("scorm_import_failed", package_id=row.id, error=error)

    async def _release(self, row: Any) -> None:
        """Give the package back after an unexpected error; it is retried after a pause."""
        pause = timedelta(seconds=min(60.0, 2.0 * row.import_attempts))
        with contextlib.suppress(Exception):
            async with self.db.transaction() as session:
                await session.execute(sa.update(scorm_packages).where(self._held(row))
                                      .values(lease_owner=None, lease_until=now() + pause))

    @staticmethod
    def _event(row: Any, event_type: str, payload: Any) -> Any:
        return new_event(event_type, payload, service="scorm", tenant=row.tenant_slug,
                         tenant_id=row.tenant_id, subject=f"scorm_package/{row.id}",
                         request_id=row.request_id, event_id=outcome_event_id(row.tenant_id, row.id, event_type))


def outcome_event_id(tenant_id: int, package_id: int, event_type: str) -> str:
    """The id of a package's one ``ready`` or ``failed`` event, derivable from the package alone.

    A read of the package can then name the event that made its status (read-your-writes, ADR 0010): a client
    that saw ``ready`` here finds the catalog aware of it on its next request.
    """
    return str(uuid.uuid5(_OUTCOME_NAMESPACE, f"{tenant_id}/{package_id}/{event_type}"))


_OUTCOME_NAMESPACE = uuid.UUID("5b0f5f2e-3f7a-4d7e-9a55-7c1f3f0b1e21")


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
