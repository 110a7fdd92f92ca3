"""A TypeScript client: types generated with openapi-typescript from the served document, and an example that walks
the seed flow with openapi-fetch (tests/openapi/typescript/example.ts), compiled with ``tsc --strict`` (issue 17).

The npm packages are pinned (package-lock.json) and installed once into ``~/.cache/mobieuslearn/openapi-ts``
(``npm ci``, about 25 s; outside the repository so that CI's fresh clones reuse it; ``LEARN_OPENAPI_TS_CACHE``
moves it), then reused while the lock file is unchanged: the test takes about 15-20 s with the cache. The example's
``@ts-expect-error`` lines make the compile fail if a nullable field (``scorm_version``, ``credit.hours``) were
typed as always present.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from services.gateway.openapi import build_document

SOURCE = Path(__file__).with_name("typescript")
CACHE = Path(os.environ.get("LEARN_OPENAPI_TS_CACHE") or Path.home() / ".cache" / "mobieuslearn" / "openapi-ts")


def _npm_ci() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as guard:  # runs from several checkouts share the cache
        fcntl.flock(guard, fcntl.LOCK_EX)
        _install()


def _install() -> None:
    lock = (SOURCE / "package-lock.json").read_bytes()
    stamp = CACHE / "node_modules" / ".package-lock.json.installed"
    if stamp.exists() and stamp.read_bytes() == lock:
        return
    for name in ("package.json", "package-lock.json"):
        shutil.copy(SOURCE / name, CACHE / name)
    npm = shutil.which("npm")
    assert npm, "npm is needed (Node.js 18+)"
    out = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CACHE,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    stamp.write_bytes(lock)


def test_a_typescript_client_generated_with_openapi_typescript_compiles_strict(tmp_path):
    _npm_ci()
    # under the cache, so that the example resolves openapi-fetch from its node_modules; one per run
    with tempfile.TemporaryDirectory(prefix="work-", dir=CACHE) as name:
        _compile(Path(name), tmp_path)


def _compile(work: Path, tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(build_document()))
    bin_dir = CACHE / "node_modules" / ".bin"
    out = subprocess.run([str(bin_dir / "openapi-typescript"), str(spec), "-o", str(work / "learn-api.d.ts")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warn" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr
    for name in ("example.ts", "tsconfig.json"):
        shutil.copy(SOURCE / name, work / name)
    out = subprocess.run([str(bin_dir / "tsc"), "-p", str(work / "tsconfig.json")], capture_output=True, text=True,
                         timeout=180, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads((work / "tsconfig.json").read_text())["compilerOptions"]["strict"] is True
