"""Blob storage for package files (scorm) and certificate PDFs (certificates).

Two implementations of one protocol:

- :class:`FilesystemBlobStore` keeps each blob as a file under a root directory. A write goes to a
  temporary file under ``<root>/.tmp`` and is moved into place with ``os.replace``, so a reader sees the
  old blob or the new one, never half of one. Keys are checked; the resolved path must stay in the root.
- :class:`DatabaseBlobStore` keeps blobs in the service's own database (PostgreSQL ``bytea`` or SQLite
  ``BLOB``), split into 1 MiB rows of ``blob_chunks`` so that a large blob never has to sit in memory.

Keys look like relative POSIX paths (``"scorm/7/shared/launchpage.html"``): segments separated by ``/``,
no empty, ``.`` or ``..`` segment, no leading ``/``, no drive letter, no backslash, no control character
(NUL included), at most 1024 UTF-8 bytes. A *prefix* is a key path: ``delete_prefix("scorm/7")`` removes
``scorm/7`` and everything under ``scorm/7/``, never ``scorm/70/...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import Database

log = structlog.get_logger("shared.blobstore")

MAX_KEY_BYTES = 1024
DB_CHUNK_BYTES = 1024 * 1024
# Chunks smaller than this are gathered before a thread hop (filesystem) or a row insert (database).
_WRITE_BUFFER_BYTES = 1024 * 1024
_HASH_IN_THREAD_BYTES = 64 * 1024
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BlobInfo:
    key: str
    bytes: int
    sha256: str


class BlobNotFound(KeyError):
    """No blob has this key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no blob with key {self.key!r}"


