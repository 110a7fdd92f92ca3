"""Gateway overhead: GET of one course through the gateway, directly to the service, and through nginx.

Three separate processes, as deployed: the service (the real catalog, reading the course from PostgreSQL; a
minimal aiohttp backend doing one PostgreSQL read if the catalog cannot serve the course), the gateway, and nginx
configured as a plain reverse proxy (keep-alive upstream pool) in front of the same service. Load comes from
``wrk`` (C, so the client costs little CPU); the same concurrency is used for all three. Targets (issue 3):
added p50 ≤ 1 ms at c=1, and gateway throughput ≥ 0.7× direct at c=32.

``python -m bench.bench_gateway`` prints the markdown; ``... backend --port N`` runs the fallback backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

PG = os.environ.get("LEARN_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(8)
DURATION = int(os.environ.get("BENCH_GATEWAY_SECONDS", "6"))
CONCURRENCY = (1, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        **(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2):
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str, concurrency: int, headers: dict[str, str], seconds: int = DURATION) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50_ms": _ms(lat["50"]), "p99_ms": _ms(lat["99"]), "rps": rps,
            "non_2xx": int(errors.group(1)) if errors else 0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream service {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Stack:
    """The processes under test; stopped and cleaned up whatever happens."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        self.token = secrets.token_hex(4)
        self.secret = secrets.token_urlsafe(24)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ, "LEARN_POSTGRES_URL": PG, "LEARN_DATABASE_PREFIX": f"bench{self.token}_",
            "LEARN_DATA_DIR": str(self.tmp / "data"), "LEARN_INTERNAL_SECRET": self.secret,
            "LEARN_ADMIN_TOKEN": ADMIN_TOKEN, "LEARN_LOG_LEVEL": "warning", "LEARN_AMQP_URL": "",
            "LEARN_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "LEARN_GATEWAY_RATE_LIMIT_BURST": "1000000",
            "PYTHONPATH": str(ROOT),
        }
        self.env.pop("LEARN_AMQP_URL")

    def start(self, args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"proc{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(args, env={**self.env, **(extra_env or {})}, stdout=log, stderr=log, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)
        import asyncio

        from shared.config import CommonSettings
        from shared.db import drop_database

        common = CommonSettings(postgres_url=PG, database_prefix=f"bench{self.token}_")
        for service in ("gateway", "catalog", "bench"):
            with contextlib.suppress(Exception):
                asyncio.run(drop_database(common.database_url(service)))
        shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return float(total)


def run() -> dict[str, Any]:
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        raise RuntimeError("needs wrk and nginx (Debian packages wrk, nginx)")
    stack = Stack()
    try:
        return _run(stack)
    finally:
        stack.close()


def _run(stack: Stack) -> dict[str, Any]:
    backend_port, gateway_port, nginx_port = free_port(), free_port(), free_port()
    backend = stack.start([PYTHON, "-m", "services.catalog", "serve", "--port", str(backend_port)])
    workers = int(os.environ.get("BENCH_GATEWAY_WORKERS", "2"))
    gateway = stack.start([PYTHON, "-m", "services.gateway", "serve", "--port", str(gateway_port),
                           "--content-port", "0", "--workers", str(workers)],  # the API only: no content listener
                          {"LEARN_GATEWAY_CATALOG_URL": f"http://127.0.0.1:{backend_port}"})
    wait_http(f"http://127.0.0.1:{backend_port}/healthz")
    wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
    gw = f"http://127.0.0.1:{gateway_port}"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    status, tenant = http("POST", gw + "/admin/api/v1/tenants", {"slug": "bench", "name": "Bench", "plan": "pro"},
                          admin)
    assert status == 201, tenant
    status, key = http("POST", gw + "/admin/api/v1/tenants/bench/api-keys",
                       {"name": "bench", "scopes": ["learn:read", "learn:write"]}, admin)
    assert status == 201, key
    auth = {"Authorization": "Bearer " + key["data"]["key"]}
    status, course = http("POST", gw + "/api/v1/learn/courses", {
        "slug": "bench-course", "title": "Benchmark course", "summary": "A course read by the gateway benchmark.",
        "credit_hours": 2.5, "credit_kind": "CEU"}, auth)
    backend_kind = "catalog service (GET /api/v1/learn/courses/{id}: one PostgreSQL read)"
    if status in (200, 201):
        path = f"/api/v1/learn/courses/{course['data']['id']}"
    else:  # the catalog cannot serve it: a minimal backend doing one PostgreSQL read instead
        stack.stop(backend)
        backend = stack.start([PYTHON, "-m", "bench.bench_gateway", "backend", "--port", str(backend_port)])
        wait_http(f"http://127.0.0.1:{backend_port}/healthz")
        path = "/api/v1/learn/courses/1"
        backend_kind = "minimal aiohttp backend (one PostgreSQL row read per request); the catalog was not ready"
    direct_headers = {"X-Learn-Internal": stack.secret, "X-Learn-Tenant-Id": str(tenant["data"]["id"]),
                      "X-Learn-Tenant": "bench", "X-Learn-Scopes": "learn:read learn:write"}
    status, _ = http("GET", f"http://127.0.0.1:{backend_port}{path}", headers=direct_headers)
    assert status == 200, f"direct GET {path}: {status}"
    status, sample = http("GET", gw + path, headers=auth)
    assert status == 200, f"gateway GET {path}: {status}"
    conf = stack.tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=stack.tmp, backend=backend_port, port=nginx_port))
    stack.start(["nginx", "-c", str(conf), "-p", str(stack.tmp)])
    wait_http(f"http://127.0.0.1:{nginx_port}/healthz")

    targets = {
        "direct": (f"http://127.0.0.1:{backend_port}{path}", direct_headers),
        "gateway": (gw + path, auth),
        "nginx": (f"http://127.0.0.1:{nginx_port}{path}", direct_headers),
    }
    for url, headers in targets.values():
        wrk(url, 8, headers, seconds=2)  # warm caches, pools and the JIT-less interpreter's allocator
    results: dict[str, dict[str, dict[str, float]]] = {}
    for concurrency in CONCURRENCY:
        for name, (url, headers) in targets.items():
            pids = {"gateway": gateway.pid, "backend": backend.pid}
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            measured = wrk(url, concurrency, headers)
            after = {k: cpu_seconds(p) for k, p in pids.items()}
            requests = measured["rps"] * DURATION
            for k in pids:
                measured[f"{k}_cpu_ms_per_req"] = round((after[k] - before[k]) * 1000 / requests, 3) if requests else 0
            results.setdefault(f"c{concurrency}", {})[name] = measured
    c1, c32 = results["c1"], results["c32"]
    summary = {
        "added_p50_ms_c1": round(c1["gateway"]["p50_ms"] - c1["direct"]["p50_ms"], 3),
        "nginx_added_p50_ms_c1": round(c1["nginx"]["p50_ms"] - c1["direct"]["p50_ms"], 3),
        "throughput_vs_direct_c32": round(c32["gateway"]["rps"] / c32["direct"]["rps"], 3),
        "throughput_vs_nginx_c32": round(c32["gateway"]["rps"] / c32["nginx"]["rps"], 3),
        "nginx_vs_direct_c32": round(c32["nginx"]["rps"] / c32["direct"]["rps"], 3),
    }
    summary["target_added_p50"] = summary["added_p50_ms_c1"] <= 1.0
    summary["target_throughput"] = summary["throughput_vs_direct_c32"] >= 0.7
    return {"backend": backend_kind, "path": "/api/v1/learn/courses/{id}", "gateway_workers": workers,
            "response_bytes": len(json.dumps(sample)), "seconds_per_run": DURATION, "results": results,
            "summary": summary}


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"`GET /api/v1/learn/courses/{{id}}` ({result['response_bytes']} bytes) against the "
        f"{result['backend']}; gateway workers: {result['gateway_workers']}; wrk, {result['seconds_per_run']} s "
        "per run, one thread. nginx: one worker, keep-alive upstream pool.",
        "",
        "| concurrency | path | p50 ms | p99 ms | req/s | gateway CPU ms/req | service CPU ms/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for conc, rows in result["results"].items():
        for name, r in rows.items():
            gw_cpu = r["gateway_cpu_ms_per_req"] if name == "gateway" else "-"
            lines.append(f"| {conc[1:]} | {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['rps']:.0f} | "
                         f"{gw_cpu} | {r['backend_cpu_ms_per_req']} |")
    ok = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"- Added p50 at c=1: gateway **{s['added_p50_ms_c1']} ms** (target ≤ 1 ms: {ok[s['target_added_p50']]}), "
        f"nginx {s['nginx_added_p50_ms_c1']} ms.",
        f"- Throughput at c=32: gateway **{s['throughput_vs_direct_c32']}× direct** (target ≥ 0.7×: "
        f"{ok[s['target_throughput']]}), {s['throughput_vs_nginx_c32']}× nginx; nginx {s['nginx_vs_direct_c32']}× "
        "direct.",
    ]
    return "\n".join(lines)


