"""The embedded default's SQLite files are readable by their owner only, like the secret files (issue 15)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import sqlalchemy as sa

from shared.config import CommonSettings
from shared.db import Database


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_wal_and_shm_files_are_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        common = CommonSettings(data_dir=tmp_path / "data", postgres_url=None, amqp_url=None)
        url = common.database_url("catalog")
        db = Database(url)
        try:
            async with db.transaction() as session:
                await session.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
                await session.execute(sa.text("INSERT INTO t (v) VALUES ('x')"))
            files = sorted((tmp_path / "data").glob("learn_catalog.sqlite3*"))
            assert {f.name for f in files} >= {"learn_catalog.sqlite3", "learn_catalog.sqlite3-wal",
                                               "learn_catalog.sqlite3-shm"}, files
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
            assert _mode(tmp_path / "data") == 0o700
        finally:
            await db.dispose()
        common.resolved_internal_secret()
        assert _mode(tmp_path / "data" / "internal_secret") == 0o600
    finally:
        os.umask(old)


def test_existing_files_from_an_older_release_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = data / f"learn_scorm.sqlite3{suffix}"
        path.write_bytes(b"")
        path.chmod(0o644)
    CommonSettings(data_dir=data, postgres_url=None, amqp_url=None).database_url("scorm")
    assert {p.name: _mode(p) for p in data.iterdir()} == {p.name: 0o600 for p in data.iterdir()}