class InvalidBlobKey(ValueError):
    """The key is not a safe relative path (or clashes with the filesystem layout)."""


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid blob key, else raise :class:`InvalidBlobKey` saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidBlobKey("a blob key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidBlobKey(f"blob key is longer than {MAX_KEY_BYTES} bytes: {key[:80]!r}...")
    if _CONTROL_CHARACTER.search(key):
        raise InvalidBlobKey(f"blob key contains a control character (NUL included): {key!r}")
    if "\\" in key:
        raise InvalidBlobKey(f"blob key contains a backslash; use '/' between segments: {key!r}")
    if key.startswith("/"):
        raise InvalidBlobKey(f"blob key must be relative, not start with '/': {key!r}")
    if _DRIVE_LETTER.match(key):
        raise InvalidBlobKey(f"blob key must not start with a drive letter: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidBlobKey(f"blob key has an empty, '.' or '..' segment: {key!r}")
    return key


def _normalise_prefix(prefix: str) -> str:
    if isinstance(prefix, str) and prefix.endswith("/"):
        prefix = prefix[:-1]
    return validate_key(prefix)


@runtime_checkable
class BlobStore(Protocol):
    async def put(
        self, key: str, data: bytes | AsyncIterable[bytes], content_type: str | None = None
    ) -> BlobInfo:
        """Store ``data`` under ``key`` (replacing any blob there) and return its size and SHA-256."""
        ...

    async def get(self, key: str) -> bytes:
        """The whole blob; raises :class:`BlobNotFound`. Use :meth:`stream` for anything large."""
        ...

    def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The blob in chunks of at most ``chunk_size`` bytes.

        Raises :class:`BlobNotFound` when iteration starts (the first ``__anext__``), not at the call.
        """
        ...

    async def stat(self, key: str) -> BlobInfo | None:
        """Size and SHA-256 of the blob, or None if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove ``prefix`` and every blob under ``prefix/``; returns how many blobs were removed."""
        ...


async def _iterate(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
        return
    async for chunk in data:
        yield bytes(chunk)


async def _sha256(data: bytes) -> str:
    if len(data) >= _HASH_IN_THREAD_BYTES:
        return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())  # hashlib releases the GIL
    return hashlib.sha256(data).hexdigest()


# --- filesystem ---------------------------------------------------------------------------------------------

_TMP_DIR = ".tmp"


class _TempBlobFile:
    """A blob being written: a temp file in the store's root, hashed as it grows (used in worker threads)."""

    def __init__(self, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)

    def commit(self, target: Path, fsync: bool) -> None:
        self.file.flush()
        if fsync:
            os.fsync(self.file.fileno())
        os.fchmod(self.file.fileno(), 0o644)
        self.file.close()
        # A concurrent delete may prune the (then empty) parent directory between mkdir and replace: retry.
        for attempt in range(3):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path, target)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise InvalidBlobKey(
                    f"{target} clashes with an existing blob: a key cannot be both a blob and a prefix"
                ) from exc

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class FilesystemBlobStore(BlobStore):
    """Blobs as files under ``root``. ``fsync=True`` makes each put durable before it returns (slower).

    ``content_type`` is accepted and not kept: callers that need it store it with their own rows.
    ``stat`` reads the whole file to hash it: keep the :class:`BlobInfo` from ``put`` if you need it often.
    The first key segment ``.tmp`` is reserved for writes in progress.
    """

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp_dir = self.root / _TMP_DIR
        self._fsync = fsync

    @staticmethod
    def _check_key(key: str) -> None:
        validate_key(key)
        if key.split("/", 1)[0] == _TMP_DIR:
            raise InvalidBlobKey(f"blob keys may not start with the reserved segment {_TMP_DIR!r}: {key!r}")

    def _path(self, key: str) -> Path:
        """The file of ``key`` (blocking: resolve() reads the file system, so call it in a worker thread)."""
        self._check_key(key)
        path = (self.root / key).resolve()
        # resolve() follows any symlink planted inside the root; the result must still be inside it.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidBlobKey(f"blob key {key!r} resolves outside the store")
        return path

    async def put(
        self, key: str, data: bytes | AsyncIterable[bytes], content_type: str | None = None
    ) -> BlobInfo:
        self._check_key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            return await asyncio.to_thread(self._put_bytes, key, bytes(data))
        temp = await asyncio.to_thread(_TempBlobFile, self._tmp_dir)
        try:
            buffer = bytearray()
            async for chunk in data:
                buffer += chunk
                if len(buffer) >= _WRITE_BUFFER_BYTES:
                    await asyncio.to_thread(temp.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await asyncio.to_thread(temp.write, bytes(buffer))
            await asyncio.to_thread(lambda: temp.commit(self._path(key), self._fsync))
        except BaseException:
            temp.discard()  # synchronous on purpose: also runs when the task is cancelled
            raise
        return BlobInfo(key=key, bytes=temp.size, sha256=temp.hasher.hexdigest())

    def _put_bytes(self, key: str, data: bytes) -> BlobInfo:
        target = self._path(key)
        temp = _TempBlobFile(self._tmp_dir)
        try:
            temp.write(data)
            temp.commit(target, self._fsync)
        except BaseException:
            temp.discard()
            raise
        return BlobInfo(key=key, bytes=temp.size, sha256=temp.hasher.hexdigest())

    async def get(self, key: str) -> bytes:
        self._check_key(key)
        try:
            return await asyncio.to_thread(lambda: self._path(key).read_bytes())
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    async def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        self._check_key(key)
        try:
            handle = await asyncio.to_thread(lambda: self._path(key).open("rb"))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> BlobInfo | None:
        self._check_key(key)
        return await asyncio.to_thread(self._stat_sync, key)

    def _stat_sync(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        hasher = hashlib.sha256()
        size = 0
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    hasher.update(chunk)
                    size += len(chunk)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return BlobInfo(key=key, bytes=size, sha256=hasher.hexdigest())

    async def delete(self, key: str) -> None:
        self._check_key(key)
        await asyncio.to_thread(self._delete_sync, key)

    def _delete_sync(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except (IsADirectoryError, PermissionError):
            # A directory is a prefix, not a blob (PermissionError is what macOS raises for it).
            if path.is_dir():
                return
            raise
        self._prune_empty_parents(path.parent)

    async def delete_prefix(self, prefix: str) -> int:
        prefix = _normalise_prefix(prefix)
        self._check_key(prefix)
        count = await asyncio.to_thread(self._delete_prefix_sync, prefix)
        log.info("blob_prefix_deleted", prefix=prefix, blobs=count)
        return count

    def _delete_prefix_sync(self, prefix: str) -> int:
        path = self._path(prefix)
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
            self._prune_empty_parents(path.parent)
            return 1
        if not path.is_dir():
            return 0
        removed = 0
        for directory, subdirs, files in os.walk(path, topdown=False):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, name))
                    removed += 1
            for name in subdirs:
                child = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if os.path.islink(child):
                        os.unlink(child)
                    else:
                        os.rmdir(child)
        with contextlib.suppress(OSError):
            path.rmdir()
        self._prune_empty_parents(path.parent)
        return removed

    def _prune_empty_parents(self, directory: Path) -> None:
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or already gone): stop climbing
            directory = directory.parent


# --- database -----------------------------------------------------------------------------------------------


def _blob_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("key", sa.String(MAX_KEY_BYTES), primary_key=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _chunk_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("key", sa.String(MAX_KEY_BYTES), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    ]


def blob_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The ``blobs`` and ``blob_chunks`` tables in ``metadata`` (defined once; later calls return them)."""
    if "blobs" in metadata.tables and "blob_chunks" in metadata.tables:
        return metadata.tables["blobs"], metadata.tables["blob_chunks"]
    blobs = sa.Table("blobs", metadata, *_blob_columns())
    chunks = sa.Table("blob_chunks", metadata, *_chunk_columns())
    return blobs, chunks


def create_blob_tables(op: Any) -> None:
    """For an alembic migration's ``upgrade()``: ``create_blob_tables(op)``."""
    op.create_table("blobs", *_blob_columns())
    op.create_table("blob_chunks", *_chunk_columns())


_metadata = sa.MetaData()
_blobs, _chunks = blob_tables(_metadata)


async def _rechunk(data: bytes | AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Re-slice any stream of chunks into pieces of exactly ``size`` bytes (the last one shorter)."""
    buffer = bytearray()
    async for chunk in _iterate(data):
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class DatabaseBlobStore(BlobStore):
    """Blobs in the ``blobs`` / ``blob_chunks`` tables of ``engine``'s database (see :func:`blob_tables`).

    A put replaces the blob in one transaction, so readers see the old blob or the new one. On PostgreSQL
    concurrent puts of one key are serialised with an advisory lock; SQLite serialises all writers anyway.
    ``stream`` holds one connection for as long as it is iterated: close it (``aclose``) when you stop early.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_tables(self) -> None:
        """Create both tables if missing (tests, embedded mode); migrations use :func:`create_blob_tables`."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)

    async def _lock_key(self, conn: AsyncConnection, key: str) -> None:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0))))

    async def put(
        self, key: str, data: bytes | AsyncIterable[bytes], content_type: str | None = None
    ) -> BlobInfo:
        validate_key(key)
        if (
            isinstance(data, bytes | bytearray | memoryview)
            and len(data) <= DB_CHUNK_BYTES
            and self.engine.dialect.name == "postgresql"
        ):
            data = bytes(data)
            info = BlobInfo(key=key, bytes=len(data), sha256=await _sha256(data))
            if await self._insert_new_small_blob(info, data, content_type):
                return info
            # The key exists already: replace it the general way below.
        hasher = hashlib.sha256()
        size = 0
        async with self.engine.begin() as conn:
            await self._lock_key(conn, key)
            replaced = await conn.execute(sa.delete(_blobs).where(_blobs.c.key == key))
            if replaced.rowcount:
                await conn.execute(sa.delete(_chunks).where(_chunks.c.key == key))
            seq = 0
            async for piece in _rechunk(data, DB_CHUNK_BYTES):
                if len(piece) >= _HASH_IN_THREAD_BYTES:
                    await asyncio.to_thread(hasher.update, piece)  # hashlib releases the GIL
                else:
                    hasher.update(piece)
                size += len(piece)
                await conn.execute(sa.insert(_chunks).values(key=key, seq=seq, data=piece))
                seq += 1
            await conn.execute(
                sa.insert(_blobs).values(
                    key=key, bytes=size, sha256=hasher.hexdigest(), content_type=content_type,
                    created_at=datetime.now(UTC),
                )
            )
        return BlobInfo(key=key, bytes=size, sha256=hasher.hexdigest())

    async def _insert_new_small_blob(self, info: BlobInfo, data: bytes, content_type: str | None) -> bool:
        """PostgreSQL fast path for a new key: one autocommit statement (a put is mostly round trips otherwise).

        The statement holds the key's advisory lock, like the general path, so the two never interleave. A key
        that exists already makes it fail as a whole on the primary key; False tells the caller to replace.
        """
        chunk = "" if not data else (
            ", chunk AS (INSERT INTO blob_chunks (key, seq, data) "
            "SELECT CAST(:key AS VARCHAR), 0, CAST(:data AS BYTEA) FROM held)"
        )
        statement = sa.text(
            "WITH held AS (SELECT pg_advisory_xact_lock(hashtextextended(CAST(:key AS TEXT), 0)))" + chunk
            + " INSERT INTO blobs (key, bytes, sha256, content_type, created_at) SELECT CAST(:key AS VARCHAR), "
            "CAST(:size AS BIGINT), CAST(:sha256 AS VARCHAR), CAST(:content_type AS VARCHAR), now() FROM held"
        )
        parameters: dict[str, Any] = {
            "key": info.key, "size": info.bytes, "sha256": info.sha256, "content_type": content_type,
        }
        if data:
            parameters["data"] = data
        async with self.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                await autocommit.execute(statement, parameters)
            except sa.exc.IntegrityError:
                return False
        return True

    def _content_query(self, key: str) -> sa.Select[Any]:
        # One statement, hence one snapshot: a concurrent put cannot mix old and new chunks in one read.
        return (
            sa.select(_blobs.c.bytes, _chunks.c.data)
            .select_from(_blobs.outerjoin(_chunks, _chunks.c.key == _blobs.c.key))
            .where(_blobs.c.key == key)
            .order_by(_chunks.c.seq)
        )

    async def get(self, key: str) -> bytes:
        validate_key(key)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(self._content_query(key))).all()
        if not rows:
            raise BlobNotFound(key)
        return b"".join(row.data for row in rows if row.data is not None)

    async def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        validate_key(key)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        async with self.engine.connect() as conn:
            result = await conn.stream(self._content_query(key).execution_options(yield_per=2))
            found = False
            async for row in result:
                found = True
                data = row.data
                if data is None:
                    continue
                for start in range(0, len(data), chunk_size):
                    yield bytes(data[start : start + chunk_size])
            if not found:
                raise BlobNotFound(key)

    async def stat(self, key: str) -> BlobInfo | None:
        validate_key(key)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(_blobs.c.bytes, _blobs.c.sha256).where(_blobs.c.key == key))
            ).first()
        if row is None:
            return None
        return BlobInfo(key=key, bytes=row.bytes, sha256=row.sha256)

    async def delete(self, key: str) -> None:
        validate_key(key)
        async with self.engine.begin() as conn:
            await self._lock_key(conn, key)
            await conn.execute(sa.delete(_chunks).where(_chunks.c.key == key))
            await conn.execute(sa.delete(_blobs).where(_blobs.c.key == key))

    async def delete_prefix(self, prefix: str) -> int:
        prefix = _normalise_prefix(prefix)
        under = sa.or_(_blobs.c.key == prefix, _blobs.c.key.startswith(prefix + "/", autoescape=True))
        async with self.engine.begin() as conn:
            # Chunks through the blobs' keys: the chunk primary key index does the work, not a scan.
            keys = sa.select(_blobs.c.key).where(under)
            await conn.execute(sa.delete(_chunks).where(_chunks.c.key.in_(keys)))
            removed = await conn.execute(sa.delete(_blobs).where(under))
        count = int(removed.rowcount or 0)
        log.info("blob_prefix_deleted", prefix=prefix, blobs=count)
        return count


def choose_blob_store(kind: str, db: Database, directory: Path) -> BlobStore:
    """A service's blob store from its ``blob_store`` setting: ``database`` (the service's own database),
    ``filesystem`` (files under ``directory``) or ``auto`` (the database with PostgreSQL, files when embedded)."""
    if kind == "auto":
        kind = "database" if db.is_postgres else "filesystem"
    return DatabaseBlobStore(db.engine) if kind == "database" else FilesystemBlobStore(directory)
