"""A TypeScript client: types generated with openapi-typescript from the served document, and an example that walks
the seed flow with openapi-fetch (tests/openapi/typescript/example.ts), compiled with ``tsc --strict`` (issue 17).

The npm packages are pinned (package-lock.json) and installed once into ``.cache/openapi-ts`` (``npm ci``, about
25 s; then reused while the lock file is unchanged): the test takes about 15-20 s with the cache. The example's
``@ts-expect-error`` lines make the compile fail if a nullable field (``scorm_version``, ``credit.hours``) were
typed as always present.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from services.gateway.openapi import build_document

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("typescript")
CACHE = REPO / ".cache" / "openapi-ts"


def _npm_ci() -> None:
    lock = (SOURCE / "package-lock.json").read_bytes()
    stamp = CACHE / "node_modules" / ".package-lock.json.installed"
    if stamp.exists() and stamp.read_bytes() == lock:
        return
    CACHE.mkdir(parents=True, exist_ok=True)
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
    work = CACHE / "work"  # under the cache, so that the example resolves openapi-fetch from its node_modules
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
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
