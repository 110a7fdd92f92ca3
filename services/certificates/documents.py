"""Certificate PDFs as documents: rendered in the worker pool, stored in the blob store, one version each.

A PDF version lives under ``certificates/<tenant_id>/<verification_id>/v<n>.pdf``. How it is stored depends on
the blob store:

- database (the default with PostgreSQL): the PDF's ``blobs``/``blob_chunks`` rows are written in the *same*
  transaction as the certificate row that points at them, and a superseded version is deleted in it too. A
  certificate and its PDF commit together or not at all; nothing is ever orphaned; and no second connection
  is needed while the transaction is open. Reads go through :class:`DatabaseBlobStore` as usual.
- filesystem (the embedded default): files cannot join a transaction, so a PDF is written before the row
  that points at it commits, and a superseded one is deleted after. A crash in between leaves an orphan file,
  never a certificate without its PDF.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates.pdf import CertificateData, TemplateSpec
from services.certificates.rendering import RenderPool
from services.certificates.store import as_utc, metadata, verification_url
from shared.blobstore import DB_CHUNK_BYTES, BlobInfo, BlobStore, DatabaseBlobStore, blob_tables, validate_key

log = structlog.get_logger("certificates.documents")

PDF_CONTENT_TYPE = "application/pdf"
_STORE_CONCURRENCY = 8
_blobs, _chunks = blob_tables(metadata)


def pdf_key(tenant_id: int, verification_id: str, version: int) -> str:
    return f"certificates/{tenant_id}/{verification_id}/v{version}.pdf"


@dataclass(frozen=True)
class Facts:
    """What a certificate shows, as stored (a row) or about to be stored (a new issue)."""

    recipient_name: str
    course_title: str
    credit_hours: Decimal | None
    credit_kind: str | None
    issued_at: datetime
    expires_at: datetime | None
    verification_id: str
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @classmethod
    def of_row(cls, row: Any, **changes: Any) -> Facts:
        values = {
            "recipient_name": row.recipient_name, "course_title": row.course_title,
            "credit_hours": row.credit_hours, "credit_kind": row.credit_kind, "issued_at": as_utc(row.issued_at),
            "expires_at": as_utc(row.expires_at), "verification_id": row.verification_id,
            "revoked_at": as_utc(row.revoked_at), "revoked_reason": row.revoked_reason,
        }
        values.update(changes)
        return cls(**values)


class Documents:
    """The render pool, the blob store and the public base URL, as the use cases need them."""

    def __init__(self, pool: RenderPool, blobs: BlobStore, public_url: str):
        self.pool = pool
        self.blobs = blobs
        self.public_url = public_url.rstrip("/")
        self.transactional = isinstance(blobs, DatabaseBlobStore)
        self._store_slots = asyncio.Semaphore(_STORE_CONCURRENCY)
        self._background: set[asyncio.Task[None]] = set()

    def certificate_data(self, facts: Facts) -> CertificateData:
        return CertificateData(
            recipient_name=facts.recipient_name,
            course_title=facts.course_title,
            credit_hours=facts.credit_hours,
            credit_kind=facts.credit_kind,
            issued_at=facts.issued_at,
            expires_at=facts.expires_at,
            verification_id=facts.verification_id,
            verification_url=verification_url(self.public_url, facts.verification_id),
            revoked=facts.revoked_at is not None,
            revoked_at=facts.revoked_at,
            revoked_reason=facts.revoked_reason,
        )

    async def produce(self, session: AsyncSession, tenant_id: int, template: TemplateSpec,
                      items: Sequence[tuple[Facts, int]]) -> list[BlobInfo]:
        """Render each ``(facts, pdf_version)`` with ``template`` and store it; results keep the order.

        With the database store the PDFs become part of ``session``'s transaction.
        """
        pdfs = await self.pool.render_many(template, [self.certificate_data(facts) for facts, _ in items])
        keys = [pdf_key(tenant_id, facts.verification_id, version) for facts, version in items]
        if self.transactional:
            return await _write_in_transaction(session, list(zip(keys, pdfs, strict=True)))
        results = await asyncio.gather(*(self._put(key, pdf) for key, pdf in zip(keys, pdfs, strict=True)),
                                       return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._delete_files([r.key for r in results if isinstance(r, BlobInfo)])
            raise failure
        return [r for r in results if isinstance(r, BlobInfo)]

    async def _put(self, key: str, pdf: bytes) -> BlobInfo:
        async with self._store_slots:
            return await self.blobs.put(key, pdf, PDF_CONTENT_TYPE)

    async def retract(self, session: AsyncSession, keys: Sequence[str]) -> None:
        """Take back PDFs just produced that no row will point at (a lost race, a failure before commit)."""
        if self.transactional:
            await _delete_in_transaction(session, keys)
        else:
            await self._delete_files(keys)

    async def abandon(self, keys: Sequence[str]) -> None:
        """After a rollback: PDFs written outside the transaction are removed (database ones rolled back)."""
        if not self.transactional:
            await self._delete_files(keys)

    async def supersede(self, session: AsyncSession, keys: Sequence[str]) -> list[str]:
        """Old versions replaced in ``session``'s transaction. Database: deleted in it, returns []. Files:
        returns the keys, for :meth:`discard_later` once the transaction has committed."""
        if self.transactional:
            await _delete_in_transaction(session, keys)
            return []
        return list(keys)

    def stream(self, key: str) -> AsyncIterator[bytes]:
        return self.blobs.stream(key)

    async def _delete_files(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception as exc:  # an orphan costs storage, not correctness
                log.warning("certificate_pdf_delete_failed", key=key, error=repr(exc))

    def discard_later(self, keys: Sequence[str]) -> None:
        """Delete superseded files after the caller's transaction committed, without making the caller wait."""
        if not keys:
            return
        task = asyncio.get_running_loop().create_task(self._delete_files(list(keys)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task


async def _write_in_transaction(session: AsyncSession, items: list[tuple[str, bytes]]) -> list[BlobInfo]:
    """The rows :class:`DatabaseBlobStore` reads, written in the caller's transaction, in two statements.

    Keys are fresh (a new version of a certificate whose row is locked), so there is nothing to replace.
    """
    now = datetime.now(UTC)
    infos: list[BlobInfo] = []
    blob_rows: list[dict[str, Any]] = []
    chunk_rows: list[dict[str, Any]] = []
    for key, data in items:
        validate_key(key)
        info = BlobInfo(key=key, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        infos.append(info)
        blob_rows.append({"key": key, "bytes": info.bytes, "sha256": info.sha256, "content_type": PDF_CONTENT_TYPE,
                          "created_at": now})
        chunk_rows.extend({"key": key, "seq": seq, "data": data[start:start + DB_CHUNK_BYTES]}
                          for seq, start in enumerate(range(0, len(data), DB_CHUNK_BYTES)))
    await session.execute(sa.insert(_chunks), chunk_rows)
    await session.execute(sa.insert(_blobs), blob_rows)
    return infos


async def _delete_in_transaction(session: AsyncSession, keys: Sequence[str]) -> None:
    if not keys:
        return
    await session.execute(sa.delete(_chunks).where(_chunks.c.key.in_(list(keys))))
    await session.execute(sa.delete(_blobs).where(_blobs.c.key.in_(list(keys))))
