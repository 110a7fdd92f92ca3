"""The blob store contract, asked of the filesystem store and of the database store (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.blobstore import (
    DB_CHUNK_BYTES,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    DatabaseBlobStore,
    FilesystemBlobStore,
    InvalidBlobKey,
    blob_tables,
    create_blob_tables,
)


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_stream(store: BlobStore, key: str, chunk_size: int = 256 * 1024) -> bytes:
    return b"".join([chunk async for chunk in store.stream(key, chunk_size)])


# --- the contract, for every implementation -----------------------------------------------------------------


async def test_put_bytes_returns_size_and_sha256(blob_store: BlobStore) -> None:
    info = await blob_store.put("pkg/index.html", b"<html></html>", "text/html")

    assert info == BlobInfo("pkg/index.html", 13, hashlib.sha256(b"<html></html>").hexdigest())


async def test_get_returns_what_was_put(blob_store: BlobStore) -> None:
    await blob_store.put("pkg/a.txt", b"hello")

    assert await blob_store.get("pkg/a.txt") == b"hello"


async def test_put_from_an_async_stream_spanning_several_database_chunks(blob_store: BlobStore) -> None:
    data = os.urandom(DB_CHUNK_BYTES * 2 + 12_345)

    info = await blob_store.put("pkg/big.bin", chunks_of(data, 300_000))

    assert info.bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await blob_store.get("pkg/big.bin") == data


async def test_stream_yields_chunks_no_larger_than_asked(blob_store: BlobStore) -> None:
    data = os.urandom(DB_CHUNK_BYTES + 1000)
    await blob_store.put("pkg/big.bin", data)

    chunks = [chunk async for chunk in blob_store.stream("pkg/big.bin", chunk_size=100_000)]

    assert max(len(chunk) for chunk in chunks) <= 100_000
    assert b"".join(chunks) == data


async def test_empty_blob_round_trips(blob_store: BlobStore) -> None:
    info = await blob_store.put("pkg/empty", b"")

    assert info.bytes == 0
    assert await blob_store.get("pkg/empty") == b""
    assert await read_stream(blob_store, "pkg/empty") == b""
    assert await blob_store.stat("pkg/empty") == info


async def test_put_replaces_an_existing_blob(blob_store: BlobStore) -> None:
    await blob_store.put("pkg/a.txt", os.urandom(DB_CHUNK_BYTES + 5))

    await blob_store.put("pkg/a.txt", b"short")

    assert await blob_store.get("pkg/a.txt") == b"short"
    assert (await blob_store.stat("pkg/a.txt")).bytes == 5


async def test_stat_reports_size_and_hash_or_none(blob_store: BlobStore) -> None:
    await blob_store.put("pkg/a.txt", b"abc")

    assert await blob_store.stat("pkg/a.txt") == BlobInfo("pkg/a.txt", 3, hashlib.sha256(b"abc").hexdigest())
    assert await blob_store.stat("pkg/missing.txt") is None


async def test_get_of_a_missing_key_raises_blob_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound) as raised:
        await blob_store.get("pkg/missing.txt")

    assert isinstance(raised.value, KeyError)
    assert "pkg/missing.txt" in str(raised.value)


async def test_stream_of_a_missing_key_raises_blob_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await read_stream(blob_store, "pkg/missing.txt")


async def test_delete_removes_the_blob_and_is_idempotent(blob_store: BlobStore) -> None:
    await blob_store.put("pkg/a.txt", b"abc")

    await blob_store.delete("pkg/a.txt")
    await blob_store.delete("pkg/a.txt")

    assert await blob_store.stat("pkg/a.txt") is None


async def test_delete_prefix_removes_the_subtree_and_counts_it(blob_store: BlobStore) -> None:
    for key in ("pkg/1/index.html", "pkg/1/shared/a.js", "pkg/1/shared/deep/b.css", "pkg/10/index.html"):
        await blob_store.put(key, b"x")

    removed = await blob_store.delete_prefix("pkg/1")

    assert removed == 3
    assert await blob_store.stat("pkg/1/shared/a.js") is None
    assert await blob_store.get("pkg/10/index.html") == b"x"  # a sibling that merely starts alike survives


async def test_delete_prefix_treats_like_wildcards_literally(blob_store: BlobStore) -> None:
    await blob_store.put("pkg/a_b%/x", b"1")
    await blob_store.put("pkg/aXbY/x", b"2")

    assert await blob_store.delete_prefix("pkg/a_b%/") == 1
    assert await blob_store.get("pkg/aXbY/x") == b"2"


async def test_delete_prefix_of_nothing_is_zero(blob_store: BlobStore) -> None:
    assert await blob_store.delete_prefix("nothing/here") == 0


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "a/./b", "a/", "C:/windows", "a\\..\\b", "a\x00b",
     "a\nb", "x" * 1025],
)
async def test_unsafe_keys_are_refused(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await blob_store.put(key, b"x")


async def test_a_failing_source_stream_leaves_no_blob(blob_store: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        raise RuntimeError("upload interrupted")

    with pytest.raises(RuntimeError):
        await blob_store.put("pkg/partial.bin", broken())

    assert await blob_store.stat("pkg/partial.bin") is None


async def test_concurrent_puts_of_one_key_leave_one_whole_blob(blob_store: BlobStore) -> None:
    versions = [bytes([n]) * (DB_CHUNK_BYTES + 100) for n in range(4)]

    await asyncio.gather(*(blob_store.put("pkg/race.bin", chunks_of(v, 200_000)) for v in versions))

    assert await blob_store.get("pkg/race.bin") in versions


async def test_concurrent_small_puts_of_one_key_leave_one_whole_blob(blob_store: BlobStore) -> None:
    versions = [bytes([n]) * 1000 for n in range(8)] + [b""]

    await asyncio.gather(*(blob_store.put("pkg/small.txt", v) for v in versions))

    stored = await blob_store.get("pkg/small.txt")
    assert stored in versions
    assert (await blob_store.stat("pkg/small.txt")).bytes == len(stored)


# --- filesystem specifics -----------------------------------------------------------------------------------


async def test_filesystem_store_never_writes_outside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = FilesystemBlobStore(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidBlobKey):
        await store.put("link/evil.txt", b"x")

    assert list(outside.iterdir()) == []


async def test_filesystem_store_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "store")
    await store.put("pkg/a.txt", chunks_of(b"abc" * 1000, 7))
    await store.put("pkg/b.txt", b"abc")

    assert list((tmp_path / "store" / ".tmp").iterdir()) == []


async def test_filesystem_store_reserves_the_temporary_folder(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "store")

    with pytest.raises(InvalidBlobKey):
        await store.put(".tmp/x", b"x")


async def test_filesystem_delete_prefix_prunes_empty_folders(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "store")
    await store.put("scorm/1/a/b/c.txt", b"x")

    await store.delete_prefix("scorm/1")

    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [".tmp"]


# --- database specifics -------------------------------------------------------------------------------------


async def test_database_store_splits_blobs_into_one_mebibyte_chunks(
    postgres_blob_store: DatabaseBlobStore,
) -> None:
    await postgres_blob_store.put("pkg/big.bin", chunks_of(os.urandom(DB_CHUNK_BYTES * 2 + 1), 65_536))

    _, chunks = blob_tables(sa.MetaData())
    async with postgres_blob_store.engine.connect() as conn:
        query = sa.select(sa.func.length(chunks.c.data)).where(chunks.c.key == "pkg/big.bin")
        sizes = (await conn.execute(query.order_by(chunks.c.seq))).scalars().all()

    assert sizes == [DB_CHUNK_BYTES, DB_CHUNK_BYTES, 1]


async def test_database_store_records_the_content_type(sqlite_blob_store: DatabaseBlobStore) -> None:
    await sqlite_blob_store.put("pkg/a.pdf", b"%PDF", "application/pdf")

    blobs, _ = blob_tables(sa.MetaData())
    async with sqlite_blob_store.engine.connect() as conn:
        content_type = (await conn.execute(sa.select(blobs.c.content_type))).scalar_one()

    assert content_type == "application/pdf"


def test_blob_tables_are_defined_once_per_metadata() -> None:
    metadata = sa.MetaData()

    assert blob_tables(metadata) == blob_tables(metadata)
    assert set(metadata.tables) == {"blobs", "blob_chunks"}


def test_create_blob_tables_creates_both_tables_through_alembic_op() -> None:
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        create_blob_tables(Operations(MigrationContext.configure(conn)))
        tables = set(sa.inspect(conn).get_table_names())
        chunk_pk = sa.inspect(conn).get_pk_constraint("blob_chunks")["constrained_columns"]

    assert tables == {"blobs", "blob_chunks"}
    assert chunk_pk == ["key", "seq"]
