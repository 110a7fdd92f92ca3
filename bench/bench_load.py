"""Mixed load through the gateway on the multi-process cluster (issue 9): N concurrent clients for S seconds.

Every service runs as its own process on the real PostgreSQL and RabbitMQ (``tests.support.cluster``). Each client
loops over a weighted mix: list and get courses and enrollments, enroll, commit CMI data through the learner
runtime (progress, and now and then a completion that travels on to a certificate), and verify certificates by
API and on the public page. Any answer that is not a 2xx counts as an error. The per-key rate limit is lifted:
it is the system being measured, not the limiter.

``run()`` is the benchmark (50 clients, 60 s); ``tests/reliability/test_reliability_load.py`` runs a short
variant of the same workload and asserts zero errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support.cluster import Cluster, Learner, running_cluster

#: the per-key token bucket would turn the test into a test of the limiter
UNLIMITED = {"LEARN_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "LEARN_GATEWAY_RATE_LIMIT_BURST": "1000000"}

#: operation -> weight in the mix
MIX: dict[str, int] = {
    "list courses": 16, "get course": 12, "list enrollments": 10, "get enrollment": 10, "enroll": 14,
    "commit": 18, "complete": 4, "verify (API)": 8, "verify (page)": 8,
}
READING = {"title": "Read", "kind": "reading", "required": True}
#: what 50 API clients of one tenant should get from one replica of each service on 2 cores (issue 21)
TARGETS = {"errors": 0, "p99_ms": 400.0, "throughput_rps": 200.0, "commit_p50_ms": 30.0, "commit_p99_ms": 150.0}


@dataclass
class Workload:
    """What the clients work on, made before the clock starts."""

    key: str
    course_ids: list[int]
    user_ids: list[int]
    enrollments: list[dict[str, Any]]
    progressing: list[Learner]  # committed to again and again, never completed
    to_complete: list[Learner]  # each completed once, during the run
    verification_ids: list[str]
    enroll_pairs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Outcome:
    seconds: float
    clients: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)

    def record(self, op: str, started: float, ok: bool, detail: str) -> None:
        self.latencies[op].append((time.perf_counter() - started) * 1000)
        if not ok:
            self.errors[op] += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(f"{op}: {detail[:300]}")


async def prepare(c: Cluster, slug: str, *, courses: int, users: int, progressing: int, to_complete: int,
                  certified: int) -> Workload:
    key = await c.tenant_with_key(slug)
    made = await asyncio.gather(*(c.course(key, slug, f"load-{i}", [READING], title=f"Load course {i}")
                                  for i in range(courses)))
    course_ids = [course["id"] for course, _ in made]
    first_course, (activity,) = made[0]
    gate = asyncio.Semaphore(16)

    async def user(uid: int) -> None:
        async with gate:
            await c.user(slug, uid, f"Load learner {uid}")

    user_ids = list(range(100_001, 100_001 + users))
    await asyncio.gather(*(user(uid) for uid in user_ids))
    # learners of the first course: some keep committing, some complete during the run, some are certified now
    learner_ids = list(range(200_001, 200_001 + progressing + to_complete + certified))
    learners = await c.learners(key, slug, first_course["id"], activity, learner_ids)
    certified_now = learners[progressing + to_complete:]
    await asyncio.gather(*(c.runtime(lr.token, "commit", {"cmi.completion_status": "completed"})
                           for lr in certified_now))
    certificates = await c.assert_one_certificate_each(key, first_course["id"],
                                                       [lr.enrollment["id"] for lr in certified_now])
    workload = Workload(key, course_ids, user_ids, [lr.enrollment for lr in learners],
                        learners[:progressing], learners[progressing:progressing + to_complete],
                        [cert["verification_id"] for cert in certificates])
    workload.enroll_pairs = [(uid, cid) for cid in course_ids for uid in user_ids]
    random.shuffle(workload.enroll_pairs)
    return workload


def process_groups(c: Cluster) -> dict[str, list[int]]:
    """Every service process of the cluster, and PostgreSQL's and RabbitMQ's processes (the machine's own)."""
    groups = {name: [s.proc.pid] for name, s in c.services.items() if s.proc is not None}
    groups["postgresql"], groups["rabbitmq"] = [], []
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if name.startswith("postgres"):
            groups["postgresql"].append(proc.pid)
        elif name.startswith(("beam", "erl_child", "epmd")):
            groups["rabbitmq"].append(proc.pid)
    return groups


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes and their children so far."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for one in [proc, *proc.children(recursive=True)]:
                times = one.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


async def drive(c: Cluster, w: Workload, seconds: float, clients: int) -> Outcome:
    outcome = Outcome(seconds, clients)
    ops, weights = list(MIX), list(MIX.values())
    deadline = time.perf_counter() + seconds
    commits = Counter[str]()
    # One player per learner: a learner's commits never overlap, as in a browser (the player sends one at a time).
    players: asyncio.Queue[Learner] = asyncio.Queue()
    for learner in w.progressing:
        players.put_nowait(learner)

    async def step(op: str) -> tuple[bool, str]:
        if op == "list courses":
            status, body = await c.api(w.key, "GET", "/courses?limit=20")
        elif op == "get course":
            status, body = await c.api(w.key, "GET", f"/courses/{random.choice(w.course_ids)}")
        elif op == "list enrollments":
            status, body = await c.api(w.key, "GET", f"/enrollments?course_id={random.choice(w.course_ids)}&limit=20")
        elif op == "get enrollment":
            status, body = await c.api(w.key, "GET", f"/enrollments/{random.choice(w.enrollments)['id']}")
        elif op == "enroll":
            user_id, course_id = w.enroll_pairs.pop() if w.enroll_pairs else (random.choice(w.user_ids),
                                                                               random.choice(w.course_ids))
            status, body = await c.api(w.key, "POST", "/enrollments", json={"user_id": user_id,
                                                                            "course_id": course_id})
        elif op == "commit":
            learner = await players.get()
            try:
                commits[learner.token] += 1
                status, body = await c.request("POST", f"/learn/runtime/{learner.token}/commit", json={"cmi": {
                    "cmi.completion_status": "incomplete", "cmi.location": f"page-{commits[learner.token]}",
                    "cmi.session_time": "PT5S"}}, origin=c.content_url)
            finally:
                players.put_nowait(learner)
        elif op == "complete":
            if not w.to_complete:
                return await step("commit")
            learner = w.to_complete.pop()
            status, body = await c.request("POST", f"/learn/runtime/{learner.token}/commit",
                                           json={"cmi": {"cmi.completion_status": "completed"}},
                                           origin=c.content_url)
        elif op == "verify (API)":
            status, body = await c.api(w.key, "GET", f"/certificates/verify/{random.choice(w.verification_ids)}")
        else:
            status, body = await c.request("GET", f"/verify/{random.choice(w.verification_ids)}")
        return 200 <= status < 300, f"{status} {str(body)[:200]}"

    async def client() -> None:
        while time.perf_counter() < deadline:
            op = random.choices(ops, weights)[0]
            started = time.perf_counter()
            try:
                ok, detail = await step(op)
            except Exception as exc:  # a dropped connection is an error like any other
                ok, detail = False, repr(exc)
            outcome.record(op, started, ok, detail)

    await asyncio.gather(*(client() for _ in range(clients)))
    return outcome


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def summarise(outcome: Outcome) -> dict[str, Any]:
    every = [ms for values in outcome.latencies.values() for ms in values]
    per_op = {op: {"requests": len(v), "errors": outcome.errors[op], "p50_ms": round(percentile(v, 50), 1),
                   "p99_ms": round(percentile(v, 99), 1)} for op, v in sorted(outcome.latencies.items())}
    result: dict[str, Any] = {
        "clients": outcome.clients, "seconds": outcome.seconds, "requests": len(every),
        "errors": sum(outcome.errors.values()), "error_samples": outcome.error_samples,
        "throughput_rps": round(len(every) / outcome.seconds, 1),
        "p50_ms": round(percentile(every, 50), 1), "p99_ms": round(percentile(every, 99), 1), "per_op": per_op,
    }
    result["targets"] = TARGETS
    commit = per_op.get("commit", {"p50_ms": 0.0, "p99_ms": 0.0})
    result["holds"] = {"errors": result["errors"] == 0, "p99_ms": result["p99_ms"] <= TARGETS["p99_ms"],
                       "throughput_rps": result["throughput_rps"] >= TARGETS["throughput_rps"],
                       "commit_p50_ms": commit["p50_ms"] <= TARGETS["commit_p50_ms"],
                       "commit_p99_ms": commit["p99_ms"] <= TARGETS["commit_p99_ms"]}
    return result


def cpu_summary(result: dict[str, Any], cores: int) -> list[str]:
    """Throughput per core of CPU used, where the CPU went, and what Little's law says of a closed loop."""
    cpu: dict[str, float] = result.get("cpu_seconds") or {}
    if not cpu:
        return []
    seconds, requests = result["seconds"], result["requests"]
    system = sum(v for k, v in cpu.items() if k != "load generator")
    everything = system + cpu.get("load generator", 0.0)
    mean_ms = 1000 * result["clients"] * seconds / requests if requests else 0.0
    lines = [
        f"CPU used during the run: {system:.1f} s by the system (every service, PostgreSQL, RabbitMQ) and "
        f"{cpu.get('load generator', 0.0):.1f} s by the load generator, on {cores} cores over {seconds:.0f} s "
        f"({100 * everything / (cores * seconds):.0f} % of the machine). Throughput per core of the system's CPU: "
        f"**{requests / system:.0f} req/s per core** ({1000 * system / requests:.2f} ms of CPU per request)."
        if system and requests else "",
        "",
        "| process | CPU s | ms per request |",
        "|---|---|---|",
        *(f"| {name} | {value:.1f} | {1000 * value / requests:.2f} |" for name, value in
          sorted(cpu.items(), key=lambda kv: -kv[1]) if requests),
        "",
        f"The clients run a closed loop (no think time), so by Little's law their mean latency is clients ÷ "
        f"throughput = {result['clients']} ÷ {result['throughput_rps']} req/s = {mean_ms:.0f} ms, whatever the "
        f"code does, once the cores are saturated: latency here is set by CPU per request × clients ÷ cores.",
    ]
    return lines


async def measure(c: Cluster, slug: str, seconds: float, clients: int, *, small: bool = False) -> dict[str, Any]:
    """Prepare a tenant's workload on a running cluster, drive it, and summarise (the test and the bench)."""
    if small:
        workload = await prepare(c, slug, courses=3, users=30, progressing=20, to_complete=10, certified=5)
    else:
        workload = await prepare(c, slug, courses=10, users=200, progressing=50, to_complete=100, certified=20)
    completions = len(workload.to_complete)
    groups = process_groups(c)
    cpu_before, process_before = {name: tree_cpu(pids) for name, pids in groups.items()}, time.process_time()
    outcome = await drive(c, workload, seconds, clients)
    cpu = {name: round(tree_cpu(pids) - cpu_before[name], 2) for name, pids in groups.items()}
    cpu["load generator"] = round(time.process_time() - process_before, 2)
    result = summarise(outcome)
    result["cpu_seconds"] = cpu
    result["completed_during_run"] = completions - len(workload.to_complete)
    return result


@contextlib.asynccontextmanager
async def unlimited_cluster(prefix: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[Cluster]:
    """The multi-process cluster on the real PostgreSQL and RabbitMQ, rate limit lifted, cleaned up after."""
    from tests.support import infra
    from tests.support.env import TestEnv

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        env = TestEnv(postgres_url=infra.postgres_url(), amqp_url=infra.amqp_url(), data_dir=Path(tmp) / "data")
        env.data_dir.mkdir()
        try:
            async with running_cluster(env, Path(tmp) / "cluster", extra_env={**UNLIMITED, **(extra_env or {})}) as c:
                yield c
        finally:
            await env.cleanup()


async def _run(seconds: float, clients: int) -> dict[str, Any]:
    async with unlimited_cluster("bench-load-") as c:
        result = await measure(c, "loadco", seconds, clients)
    # The same mix with read-your-writes switched off (ADR 0010): what the reads' waits for the tenant's pending
    # events (the learners' commits, applied by the enrollment service's consumer) add to the latencies above.
    async with unlimited_cluster("bench-load-norw-", {"LEARN_GATEWAY_CONSISTENCY": "false"}) as c:
        result["without_read_your_writes"] = await measure(c, "loadco", seconds / 2, clients)
    return result


def run(seconds: float = 60, clients: int = 50) -> dict[str, Any]:
    return asyncio.run(_run(seconds, clients))


def markdown(result: dict[str, Any]) -> str:
    holds = result["holds"]

    def verdict(ok: bool) -> str:
        return "holds" if ok else "**does not hold**"

    lines = [
        f"{result['clients']} concurrent clients for {result['seconds']:.0f} s through the gateway, every service its "
        "own process on PostgreSQL and RabbitMQ (the load generator shares the machine). Mix: "
        + ", ".join(f"{op} {w}%" for op, w in MIX.items()) + ".",
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
        f"| errors (non-2xx or dropped) | {result['errors']} of {result['requests']} | 0 "
        f"| {verdict(holds['errors'])} |",
        f"| p50 latency | {result['p50_ms']} ms | (reported) | |",
        f"| p99 latency | {result['p99_ms']} ms | ≤ {TARGETS['p99_ms']:.0f} ms | {verdict(holds['p99_ms'])} |",
        f"| runtime commit p50 / p99 | {result['per_op'].get('commit', {}).get('p50_ms')} / "
        f"{result['per_op'].get('commit', {}).get('p99_ms')} ms | ≤ {TARGETS['commit_p50_ms']:.0f} / "
        f"{TARGETS['commit_p99_ms']:.0f} ms | {verdict(holds.get('commit_p50_ms', False))} / "
        f"{verdict(holds.get('commit_p99_ms', False))} |",
        f"| throughput | {result['throughput_rps']} req/s | ≥ {TARGETS['throughput_rps']:.0f} req/s "
        f"| {verdict(holds['throughput_rps'])} |",
        f"| completions → certificates during the run | {result['completed_during_run']} | | |",
        "",
        "| operation | requests | errors | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for op, r in result["per_op"].items():
        lines.append(f"| {op} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p99_ms']} |")
    lines += ["", *cpu_summary(result, os.cpu_count() or 1)]
    off = result.get("without_read_your_writes")
    if off:
        lines += ["", f"The same mix for {off['seconds']:.0f} s on a second cluster with read-your-writes switched off "
                  "(`LEARN_GATEWAY_CONSISTENCY=false`; ADR 0010): a read of a service then never waits for the "
                  "tenant's pending events. The difference is what those waits cost under this load (the "
                  "learners' commits keep the enrollment service's queue busy, and every enrollment read waits "
                  "for the commits committed before it).", "",
                  "| operation | p50 ms (on / off) | p99 ms (on / off) |", "|---|---|---|",
                  f"| all | {result['p50_ms']} / {off['p50_ms']} | {result['p99_ms']} / {off['p99_ms']} |"]
        for op, r in result["per_op"].items():
            o = off["per_op"].get(op, {})
            lines.append(f"| {op} | {r['p50_ms']} / {o.get('p50_ms', '–')} | {r['p99_ms']} / {o.get('p99_ms', '–')} |")
        lines.append(f"| throughput req/s | {result['throughput_rps']} / {off['throughput_rps']} | |")
    if result["error_samples"]:
        lines += ["", "First errors:", "", *(f"- `{s}`" for s in result["error_samples"])]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - ``python -m bench.bench_load [seconds]``
    import json
    import sys

    outcome = run(float(sys.argv[1]) if len(sys.argv) > 1 else 60)
    sys.stdout.write(json.dumps(outcome, indent=2) + "\n\n" + markdown(outcome) + "\n")
