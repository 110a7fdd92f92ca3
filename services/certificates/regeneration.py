"""PDF regeneration after ``template.updated``: a job row per template version, worked off in batches (this
module runs the lanes; each batch is ``handlers.regenerate_batch``).

- The consumer of ``template.updated`` only records a job ``(tenant, template, version)`` in its inbox
  transaction; rendering never happens in the consumer.
- Lanes (``render_workers + 1`` concurrent loops per process, any number of processes) claim batches of the
  template's certificates with ``FOR UPDATE SKIP LOCKED``: non-revoked ones whose ``pdf_template_version`` is
  below the template's current version. A batch is rendered across the worker pool, stored, and committed with
  each certificate's new ``pdf_template_version`` and one ``certificate.pdf_regenerated`` each. A crash loses
  the uncommitted batch only: its certificates are still below the version and are claimed again. Committed
  ones are never claimed again. So every certificate is regenerated once per template version, crash or not.
- Renders always use the template's *current* version: after two quick edits, a certificate not yet reached
  is rendered once, with the newest version.
- A job is finished when a plain (non-skipping) count finds nothing left, so a batch held by a lane that then
  dies keeps its job open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from services.certificates import handlers
from services.certificates.domain import ConcurrentChange
from services.certificates.handlers import RegenerationJob, Runtime
from shared.db import Database
from shared.metrics import REGENERATED, REGENERATION_PENDING
from shared.uow import UnitOfWork

log = structlog.get_logger("certificates.regeneration")

SERVICE = "certificates"
_PROGRESS_EVERY = 5.0


class Regenerator:
    def __init__(self, db: Database, runtime: Runtime, *, batch_size: int, lanes: int, poll_interval: float):
        self.db = db
        self.runtime = runtime
        self.batch_size = batch_size
        # SQLite has no row locks to skip: one lane there, so that no two lanes claim the same rows.
        self.lanes = lanes if db.is_postgres else 1
        self.poll_interval = poll_interval
        self.wake = runtime.wake_regeneration
        self._regenerated = 0

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, deps=self.runtime)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._lane(n), name=f"regeneration-lane-{n}") for n in range(self.lanes)]
        tasks.append(asyncio.create_task(self._report(), name="regeneration-progress"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _lane(self, number: int) -> None:
        while True:
            try:
                done = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("regeneration_batch_failed", lane=number)
                done = 0
                await asyncio.sleep(1)
            if done:
                continue
            self.wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (shutdown hangs).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self.wake.wait()

    async def step(self) -> int:
        """Regenerate one batch of any open job; returns how many certificates got a new PDF."""
        for job in await handlers.open_regeneration_jobs(self._uow()):
            try:
                done = await self._batch(job)
            except ConcurrentChange:
                log.warning("regeneration_batch_raced", template_id=job.template_id)
                continue
            if done:
                return done
        return 0

    async def _batch(self, job: RegenerationJob) -> int:
        started = time.perf_counter()
        done, version = await handlers.regenerate_batch(self._uow(), job, self.batch_size)
        if not done:
            return 0
        REGENERATED.labels(SERVICE).inc(done)
        self._regenerated += done
        log.info("regeneration_batch_done", template_id=job.template_id, template_version=version,
                 certificates=done, seconds=round(time.perf_counter() - started, 3))
        return done

    async def pending(self) -> int:
        """Certificates waiting for a new PDF across every open job."""
        return await handlers.regeneration_pending(self._uow())

    async def _report(self) -> None:
        """Progress in metrics and logs: the pending gauge, and a log line while there is work."""
        reported = 0
        while True:
            try:
                left = await self.pending()
                REGENERATION_PENDING.labels(SERVICE).set(left)
                if left or self._regenerated != reported:
                    log.info("regeneration_progress", pending=left, regenerated=self._regenerated)
                    reported = self._regenerated
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("regeneration_progress_unavailable", error=repr(exc))
            await asyncio.sleep(_PROGRESS_EVERY)
