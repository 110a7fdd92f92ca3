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
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates.domain import Facts, verification_url
from services.certificates.pdf.pool import RenderPool
from services.certificates.pdf.spec import CertificateData, TemplateSpec
from services.certificates.store import TemplateRows, metadata
from shared.blobstore import DB_CHUNK_BYTES, BlobInfo, BlobStore, DatabaseBlobStore, blob_tables, validate_key

log = structlog.get_logger("certificates.documents")

PDF_CONTENT_TYPE = "application/pdf"
_STORE_CONCURRENCY = 8
_blobs, _chunks = blob_tables(metadata)


def pdf_key(tenant_id: int, verification_id: str, version: int) -> str:
    return f"certificates/{tenant_id}/{verification_id}/v{version}.pdf"


class Documents:
    """The render pool, the blob store and the public base URL, as the use cases need them."""

    def __init__(self, pool: RenderPool, blobs: BlobStore, public_url: str):
        self.pool = pool
        self.blobs = blobs
        self.public_url = public_url.rstrip("/")
        self.transactional = isinstance(blobs, DatabaseBlobStore)
        self._store_slots = asyncio.Semaphore(_STORE_CONCURRENCY)
        self._background: set[asyncio.Task[None]] = set()
        self.template_rows = TemplateRows()

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

    async def render(self, tenant_id: int, template: TemplateSpec,
                     items: Sequence[tuple[Facts, int]]) -> list[Rendered]:
        """Render each ``(facts, pdf_version)`` with ``template``, in the worker pool; results keep the order."""
        pdfs = await self.pool.render_many(template, [self.certificate_data(facts) for facts, _ in items])
        return [Rendered(pdf_key(tenant_id, facts.verification_id, version), pdf, hashlib.sha256(pdf).hexdigest())
                for (facts, version), pdf in zip(items, pdfs, strict=True)]

    async def store(self, session: AsyncSession, rendered: Sequence[Rendered], *, superseded: Sequence[str] = (),
                    alongside: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Store ``rendered`` (and drop ``superseded`` versions) for ``session``'s transaction, then run the
        ``alongside`` INSERT/UPDATE (with ``params``), whose result is returned.

        Database store on PostgreSQL: everything is one statement, the PDF rows riding as data-modifying CTEs
        of ``alongside`` (round trips are what a certificate costs beyond its render). Files: written now,
        superseded ones left for :meth:`discard_later` after the commit.
        """
        if self.transactional:
            if session.get_bind().dialect.name == "postgresql":
                all_params = {**_pdf_row_params(rendered, superseded), **(params or {})}
                if alongside is not None:
                    return await session.execute(_with_pdf_rows(alongside), all_params)
                await session.execute(_PDF_ROWS_ONLY, all_params)
                return None
            await _write_in_transaction(session, rendered, superseded)
        else:
            await self._put_files(rendered)
        return await session.execute(alongside, params or {}) if alongside is not None else None

    async def produce(self, session: AsyncSession, tenant_id: int, template: TemplateSpec,
                      items: Sequence[tuple[Facts, int]]) -> list[BlobInfo]:
        rendered = await self.render(tenant_id, template, items)
        await self.store(session, rendered)
        return [r.info for r in rendered]

    async def _put_files(self, rendered: Sequence[Rendered]) -> None:
        results = await asyncio.gather(*(self._put(r.key, r.data) for r in rendered), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._delete_files([r.key for r in results if isinstance(r, BlobInfo)])
            raise failure

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

    def superseded_later(self, keys: Sequence[str]) -> list[str]:
        """Of the old versions replaced in a transaction, those still to delete after it commits (files only:
        database rows were deleted in the transaction by :meth:`store`)."""
        return [] if self.transactional else list(keys)

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


@dataclass(frozen=True)
class Rendered:
    """A rendered PDF version, not stored yet."""

    key: str
    data: bytes
    sha256: str

    @property
    def info(self) -> BlobInfo:
        return BlobInfo(key=self.key, bytes=len(self.data), sha256=self.sha256)


def _pdf_rows(rendered: Sequence[Rendered]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``blobs`` and ``blob_chunks`` rows :class:`DatabaseBlobStore` reads back. Keys are fresh (a new
    version of a certificate whose row is locked), so there is never anything to replace."""
    now = datetime.now(UTC)
    blob_rows: list[dict[str, Any]] = []
    chunk_rows: list[dict[str, Any]] = []
    for pdf in rendered:
        validate_key(pdf.key)
        blob_rows.append({"key": pdf.key, "bytes": len(pdf.data), "sha256": pdf.sha256,
                          "content_type": PDF_CONTENT_TYPE, "created_at": now})
        chunk_rows.extend({"key": pdf.key, "seq": seq, "data": pdf.data[start:start + DB_CHUNK_BYTES]}
                          for seq, start in enumerate(range(0, len(pdf.data), DB_CHUNK_BYTES)))
    return blob_rows, chunk_rows


def _array(name: str, item: Any) -> Any:
    return sa.bindparam(name, type_=postgresql.ARRAY(item))


def _pdf_row_ctes() -> list[Any]:
    """PostgreSQL: the PDF rows to add and the superseded versions' rows to delete, as data-modifying CTEs.

    Rows travel as arrays (``INSERT ... SELECT unnest(...)``), so the statement is built once, has the same
    shape for one PDF or a batch, and stays in SQLAlchemy's compiled cache (multi-row VALUES are compiled anew
    each time, which costs about as much as a render). Bind with :func:`_pdf_row_params`.
    """
    unnest = sa.func.unnest
    return [
        sa.delete(_chunks).where(_chunks.c.key == sa.any_(_array("old_keys", sa.String))).cte("old_chunks"),
        sa.delete(_blobs).where(_blobs.c.key == sa.any_(_array("old_keys", sa.String))).cte("old_blobs"),
        sa.insert(_blobs).from_select(
            ["key", "bytes", "sha256", "content_type", "created_at"],
            sa.select(unnest(_array("blob_keys", sa.String)), unnest(_array("blob_sizes", sa.BigInteger)),
                      unnest(_array("blob_hashes", sa.String)), sa.bindparam("blob_type", type_=sa.String),
                      sa.bindparam("blob_created", type_=sa.DateTime(timezone=True))),
        ).cte("new_blobs"),
        sa.insert(_chunks).from_select(
            ["key", "seq", "data"],
            sa.select(unnest(_array("chunk_keys", sa.String)), unnest(_array("chunk_seqs", sa.Integer)),
                      unnest(_array("chunk_data", sa.LargeBinary))),
        ).cte("new_chunks"),
    ]


_PDF_ROW_CTES = _pdf_row_ctes()
_PDF_ROWS_ONLY = sa.select(sa.literal(1)).add_cte(*_PDF_ROW_CTES)
_combined: dict[int, tuple[Any, Any]] = {}


def _with_pdf_rows(statement: Any) -> Any:
    """``statement`` with the PDF row CTEs, built once per (prebuilt) statement so its cache key is memoized."""
    held = _combined.get(id(statement))
    if held is None or held[0] is not statement:
        held = (statement, statement.add_cte(*_PDF_ROW_CTES))
        if len(_combined) < 64:
            _combined[id(statement)] = held
    return held[1]


def _pdf_row_params(rendered: Sequence[Rendered], superseded: Sequence[str]) -> dict[str, Any]:
    blob_rows, chunk_rows = _pdf_rows(rendered)
    return {
        "old_keys": list(superseded),
        "blob_keys": [r["key"] for r in blob_rows], "blob_sizes": [r["bytes"] for r in blob_rows],
        "blob_hashes": [r["sha256"] for r in blob_rows], "blob_type": PDF_CONTENT_TYPE,
        "blob_created": datetime.now(UTC),
        "chunk_keys": [r["key"] for r in chunk_rows], "chunk_seqs": [r["seq"] for r in chunk_rows],
        "chunk_data": [r["data"] for r in chunk_rows],
    }


async def _write_in_transaction(session: AsyncSession, rendered: Sequence[Rendered],
                                superseded: Sequence[str] = ()) -> None:
    """The same rows as :func:`_pdf_row_ctes`, statement by statement (SQLite)."""
    await _delete_in_transaction(session, superseded)
    if rendered:
        blob_rows, chunk_rows = _pdf_rows(rendered)
        await session.execute(sa.insert(_chunks), chunk_rows)
        await session.execute(sa.insert(_blobs), blob_rows)


async def _delete_in_transaction(session: AsyncSession, keys: Sequence[str]) -> None:
    if not keys:
        return
    await session.execute(sa.delete(_chunks).where(_chunks.c.key.in_(list(keys))))
    await session.execute(sa.delete(_blobs).where(_blobs.c.key.in_(list(keys))))
