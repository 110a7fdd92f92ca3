"""Certificate PDFs as documents: render (in the worker pool) and store (in the blob store), one version each.

A PDF version lives under ``certificates/<tenant_id>/<verification_id>/v<n>.pdf``. The row that points at it is
written in the same transaction that records the version, after the blob is stored, so a row never points at a
missing blob. A superseded version is deleted after that transaction commits; a crash in between leaves an
orphan blob, never a broken certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from services.certificates.pdf import CertificateData, TemplateSpec
from services.certificates.rendering import RenderPool
from services.certificates.store import as_utc, verification_url
from shared.blobstore import BlobInfo, BlobStore

log = structlog.get_logger("certificates.documents")

PDF_CONTENT_TYPE = "application/pdf"
_STORE_CONCURRENCY = 8


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
        self._store_slots = asyncio.Semaphore(_STORE_CONCURRENCY)

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

    async def produce(self, tenant_id: int, template: TemplateSpec,
                      items: Sequence[tuple[Facts, int]]) -> list[BlobInfo]:
        """Render each ``(facts, pdf_version)`` with ``template`` and store it; results keep the order.

        If storing fails half-way, the versions already stored are removed again (best effort).
        """
        pdfs = await self.pool.render_many(template, [self.certificate_data(facts) for facts, _ in items])
        keys = [pdf_key(tenant_id, facts.verification_id, version) for facts, version in items]
        results = await asyncio.gather(*(self._put(key, pdf) for key, pdf in zip(keys, pdfs, strict=True)),
                                       return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self.discard([r.key for r in results if isinstance(r, BlobInfo)])
            raise failure
        return [r for r in results if isinstance(r, BlobInfo)]

    async def _put(self, key: str, pdf: bytes) -> BlobInfo:
        async with self._store_slots:
            return await self.blobs.put(key, pdf, PDF_CONTENT_TYPE)

    async def discard(self, keys: Sequence[str]) -> None:
        """Delete blobs nobody points at any more (superseded versions, losers of a race); never raises."""
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception as exc:  # an orphan costs storage, not correctness
                log.warning("certificate_pdf_delete_failed", key=key, error=repr(exc))

    def discard_later(self, keys: Sequence[str]) -> None:
        """:meth:`discard` after the caller's transaction commits, without making the caller wait."""
        if not keys:
            return
        task = asyncio.get_running_loop().create_task(self.discard(list(keys)))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def close(self) -> None:
        for task in list(_background):
            with contextlib.suppress(Exception):
                await task


_background: set[asyncio.Task[None]] = set()