# --- the fallback backend ----------------------------------------------------------------------------------


def backend_main(port: int) -> None:
    """A minimal service: the internal credential check and one PostgreSQL read per request."""
    import asyncpg
    from aiohttp import web

    from shared.cli import install_uvloop

    secret = os.environ["LEARN_INTERNAL_SECRET"]
    dsn = PG.rstrip("/") + "/postgres"

    async def startup(app: web.Application) -> None:
        app["pool"] = pool = await asyncpg.create_pool(dsn, min_size=4, max_size=16)
        await pool.execute("CREATE TEMP TABLE IF NOT EXISTS x (id int)")  # warm-up round trip

    async def course(request: web.Request) -> web.Response:
        if request.headers.get("X-Learn-Internal") != secret:
            return web.json_response({"error": {"code": "invalid_api_key"}}, status=401)
        row = await request.app["pool"].fetchrow(
            "SELECT $1::bigint AS id, 'bench-course' AS slug, 'Benchmark course' AS title, now() AS created_at",
            int(request.match_info["id"]))
        data = {**dict(row), "created_at": row["created_at"].isoformat(), "subtitle": None,
                "summary": "A course read by the gateway benchmark.", "language": "en", "status": "published",
                "completion_rule": "all_required", "credit": {"hours": 2.5, "kind": "CEU"}}
        return web.json_response({"data": data, "next_cursor": None, "request_id": "req_" + secrets.token_hex(12)})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.on_startup.append(startup)
    app.router.add_get("/healthz", health)
    app.router.add_get("/api/v1/learn/courses/{id}", course)
    install_uvloop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    if sys.argv[1:2] == ["backend"]:
        backend_main(int(sys.argv[sys.argv.index("--port") + 1]))
    else:
        sys.stdout.write(markdown(run()) + "\n")
