"""SCORM upload + import through the public API beside the admin path, in the same run (issue 20).

On the multi-process cluster (real PostgreSQL and RabbitMQ): the same synthetic package (bench_scorm_import's
200 MB / 5,000 files by default; ``BENCH_SCORM_API_MB`` makes it smaller) is uploaded ``ROUNDS`` times each way —
``POST /api/v1/learn/scorm-packages`` with an API key, the admin API upload, and a resumable (tus) upload in
``CHUNK`` pieces — and timed from the first byte sent to ``ready``: upload time, import time and MB/s for each.
The client streams the file from disk (never the whole zip in memory).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.bench_load import unlimited_cluster
from bench.bench_scorm_import import build_package
from tests.support.cluster import Cluster

ROUNDS = int(os.environ.get("BENCH_SCORM_API_ROUNDS", "2"))
CHUNK = 16 * 1024 * 1024  # bytes per tus PATCH
PACKAGES = "/api/v1/learn/scorm-packages"


async def _file(path: Path, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
    end = await asyncio.to_thread(os.path.getsize, path) if end is None else end
    with path.open("rb") as handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(1024 * 1024, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


async def _ready(c: Cluster, key: str, package_id: int) -> None:
    async def done() -> bool | None:
        status, body = await c.api(key, "GET", f"/scorm-packages/{package_id}")
        assert status == 200, body
        if body["data"]["status"] == "failed":
            raise RuntimeError(body["data"]["error"])
        return True if body["data"]["status"] == "ready" else None

    await c.eventually(done, timeout=900, message=f"package {package_id} ready")


async def _api(c: Cluster, key: str, slug: str, path: Path) -> int:
    assert c.http is not None
    async with c.http.post(c.gateway_url + PACKAGES, data=_file(path), headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/zip"}) as resp:
        body = await resp.json()
        assert resp.status == 202, body
        return int(body["data"]["id"])


async def _admin(c: Cluster, key: str, slug: str, path: Path) -> int:
    assert c.http is not None
    async with c.http.post(f"{c.gateway_url}/admin/api/v1/tenants/{slug}/scorm-packages", data=_file(path),
                           headers={"Authorization": f"Bearer {c.admin_token}",
                                    "Content-Type": "application/zip"}) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return int(body["data"]["id"])


async def _tus(c: Cluster, key: str, slug: str, path: Path) -> int:
    assert c.http is not None
    size = await asyncio.to_thread(os.path.getsize, path)
    auth = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    async with c.http.post(c.gateway_url + "/api/v1/learn/scorm-uploads",
                           headers={**auth, "Upload-Length": str(size)}) as resp:
        assert resp.status == 201, await resp.text()
        location = resp.headers["Location"]
    offset = 0
    package = ""
    while offset < size:
        end = min(size, offset + CHUNK)
        async with c.http.patch(c.gateway_url + location, data=_file(path, offset, end), headers={
                **auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset),
                "Content-Length": str(end - offset)}) as resp:
            assert resp.status == 204, await resp.text()
            offset = int(resp.headers["Upload-Offset"])
            package = resp.headers.get("Location", package)
    return int(package.rsplit("/", 1)[1])


async def _measure(c: Cluster, key: str, slug: str, path: Path, send: Any) -> dict[str, float]:
    started = time.perf_counter()
    package_id = await send(c, key, slug, path)
    uploaded = time.perf_counter()
    await _ready(c, key, package_id)
    ended = time.perf_counter()
    return {"upload_s": uploaded - started, "import_s": ended - uploaded, "total_s": ended - started}


async def _run(workdir: Path) -> dict[str, Any]:
    path = workdir / "package.zip"
    await asyncio.to_thread(build_package, path)
    size = await asyncio.to_thread(os.path.getsize, path)
    ways = {"public API (`POST /scorm-packages`)": _api, "admin API upload": _admin,
            "resumable (tus, 16 MB PATCHes)": _tus}
    async with unlimited_cluster("bench-scorm-api-") as c:
        slug = "benchscorm"
        key = await c.tenant_with_key(slug)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
        for _ in range(ROUNDS):  # interleaved, so a drift of the machine touches every path alike
            for name, send in ways.items():
                runs[name].append(await _measure(c, key, slug, path, send))
    result: dict[str, Any] = {"zip_bytes": size, "rounds": ROUNDS, "paths": {}}
    for name, measured in runs.items():
        total = statistics.median(r["total_s"] for r in measured)
        result["paths"][name] = {
            "upload_s": statistics.median(r["upload_s"] for r in measured),
            "import_s": statistics.median(r["import_s"] for r in measured),
            "total_s": total, "mb_per_s": size / 1e6 / total,
        }
    return result


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-scorm-api-", dir=os.environ.get("TMPDIR")) as tmp:
        return asyncio.run(_run(Path(tmp)))


def markdown(result: dict[str, Any]) -> str:
    lines = [f"The same {result['zip_bytes'] / 1e6:.0f} MB zip, {result['rounds']} rounds each way, interleaved; "
             "medians. Upload = first byte sent to the answer; import = answer to `ready` (the client polls).",
             "", "| path | upload s | import s | total s | MB/s (total) |", "|---|---|---|---|---|"]
    for name, p in result["paths"].items():
        lines.append(f"| {name} | {p['upload_s']:.2f} | {p['import_s']:.2f} | {p['total_s']:.2f} | "
                     f"{p['mb_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown(run()))
