"""Hot routes against their floor (issue 21): CPU per request of gateway + services vs a minimal handler.

The floor is a minimal aiohttp + asyncpg server (``python -m bench.bench_floors --serve PORT DSN``, its own
process, its own throwaway database) with one handler per hot route that runs the SQL the route needs and nothing
else, read from the services' stores (services/catalog/store.py, services/enrollment/enrollments.py and
attempts.py, services/certificates/api_certificates.py):

- get course: one ``SELECT`` of the course row by (tenant_id, id), JSON out;
- list courses: the keyset page ``WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2``;
- enroll: in one transaction, the facts query (course ⋈ directory user ⋈ live enrollment), an
  ``INSERT … ON CONFLICT DO NOTHING RETURNING`` of the enrollment, one outbox row and ``NOTIFY``;
- runtime commit: in one transaction, ``SELECT … FOR UPDATE`` of the enrollment, the attempt's CMI update
  ``RETURNING``, one outbox row and ``NOTIFY``;
- verify: one ``SELECT`` of the certificate by verification id.

The same number of requests at the same concurrency goes (a) through the gateway to the real services of the
multi-process cluster, and (b) to the floor. CPU (less what the processes burn idle, measured for a second
just before) is read from /proc (psutil) for the gateway's process tree and
every service process (so the relay and consumers that a write sets off are counted with the write; the floor
has no relay: its outbox rows are written, not published), and for the floor's process.
Targets: ≤ 2× the floor for reads, ≤ 2.5× for writes.

    .venv/bin/python -m bench bench_floors
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("LEARN_TEST_POSTGRES_URL") or os.environ.get("LEARN_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432"
ROUTES = ["get course", "list courses", "enroll", "runtime commit", "verify"]
WRITES = {"enroll", "runtime commit"}
TARGET = {"read": 2.0, "write": 2.5}
TENANT = 1

SCHEMA = """
CREATE TABLE courses (id bigserial PRIMARY KEY, tenant_id int NOT NULL, slug text NOT NULL, title text NOT NULL,
  description text NOT NULL DEFAULT '', status text NOT NULL, owner_id int, latest_version int, revision int NOT NULL
  DEFAULT 1, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE UNIQUE INDEX ON courses (tenant_id, id);
CREATE TABLE directory_users (tenant_id int, user_id int, name text, PRIMARY KEY (tenant_id, user_id));
CREATE TABLE enrollments (id bigserial PRIMARY KEY, tenant_id int NOT NULL, user_id int NOT NULL, course_id int NOT
  NULL, status text NOT NULL, source text NOT NULL, course_version int, expires_at timestamptz, created_at timestamptz
  NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE UNIQUE INDEX ON enrollments (tenant_id, user_id, course_id) WHERE status IN ('active', 'in_progress');
CREATE TABLE attempts (id bigserial PRIMARY KEY, enrollment_id bigint NOT NULL, activity_id int NOT NULL,
  cmi jsonb NOT NULL DEFAULT '{}', completion_status text, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE certificates (verification_id text PRIMARY KEY, tenant_id int NOT NULL, enrollment_id bigint NOT NULL,
  learner_name text NOT NULL, course_title text NOT NULL, issued_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz);
CREATE TABLE outbox (id bigserial PRIMARY KEY, event_id varchar(64) NOT NULL UNIQUE, routing_key varchar(255) NOT
  NULL, body bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""

GET_COURSE = "SELECT * FROM courses WHERE tenant_id = $1 AND id = $2"
LIST_COURSES = "SELECT * FROM courses WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2"
ENROLL_FACTS = """SELECT c.status AS course_status, c.latest_version, u.user_id AS known, e.id, e.status, e.expires_at
FROM courses c LEFT JOIN directory_users u ON u.tenant_id = c.tenant_id AND u.user_id = $2
LEFT JOIN enrollments e ON e.tenant_id = c.tenant_id AND e.user_id = $2 AND e.course_id = c.id
  AND e.status IN ('active', 'in_progress')
WHERE c.tenant_id = $1 AND c.id = $3"""
ENROLL_INSERT = """INSERT INTO enrollments (tenant_id, user_id, course_id, status, source, course_version)
VALUES ($1, $2, $3, 'active', 'api', $4) ON CONFLICT DO NOTHING RETURNING *"""
LOCK_ENROLLMENT = "SELECT * FROM enrollments WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
APPLY_COMMIT = """UPDATE attempts SET cmi = cmi || $2::jsonb, completion_status = $3, updated_at = now()
WHERE id = $1 RETURNING id, enrollment_id, activity_id, completion_status, updated_at"""
OUTBOX_INSERT = "INSERT INTO outbox (event_id, routing_key, body) VALUES ($1, $2, $3)"
VERIFY = "SELECT * FROM certificates WHERE verification_id = $1"


def _event(event_type: str, data: dict[str, Any]) -> tuple[str, str, bytes]:
    event_id = str(uuid.uuid4())
    body = json.dumps({"specversion": "1.0", "id": event_id, "type": f"learn.{event_type}", "source": "floor",
                       "tenant": TENANT, "time": time.time(), "data": data}, default=str).encode()
    return event_id, f"{TENANT}.{event_type}", body


def _row(record: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items()}


# ------------------------------------------------------------------------------------------------- the floor server


async def serve(port: int, dsn: str) -> None:  # pragma: no cover - runs in the floor process
    import asyncpg
    from aiohttp import web

    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=8)

    async def get_course(request: web.Request) -> web.Response:
        row = await pool.fetchrow(GET_COURSE, TENANT, int(request.match_info["id"]))
        if row is None:
            raise web.HTTPNotFound()
        return web.json_response(_row(row))

    async def list_courses(request: web.Request) -> web.Response:
        rows = await pool.fetch(LIST_COURSES, TENANT, int(request.query.get("limit", "20")))
        return web.json_response({"items": [_row(r) for r in rows]})

    async def enroll(request: web.Request) -> web.Response:
        body = await request.json()
        user_id, course_id = int(body["user_id"]), int(body["course_id"])
        async with pool.acquire() as conn, conn.transaction():
            facts = await conn.fetchrow(ENROLL_FACTS, TENANT, user_id, course_id)
            if facts is None or facts["known"] is None:
                raise web.HTTPBadRequest()
            row = await conn.fetchrow(ENROLL_INSERT, TENANT, user_id, course_id, facts["latest_version"])
            if row is None:
                raise web.HTTPConflict()
            resource = _row(row)
            await conn.execute(OUTBOX_INSERT, *_event("enrollment.created", resource))
            await conn.execute("NOTIFY learn_outbox")
        return web.json_response(resource, status=201)

    async def commit(request: web.Request) -> web.Response:
        body = await request.json()
        attempt_id, enrollment_id = int(request.match_info["attempt"]), int(request.match_info["enrollment"])
        cmi = body["cmi"]
        async with pool.acquire() as conn, conn.transaction():
            if await conn.fetchrow(LOCK_ENROLLMENT, enrollment_id, TENANT) is None:
                raise web.HTTPNotFound()
            row = await conn.fetchrow(APPLY_COMMIT, attempt_id, json.dumps(cmi), cmi.get("cmi.completion_status"))
            result = _row(row)
            await conn.execute(OUTBOX_INSERT, *_event("attempt.committed", result))
            await conn.execute("NOTIFY learn_outbox")
        return web.json_response({"result": "true", "attempt": result})

    async def verify(request: web.Request) -> web.Response:
        row = await pool.fetchrow(VERIFY, request.match_info["vid"])
        if row is None:
            raise web.HTTPNotFound()
        return web.json_response(_row(row))

    app = web.Application()
    app.router.add_get("/courses/{id}", get_course)
    app.router.add_get("/courses", list_courses)
    app.router.add_post("/enrollments", enroll)
    app.router.add_post("/runtime/{enrollment}/{attempt}/commit", commit)
    app.router.add_get("/verify/{vid}", verify)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def proxy(port: int, upstream: str) -> None:  # pragma: no cover - runs in the proxy process
    """A minimal reverse proxy: method, path, query, body and content type forwarded over a keep-alive pool."""
    import aiohttp
    from aiohttp import web

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), auto_decompress=False)

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.request(request.method, upstream + request.path_qs, data=body or None,
                                   headers={"Content-Type": request.content_type}) as r:
            return web.Response(body=await r.read(), status=r.status, content_type=r.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _seed_floor(dsn: str, courses: int, users: int, learners: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.executemany("INSERT INTO courses (tenant_id, slug, title, description, status, latest_version) "
                               "VALUES ($1, $2, $3, $4, 'published', 1)",
                               [(TENANT, f"c{i}", f"Course {i}", "A course " * 10, ) for i in range(courses)])
        await conn.executemany("INSERT INTO directory_users VALUES ($1, $2, $3)",
                               [(TENANT, 100_001 + i, f"Learner {i}") for i in range(users)])
        for i in range(learners):
            eid = await conn.fetchval("INSERT INTO enrollments (tenant_id, user_id, course_id, status, source) "
                                      "VALUES ($1, $2, 1, 'in_progress', 'api') RETURNING id", TENANT, 200_001 + i)
            await conn.execute("INSERT INTO attempts (enrollment_id, activity_id) VALUES ($1, 1)", eid)
        await conn.executemany("INSERT INTO certificates (verification_id, tenant_id, enrollment_id, learner_name, "
                               "course_title) VALUES ($1, $2, 1, 'Learner', 'Course 1')",
                               [(f"v{i}", TENANT) for i in range(20)])
    finally:
        await conn.close()


# ------------------------------------------------------------------------------------------------- measuring


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


async def drive(call: Callable[[int], Awaitable[int]], n: int, concurrency: int) -> tuple[int, float]:
    """Run ``call(i)`` for i < n with ``concurrency`` in flight; returns (errors, wall seconds)."""
    counter = iter(range(n))
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            status = await call(i)
            if not 200 <= status < 300:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors, time.perf_counter() - started


async def measure_route(call: Callable[[int], Awaitable[int]], groups: dict[str, list[int]], n: int,
                        concurrency: int) -> dict[str, Any]:
    """CPU per request of every process group (``groups``: name → pids, children included), idle CPU subtracted."""
    await drive(call, max(10, n // 10), concurrency)  # warm-up (connections, caches, JIT-free Python paths)
    await asyncio.sleep(0.5)  # let the writes' relay/consumer work of the warm-up settle before the clock starts
    # What the processes burn doing nothing (timers, polls, metrics) is not the route's: measured, then subtracted.
    idle_start, idle_cpu = time.perf_counter(), {name: tree_cpu(pids) for name, pids in groups.items()}
    await asyncio.sleep(1.0)
    idle_seconds = time.perf_counter() - idle_start
    idle_rate = {name: (tree_cpu(pids) - idle_cpu[name]) / idle_seconds for name, pids in groups.items()}
    before, started = {name: tree_cpu(pids) for name, pids in groups.items()}, time.perf_counter()
    errors, seconds = await drive(call, n, concurrency)
    await asyncio.sleep(0.5)  # the events the writes set off are handled within this (p99 commit → effect)
    elapsed = time.perf_counter() - started
    by_process = {name: max(tree_cpu(pids) - before[name] - idle_rate[name] * elapsed, 0.0) * 1000 / n
                  for name, pids in groups.items()}
    return {"n": n, "errors": errors, "seconds": seconds, "cpu_ms_per_req": sum(by_process.values()),
            "by_process": by_process, "idle_cpu_ms_per_s": sum(idle_rate.values()) * 1000}


async def _floor(n: int, concurrency: int) -> dict[str, Any]:
    import aiohttp
    from sqlalchemy.engine import make_url

    from shared.db import drop_database, ensure_database
    from tests.support.cluster import free_port

    name = f"bench_floor_{secrets.token_hex(4)}"
    dsn = make_url(PG).set(database=name).render_as_string(hide_password=False)
    await ensure_database(make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False))
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        await _seed_floor(dsn, courses=10, users=2 * (n + n // 10) + 100, learners=20)
        proc = subprocess.Popen([sys.executable, "-m", "bench.bench_floors", "--serve", str(port), dsn],  # noqa: ASYNC220
                                stdout=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if b"ready" not in line:
            raise RuntimeError("floor server did not start")
        base = f"http://127.0.0.1:{port}"
        users = list(range(100_001, 100_001 + 2 * (n + n // 10) + 100))
        random.shuffle(users)
        players: asyncio.Queue[int] = asyncio.Queue()
        for i in range(1, 21):
            players.put_nowait(i)
        async with aiohttp.ClientSession() as http:
            async def get(path: str) -> int:
                async with http.get(base + path) as r:
                    await r.read()
                    return r.status

            async def post(path: str, body: dict[str, Any]) -> int:
                async with http.post(base + path, json=body) as r:
                    await r.read()
                    return r.status

            async def commit(i: int) -> int:
                learner = await players.get()
                try:
                    return await post(f"/runtime/{learner}/{learner}/commit", {"cmi": {
                        "cmi.completion_status": "incomplete", "cmi.location": f"page-{i}",
                        "cmi.session_time": "PT5S"}})
                finally:
                    players.put_nowait(learner)

            calls: dict[str, Callable[[int], Awaitable[int]]] = {
                "get course": lambda i: get(f"/courses/{random.randint(1, 10)}"),
                "list courses": lambda i: get("/courses?limit=20"),
                "enroll": lambda i: post("/enrollments", {"user_id": users.pop(), "course_id": 1}),
                "runtime commit": commit,
                "verify": lambda i: get(f"/verify/v{random.randrange(20)}"),
            }
            floor = {route: await measure_route(calls[route], {"floor": [proc.pid]}, n, concurrency)
                     for route in ROUTES}
            # The same floor behind a minimal aiohttp reverse proxy (keep-alive pool, no auth): what one HTTP hop
            # costs in this stack's language and framework, the bound a gateway in front of a service cannot go under.
            proxy_port = free_port()
            proxy = subprocess.Popen([sys.executable, "-m", "bench.bench_floors", "--proxy", str(proxy_port),  # noqa: ASYNC220
                                      base], stdout=subprocess.PIPE, cwd=ROOT)
            try:
                assert proxy.stdout is not None
                if b"ready" not in await asyncio.to_thread(proxy.stdout.readline):
                    raise RuntimeError("floor proxy did not start")
                base = f"http://127.0.0.1:{proxy_port}"
                two_hop = {route: await measure_route(calls[route], {"proxy": [proxy.pid], "floor": [proc.pid]}, n,
                                                      concurrency) for route in ROUTES}
            finally:
                proxy.terminate()
                proxy.wait(10)
            return {"floor": floor, "two_hop": two_hop}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        await drop_database(make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False))


async def _services(n: int, concurrency: int) -> dict[str, Any]:
    from bench.bench_load import prepare, unlimited_cluster

    async with unlimited_cluster("bench-floors-") as c:
        users = (2 * n + n // 10) // 5 + 1  # enroll pairs for the warm-up, the measured pass and the profiled one
        w = await prepare(c, "floorco", courses=5, users=users, progressing=20, to_complete=0, certified=3)
        groups = {name: [s.proc.pid] for name, s in c.services.items() if s.proc is not None}
        players: asyncio.Queue[Any] = asyncio.Queue()
        for learner in w.progressing:
            players.put_nowait(learner)

        async def api(method: str, path: str, **kw: Any) -> int:
            status, _ = await c.api(w.key, method, path, **kw)
            return status

        async def commit(i: int) -> int:
            learner = await players.get()
            try:
                status, _ = await c.request("POST", f"/learn/runtime/{learner.token}/commit", json={"cmi": {
                    "cmi.completion_status": "incomplete", "cmi.location": f"page-{i}",
                    "cmi.session_time": "PT5S"}}, origin=c.content_url)
                return status
            finally:
                players.put_nowait(learner)

        def enroll(i: int) -> Awaitable[int]:
            user_id, course_id = w.enroll_pairs.pop()
            return api("POST", "/enrollments", json={"user_id": user_id, "course_id": course_id})

        calls: dict[str, Callable[[int], Awaitable[int]]] = {
            "get course": lambda i: api("GET", f"/courses/{random.choice(w.course_ids)}"),
            "list courses": lambda i: api("GET", "/courses?limit=20"),
            "enroll": enroll,
            "runtime commit": commit,
            "verify": lambda i: api("GET", f"/certificates/verify/{random.choice(w.verification_ids)}"),
        }
        out: dict[str, Any] = {}
        for route in ROUTES:
            both = await measure_route(calls[route], groups, n, concurrency)
            # A second pass of the same route under py-spy (not counted in the CPU figures above): the processes
            # that spent the most on it, and where.
            busiest = sorted(both["by_process"], key=lambda name: -both["by_process"][name])[:PROFILED]
            both["profile"] = await profile_route(calls[route], {name: groups[name] for name in busiest}, n,
                                                  concurrency)
            out[route] = both
        return out


# ------------------------------------------------------------------------------------------------- profiling

PROFILED = 2  # processes profiled per route: the two that spent the most CPU on it
TOP = 6  # frames reported per list
PY_SPY = Path(sys.executable).with_name("py-spy")


def _frame(raw: str) -> str:
    """``function (path/file.py:line)`` → ``path/file.py:function`` (py-spy's raw format, lines dropped)."""
    name, _, where = raw.rpartition(" (")
    return f"{where.rstrip(')').rsplit(':', 1)[0]}:{name}" if name else raw


def _entry_point(frame: str) -> bool:
    """Frames under every sample of a process (its main, the serve loop): 100 % inclusive, saying nothing."""
    return frame.endswith(":<module>") or frame.startswith("shared/cli.py") or "/__main__.py:" in frame


def top_frames(collapsed: str, top: int = TOP) -> dict[str, Any]:
    """Own-time (leaf) and inclusive top frames of py-spy's collapsed stacks (``a;b;c count`` per line), as shares
    of all samples; inclusive only for this repository's code (services/, shared/), which is what can be changed."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            if frame.startswith(("services/", "shared/")) and not _entry_point(frame):
                inclusive[frame] = inclusive.get(frame, 0) + count

    def share(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, 100.0 * c / total) for frame, c in ranked] if total else []

    return {"samples": total, "own": share(own), "inclusive": share(inclusive)}


async def profile_route(call: Callable[[int], Awaitable[int]], groups: dict[str, list[int]], n: int,
                        concurrency: int) -> dict[str, Any]:
    """Drive ``n`` more requests while py-spy samples every process of ``groups`` (children included) at 250 Hz,
    without pausing them; returns each group's top frames, or why there are none."""
    if not PY_SPY.exists():
        return {"error": f"py-spy is not installed at {PY_SPY} (make install puts it there)"}
    spies: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
    scratch = Path(os.environ.get("TMPDIR", "/tmp"))
    for name, pids in groups.items():
        output = scratch / f"bench-floors-{os.getpid()}-{name}.txt"
        spies[name] = (await asyncio.create_subprocess_exec(
            str(PY_SPY), "record", "--pid", str(pids[0]), "--subprocesses", "--nonblocking", "--format", "raw",
            "--rate", "250", "--output", str(output),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE), output)
    await asyncio.sleep(1.0)  # py-spy attaches
    await drive(call, n, concurrency)
    await asyncio.sleep(0.3)
    result: dict[str, Any] = {}
    for name, (spy, output) in spies.items():
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = await asyncio.wait_for(spy.communicate(), timeout=20)
        except TimeoutError:
            spy.kill()
            _, err = await spy.communicate()
        if output.exists():
            result[name] = top_frames(output.read_text(errors="replace"))
            output.unlink()
        else:
            result[name] = {"error": ((err or b"").decode(errors="replace").strip().splitlines() or ["no output"])[-1]}
    return result


async def _run(n: int, concurrency: int) -> dict[str, Any]:
    floors = await _floor(n, concurrency)
    floor, two_hop = floors["floor"], floors["two_hop"]
    stack = await _services(n, concurrency)
    rows = []
    for route in ROUTES:
        kind = "write" if route in WRITES else "read"
        ratio = stack[route]["cpu_ms_per_req"] / floor[route]["cpu_ms_per_req"]
        rows.append({"route": route, "kind": kind, "floor": floor[route], "two_hop": two_hop[route],
                     "stack": stack[route], "ratio": ratio,
                     "ratio_two_hop": stack[route]["cpu_ms_per_req"] / two_hop[route]["cpu_ms_per_req"],
                     "target": TARGET[kind], "meets": ratio <= TARGET[kind]})
    return {"n": n, "concurrency": concurrency, "routes": rows}


def run(n: int = 400, concurrency: int = 8) -> dict[str, Any]:
    return asyncio.run(_run(n, concurrency))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['n']} requests per route at concurrency {result['concurrency']}, the floor and the real stack "
        "in the same run (module docstring of `bench/bench_floors.py`: the floor runs the routes' SQL in a minimal "
        "aiohttp + asyncpg process; the two-hop floor is the same floor behind a minimal aiohttp reverse proxy, "
        "which is what one HTTP hop costs in this language and framework; the stack is the gateway's process tree "
        "+ every service process, so the relay and consumers a write sets off count with the write).",
        "",
        "| route | floor CPU ms/req | two-hop floor | gateway + services | ratio to floor | target | | "
        "ratio to two-hop floor | errors (floor / stack) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["routes"]:
        lines.append(
            f"| {row['route']} | {row['floor']['cpu_ms_per_req']:.2f} | {row['two_hop']['cpu_ms_per_req']:.2f} | "
            f"{row['stack']['cpu_ms_per_req']:.2f} | **{row['ratio']:.1f}×** | ≤ {row['target']:g}× | "
            f"{'met' if row['meets'] else 'NOT met'} | {row['ratio_two_hop']:.1f}× | "
            f"{row['floor']['errors']} / {row['stack']['errors']} |"
        )
    names = sorted({name for row in result["routes"] for name in row["stack"].get("by_process", {})})
    if names:
        lines += ["", "Where the stack's CPU goes, ms per request by process (the two-hop floor: proxy / floor):", "",
                  "| route | " + " | ".join(names) + " | two-hop floor: proxy / floor |",
                  "|---|" + "---|" * (len(names) + 1)]
        for row in result["routes"]:
            by = row["stack"]["by_process"]
            hop = row["two_hop"].get("by_process", {})
            lines.append(f"| {row['route']} | " + " | ".join(f"{by.get(name, 0.0):.2f}" for name in names)
                         + f" | {hop.get('proxy', 0.0):.2f} / {hop.get('floor', 0.0):.2f} |")
    profiled = [row for row in result["routes"] if row["stack"].get("profile")]
    if profiled:
        lines += ["", "Top frames (py-spy at 250 Hz on the two processes that spent the most CPU on the route, in a "
                  "second pass of the same requests; own time = the sampled leaf frame; inclusive = frames of this "
                  "repository's code, share of the process's samples):", "", "```"]
        for row in profiled:
            for name, prof in row["stack"]["profile"].items():
                cost = row["stack"]["by_process"].get(name, 0.0)
                if "error" in prof:
                    lines.append(f"{row['route']} · {name}: no profile ({prof['error']})")
                    continue
                lines.append(f"{row['route']} · {name} ({cost:.2f} ms/req, {prof['samples']} samples)")
                lines.append("  own:       " + " · ".join(f"{f} {p:.0f}%" for f, p in prof["own"]))
                lines.append("  inclusive: " + " · ".join(f"{f} {p:.0f}%" for f, p in prof["inclusive"]))
        lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        asyncio.run(serve(int(sys.argv[2]), sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--proxy":
        asyncio.run(proxy(int(sys.argv[2]), sys.argv[3]))
    else:
        print(json.dumps(run(), indent=2, default=str))
