"""SCORM package import throughput and memory: a synthetic 200 MB, 5,000-file package into both blob stores.

The package mixes what real courses hold: 4,990 small text-like pages and scripts (deflated) and 10 media files of
10 MiB (stored, as zip tools store already-compressed video). It is imported, with every safety check on, into

- a FilesystemBlobStore in a temporary folder, and
- a DatabaseBlobStore in a throwaway PostgreSQL database ``bench_scorm_<random>`` (dropped afterwards).

Throughput is uncompressed MB stored per second of wall time. Peak RSS is sampled every 10 ms during each import
(target ≤ 150 MB: memory must not grow with the package). Each import runs standalone in its own process
(``--import-one``), so the package build and the other import never show in its figures.

    .venv/bin/python -m bench.bench_scorm_import
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy.engine import make_url

from services.scorm.manifest.zip_safety import ImportResult, import_package
from shared.blobstore import BlobStore, DatabaseBlobStore, FilesystemBlobStore
from shared.db import Database, drop_database, ensure_database
from shared.logging import configure_logging

PG = os.environ.get("LEARN_TEST_POSTGRES_URL") or os.environ.get("LEARN_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432"
MB = 1_000_000
MiB = 1024 * 1024
RSS_TARGET_MB = 150
ROOT = Path(__file__).resolve().parents[1]
SMALL_FILES = 4_990
MEDIA_FILES = 10
MEDIA_BYTES = 10 * MiB
SCOS = 50


def build_package(path: Path, seed: int = 1) -> int:
    """Write the synthetic package, streaming; returns its uncompressed size in bytes."""
    rng = random.Random(seed)
    words = [w.encode() for w in "golf par birdie eagle bogey handicap green fairway bunker tee putt chip".split()]
    pool = b" ".join(rng.choice(words) + str(rng.randrange(100_000)).encode() for _ in range(200_000))
    small_total = 200 * MB - MEDIA_FILES * MEDIA_BYTES
    small_size = small_total // SMALL_FILES
    total = 0
    manifest = _manifest()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("imsmanifest.xml", manifest)
        total += len(manifest)
        for n in range(SMALL_FILES):
            start = rng.randrange(len(pool) - small_size)
            data = pool[start : start + small_size]
            archive.writestr(f"sco{n % SCOS}/page{n}.html", data)
            total += len(data)
        for n in range(MEDIA_FILES):
            info = zipfile.ZipInfo(f"media/video{n}.mp4", date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=False) as target:
                for _ in range(MEDIA_BYTES // MiB):
                    target.write(rng.randbytes(MiB))
            total += MEDIA_BYTES
    return total


def _manifest() -> bytes:
    items = "".join(
        f'<item identifier="i{n}" identifierref="r{n}"><title>Lesson {n}</title></item>' for n in range(SCOS)
    )
    resources = "".join(
        f'<resource identifier="r{n}" type="webcontent" adlcp:scormtype="sco" href="sco{n}/page{n}.html"/>'
        for n in range(SCOS)
    )
    return (
        '<?xml version="1.0"?><manifest identifier="bench" '
        'xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2" xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">'
        '<metadata><schemaversion>1.2</schemaversion></metadata><organizations default="o">'
        f'<organization identifier="o"><title>Bench</title>{items}</organization></organizations>'
        f"<resources>{resources}</resources></manifest>"
    ).encode()


class RssSampler:
    """Peak resident set size of this process, sampled on a thread while the import runs."""

    def __init__(self, interval: float = 0.01) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


async def _measure(
    label: str, zip_path: Path, store_factory: Callable[[], Awaitable[tuple[BlobStore, Callable[[], Awaitable[None]]]]]
) -> dict[str, Any]:
    store, close = await store_factory()
    gc.collect()
    try:
        baseline = psutil.Process().memory_info().rss
        with RssSampler() as sampler:
            started = time.perf_counter()
            result: ImportResult = await import_package(zip_path, store, "scorm/bench")
            seconds = time.perf_counter() - started
    finally:
        await close()
    return {
        "store": label,
        "files": len(result.files),
        "bytes": result.total_bytes,
        "seconds": seconds,
        "mb_per_s": result.total_bytes / MB / seconds,
        "peak_rss_mb": sampler.peak / MB,
        "rss_growth_mb": (sampler.peak - baseline) / MB,
    }


async def _store(label: str, workdir: Path) -> tuple[BlobStore, Callable[[], Awaitable[None]]]:
    if label == "filesystem":
        async def close_nothing() -> None:
            return None

        return FilesystemBlobStore(workdir / "blobs"), close_nothing
    database_url = make_url(PG).set(drivername="postgresql+asyncpg", database=f"bench_scorm_{secrets.token_hex(4)}")
    rendered = database_url.render_as_string(hide_password=False)
    await ensure_database(rendered)
    database = Database(rendered, pool_size=2)
    store = DatabaseBlobStore(database.engine)
    await store.create_tables()

    async def close() -> None:
        await database.dispose()
        await drop_database(rendered)

    return store, close


def import_standalone(label: str, zip_path: Path, workdir: Path) -> dict[str, Any]:
    """One import in a fresh interpreter (``--import-one``): its peak RSS is the import's own, not the bench's."""
    out = subprocess.run([sys.executable, "-m", "bench.bench_scorm_import", "--import-one", label, str(zip_path),
                          str(workdir)], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def _run(workdir: Path) -> dict[str, Any]:
    zip_path = workdir / "package.zip"
    started = time.perf_counter()
    uncompressed = build_package(zip_path)
    build_seconds = time.perf_counter() - started
    results = [await asyncio.to_thread(import_standalone, label, zip_path, workdir)
               for label in ("filesystem", "postgresql")]
    return {
        "package": {
            "files": SMALL_FILES + MEDIA_FILES + 1,
            "uncompressed_mb": uncompressed / MB,
            "zip_mb": zip_path.stat().st_size / MB,
            "build_seconds": build_seconds,
        },
        "imports": results,
        "rss_target_mb": RSS_TARGET_MB,
    }


def run() -> dict[str, Any]:
    configure_logging("bench", "warning")
    with tempfile.TemporaryDirectory(prefix="bench_scorm_") as workdir:
        return asyncio.run(_run(Path(workdir)))


def markdown(result: dict[str, Any]) -> str:
    package = result["package"]
    lines = [
        "| store | files | MB stored | seconds | MB/s | peak RSS | RSS growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["imports"]:
        lines.append(
            f"| {row['store']} | {row['files']:,} | {row['bytes'] / MB:.0f} | {row['seconds']:.1f} "
            f"| {row['mb_per_s']:.0f} | {row['peak_rss_mb']:.0f} MB | {row['rss_growth_mb']:+.0f} MB |"
        )
    worst = max(row["peak_rss_mb"] for row in result["imports"])
    verdict = "holds" if worst <= result["rss_target_mb"] else "misses"
    lines += [
        "",
        f"Package: {package['files']:,} files, {package['uncompressed_mb']:.0f} MB unzipped, "
        f"{package['zip_mb']:.0f} MB zipped (built in {package['build_seconds']:.1f} s). "
        f"Peak RSS target ≤ {result['rss_target_mb']} MB: {verdict}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--import-one":
        configure_logging("bench", "warning")
        label, zip_arg, work_arg = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        print(json.dumps(asyncio.run(_measure(label, zip_arg, lambda: _store(label, work_arg)))))
    else:
        print(markdown(run()))
