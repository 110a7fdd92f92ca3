"""Certificates benchmark, one run on the real PostgreSQL and RabbitMQ:

1. render: p50/p99 of the full certificate (TrueType name, logo, QR code, background PDF) on one core, against
   the text-only floor of the same page;
2. issuing end to end: ``enrollment.completed`` events published at once → certificates committed with their
   stored PDF, per second, against raw renders per second of the same template through the service's own
   worker pool in the same run (target ratio ≥ 0.7);
3. regeneration: 10,000 certificates re-rendered after one template update; total time against
   10,000 ÷ the pool's raw render rate measured in the same run (target ≤ 1.2), and against
   10,000 × render p50 ÷ cores (target ≤ 1.5).

    .venv/bin/python -m bench.bench_certificates [issue_n] [regenerate_n]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import psutil
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from bench.bench_pdf import bench_certificate, bench_template
from services.certificates.api.common import RUNTIME_KEY
from services.certificates.app import create_app
from services.certificates.config import CertificatesSettings
from services.certificates.domain import new_verification_id
from services.certificates.pdf.render import CertificateRenderer
from services.certificates.store import certificates
from shared.bus.amqp import AmqpBus, OutgoingMessage
from shared.bus.envelope import new_event
from shared.bus.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, QUEUES, queue
from shared.config import CommonSettings
from shared.db import drop_database
from shared.events.base import Credit
from shared.events.enrollment import CompletedCourse, CompletedUser, EnrollmentCompleted, Progress
from shared.logging import configure_logging
from shared.service import DB_KEY

PG = os.environ.get("LEARN_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
AMQP = os.environ.get("LEARN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TARGET_ISSUE_RATIO = 0.7
TARGET_REGENERATION_RATIO = 1.5
TARGET_REGENERATION_VS_POOL = 1.2
TENANT_ID, TENANT = 1, "acme"


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def render_floor(n: int) -> dict[str, float]:
    """One core, in this process: the full certificate against the same page's text only, interleaved."""
    renderer = CertificateRenderer()
    template = bench_template()
    certs = [bench_certificate() for _ in range(n)]
    for cert in certs[:10]:
        renderer.render(template, cert)
        renderer.render_text_only(template, cert)
    full: list[float] = []
    floor: list[float] = []
    for cert in certs:
        started = time.perf_counter()
        renderer.render(template, cert)
        full.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        renderer.render_text_only(template, cert)
        floor.append((time.perf_counter() - started) * 1000)
    return {
        "full_p50_ms": round(_percentile(full, 0.5), 2), "full_p99_ms": round(_percentile(full, 0.99), 2),
        "full_mean_ms": round(statistics.fmean(full), 2),
        "text_only_p50_ms": round(_percentile(floor, 0.5), 2),
        "text_only_p99_ms": round(_percentile(floor, 0.99), 2),
    }


def _completion(enrollment_id: int, template_id: int) -> Any:
    now = datetime.now(UTC)
    payload = EnrollmentCompleted(
        enrollment_id=enrollment_id, user_id=enrollment_id, course_id=42, course_version=1, status="completed",
        source="bench", enrolled_at=now, completed_at=now, revision=2,
        user=CompletedUser(id=enrollment_id, name="Zoë Łukasiewicz-Ångström", email="zoe@example.com"),
        course=CompletedCourse(id=42, title="Intro to Mobieus: Event-Driven Learning Platforms", version=1,
                               credit=Credit(hours=Decimal("2.5"), kind="CEU", expires_after_months=24),
                               certificate_template_id=template_id),
        progress=Progress(required_total=1, required_done=1), tenant_name="Acme Academy",
    )
    return new_event("enrollment.completed", payload, service="enrollment", tenant=TENANT, tenant_id=TENANT_ID)


async def _count(engine: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(certificates).where(*where))).scalar()
                   or 0)


async def _until(engine: Any, expected: int, *where: Any, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (await _count(engine, *where)) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await _count(engine, *where)} of {expected} after {timeout}s")
        await asyncio.sleep(0.05)
    return time.perf_counter()


async def _seed(engine: Any, template_id: int, version: int, n: int) -> None:
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        vid = new_verification_id()
        rows.append({
            "tenant_id": TENANT_ID, "enrollment_id": 10_000_000 + i, "user_id": 10_000_000 + i, "course_id": 42,
            "course_version": 1, "template_id": template_id, "verification_id": vid,
            "recipient_name": "Nguyễn Thị Minh Khai", "course_title": "Intro to Mobieus",
            "credit_hours": Decimal("2.5"), "credit_kind": "CEU", "issued_at": now, "expires_at": None,
            "pdf_key": f"certificates/{TENANT_ID}/{vid}/v1.pdf", "pdf_sha256": "0" * 64, "pdf_bytes": 0,
            "pdf_version": 1, "pdf_template_version": version, "pdf_generated_at": now, "created_at": now,
            "updated_at": now,
        })
    async with engine.begin() as conn:
        for start in range(0, n, 2000):
            await conn.execute(sa.insert(certificates), rows[start:start + 2000])


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def _infrastructure_pids() -> dict[str, list[int]]:
    """PostgreSQL's processes (postmaster, backends, WAL writer, checkpointer) and RabbitMQ's (the Erlang VM)."""
    found: dict[str, list[int]] = {"postgresql": [], "rabbitmq": []}
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if name.startswith("postgres"):
            found["postgresql"].append(proc.pid)
        elif name.startswith(("beam", "erl_child", "epmd")):
            found["rabbitmq"].append(proc.pid)
    return found


class _Cpu:
    """CPU spent by this process (event loop, database and broker clients), by the render workers, and by
    PostgreSQL and RabbitMQ (their whole process trees: a quiet machine has no other clients)."""

    def __init__(self, worker_pids: list[int]):
        self.worker_pids = worker_pids
        self.infrastructure = _infrastructure_pids()
        self._main = time.process_time()
        self._workers = _cpu_seconds(worker_pids)
        self._infra = {name: _cpu_seconds(pids) for name, pids in self.infrastructure.items()}

    def per_item_ms(self, n: int) -> tuple[float, float]:
        main = time.process_time() - self._main
        workers = _cpu_seconds(self.worker_pids) - self._workers
        return round(main * 1000 / n, 2), round(workers * 1000 / n, 2)

    def infrastructure_ms(self, n: int) -> dict[str, float]:
        return {name: round((_cpu_seconds(pids) - self._infra[name]) * 1000 / n, 2)
                for name, pids in self.infrastructure.items()}


def _cpu_bound(per_item: dict[str, float], cores: int, raw_per_s: float) -> dict[str, float]:
    """What the machine's cores allow when every item costs ``per_item`` ms of CPU across all processes: items
    per second if every core were busy all the time, and that rate against the raw pool rate (the best ratio
    this machine can reach while the renders share its cores with the service, PostgreSQL and RabbitMQ)."""
    total = sum(per_item.values())
    bound = cores * 1000 / total if total else 0.0
    return {"cpu_ms_per_item": round(total, 2), "cpu_bound_per_s": round(bound, 1),
            "best_ratio": round(bound / raw_per_s, 2) if raw_per_s else 0.0}


async def _cleanup(common: CommonSettings) -> None:
    with contextlib.suppress(Exception):
        await drop_database(common.database_url("certificates"))
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(AMQP)
        async with connection:
            channel = await connection.channel()
            for spec in QUEUES:
                for name in (spec.name, spec.dead_letter_name):
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(common.amqp_namespace + name)
            for exchange in (EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(common.amqp_namespace + exchange)


async def _service_runs(issue_n: int, regenerate_n: int, render: dict[str, float]) -> dict[str, Any]:
    token = secrets.token_hex(3)
    common = CommonSettings(postgres_url=PG, amqp_url=AMQP, database_prefix=f"bench{token}_",
                            amqp_namespace=f"bench{token}.", internal_secret=secrets.token_urlsafe(16),
                            log_level="warning", relay_poll_interval=0.2)
    settings = CertificatesSettings(common=common)
    cores = settings.render_workers
    # A generous confirm timeout: 1,000 publishes at once on a loaded machine took longer than the default 15 s.
    publisher = AmqpBus(AMQP, service="bench", namespace=common.amqp_namespace, publish_timeout=300)
    client = TestClient(TestServer(create_app(settings)))
    try:
        await publisher.connect(retry_forever=False)
        assert publisher._connection is not None
        channel = await publisher._connection.channel()
        for purpose in ("issue", "regenerate", "users"):
            await publisher.declare_queue(channel, queue("certificates", purpose))
        await channel.close()
        await client.start_server()
        app = client.server.app
        engine = app[DB_KEY].engine
        headers = {"X-Learn-Internal": common.internal_secret or "", "X-Learn-Tenant-Id": str(TENANT_ID),
                   "X-Learn-Tenant": TENANT, "X-Learn-Tenant-Name": "Acme%20Academy", "X-Learn-Scopes": "admin"}
        spec = bench_template()
        body = {"name": "Bench", "logo": base64.b64encode(spec.logo_png or b"").decode(),
                "background_pdf": base64.b64encode(spec.background_pdf or b"").decode(),
                "signatory_name": spec.signatory_name, "signatory_title": spec.signatory_title}
        async with client.post("/admin/v1/cert-templates", json=body, headers=headers) as resp:
            template = (await resp.json())["data"]

        # Raw renders through the service's own pool (every core), same template, same run.
        pool = app[RUNTIME_KEY].documents.pool
        worker_pids = pool.pids
        template_spec = bench_template()
        certs = [bench_certificate() for _ in range(issue_n)]
        await pool.render_many(template_spec, certs[: cores * 4])  # warm the workers' template caches
        started = time.perf_counter()
        for start in range(0, issue_n, 32):
            await pool.render_many(template_spec, certs[start:start + 32])
        raw_per_s = issue_n / (time.perf_counter() - started)

        # End to end: events → committed certificates with stored PDFs.
        events = [_completion(1_000 + i, template["id"]) for i in range(issue_n)]
        cpu = _Cpu(worker_pids)
        started = time.perf_counter()
        await publisher.publish_many([OutgoingMessage(e.routing_key, e.to_bytes(), e.id) for e in events])
        finished = await _until(engine, issue_n, timeout=600)
        issued_per_s = issue_n / (finished - started)
        issue_main_ms, issue_worker_ms = cpu.per_item_ms(issue_n)
        issue_infra_ms = cpu.infrastructure_ms(issue_n)

        # Regeneration of regenerate_n certificates after one template update.
        await _seed(engine, template["id"], template["version"], regenerate_n)
        live = issue_n + regenerate_n
        await asyncio.sleep(1.0)  # let the relay drain the issue run's events first
        cpu = _Cpu(worker_pids)
        started = time.perf_counter()
        async with client.post(f"/admin/v1/cert-templates/{template['id']}", json={"title_text": "Diploma"},
                               headers=headers) as resp:
            version = (await resp.json())["data"]["version"]
        finished = await _until(engine, live, certificates.c.template_id == template["id"],
                                certificates.c.pdf_template_version == version, timeout=3600)
        regeneration_s = finished - started
        regen_main_ms, regen_worker_ms = cpu.per_item_ms(live)
        regen_infra_ms = cpu.infrastructure_ms(live)
        ideal_s = live * render["full_p50_ms"] / 1000 / cores
        pool_s = live / raw_per_s  # the same renders at the pool's measured rate in this run
        return {
            "cores": cores,
            "issue_n": issue_n,
            "issued_per_s": round(issued_per_s, 1),
            "raw_renders_per_s": round(raw_per_s, 1),
            "issue_ratio": round(issued_per_s / raw_per_s, 2),
            "regenerated_n": live,
            "regeneration_s": round(regeneration_s, 1),
            "regeneration_ideal_s": round(ideal_s, 1),
            "regeneration_ratio": round(regeneration_s / ideal_s, 2),
            "regeneration_vs_pool": round(regeneration_s / pool_s, 2),
            "regenerated_per_s": round(live / regeneration_s, 1),
            "issue_cpu_ms": {"service": issue_main_ms, "render_workers": issue_worker_ms, **issue_infra_ms},
            "regeneration_cpu_ms": {"service": regen_main_ms, "render_workers": regen_worker_ms, **regen_infra_ms},
            "issue_cpu_bound": _cpu_bound({"service": issue_main_ms, "render_workers": issue_worker_ms,
                                           **issue_infra_ms}, cores, raw_per_s),
            "regeneration_cpu_bound": _cpu_bound({"service": regen_main_ms, "render_workers": regen_worker_ms,
                                                  **regen_infra_ms}, cores, raw_per_s),
            "load_average": round(os.getloadavg()[0], 1),
        }
    finally:
        await client.close()
        await publisher.close()
        await _cleanup(common)


def run(issue_n: int = 1000, regenerate_n: int = 9000, render_n: int = 300) -> dict[str, Any]:
    """``regenerate_n`` seeded certificates plus the ``issue_n`` issued ones are regenerated (10,000 by default)."""
    configure_logging("bench", "warning")
    render = render_floor(render_n)
    result: dict[str, Any] = {"render_n": render_n, **render}
    result.update(asyncio.run(_service_runs(issue_n, regenerate_n, render)))
    result["issue_target_met"] = result["issue_ratio"] >= TARGET_ISSUE_RATIO
    result["regeneration_target_met"] = result["regeneration_ratio"] <= TARGET_REGENERATION_RATIO
    result["regeneration_vs_pool_target_met"] = result["regeneration_vs_pool"] <= TARGET_REGENERATION_VS_POOL
    return result


def markdown(result: dict[str, Any]) -> str:
    def met(flag: bool) -> str:
        return "met" if flag else "NOT met"

    return "\n".join([
        f"Certificates ({result['cores']} render workers = cores; PostgreSQL + RabbitMQ; one run)",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| full render p50 / p99 (one core, n={result['render_n']}) | {result['full_p50_ms']} / "
        f"{result['full_p99_ms']} ms |",
        f"| text-only floor p50 / p99 | {result['text_only_p50_ms']} / {result['text_only_p99_ms']} ms |",
        f"| issued end to end (enrollment.completed → stored PDF), n={result['issue_n']} | "
        f"{result['issued_per_s']} /s |",
        f"| raw renders, same template, same pool | {result['raw_renders_per_s']} /s |",
        f"| issue ratio (target ≥ {TARGET_ISSUE_RATIO}) | {result['issue_ratio']} "
        f"({met(result['issue_target_met'])}) |",
        f"| regeneration of {result['regenerated_n']} certificates | {result['regeneration_s']} s "
        f"({result['regenerated_per_s']} /s) |",
        f"| ideal: n × render p50 ÷ cores | {result['regeneration_ideal_s']} s |",
        f"| regeneration ratio (target ≤ {TARGET_REGENERATION_RATIO}) | {result['regeneration_ratio']} "
        f"({met(result['regeneration_target_met'])}) |",
        f"| regeneration ÷ (n ÷ raw pool renders/s, same run) (target ≤ {TARGET_REGENERATION_VS_POOL}) | "
        f"{result['regeneration_vs_pool']} ({met(result['regeneration_vs_pool_target_met'])}) |",
        f"| CPU per issued certificate: service process / render workers / PostgreSQL / RabbitMQ | "
        f"{_cpu_row(result['issue_cpu_ms'])} |",
        f"| CPU per regenerated certificate: service process / render workers / PostgreSQL / RabbitMQ | "
        f"{_cpu_row(result['regeneration_cpu_ms'])} |",
        "",
        *_bound_lines(result),
        "",
        f"Load average at the end: {result['load_average']} on {result['cores']} cores (wall-clock ratios move "
        "with other work on the machine; CPU per certificate much less).",
    ])


def _cpu_row(cpu: dict[str, float]) -> str:
    return " / ".join(str(cpu.get(name, "–")) for name in ("service", "render_workers", "postgresql", "rabbitmq")) \
        + " ms"


def _bound_lines(result: dict[str, Any]) -> list[str]:
    """The bound the two ratios hit: every process's CPU per certificate against the machine's cores."""
    issue, regen = result.get("issue_cpu_bound"), result.get("regeneration_cpu_bound")
    if not issue or not regen:
        return []
    cores, raw = result["cores"], result["raw_renders_per_s"]
    regen_bound_s = result["regenerated_n"] / regen["cpu_bound_per_s"] if regen["cpu_bound_per_s"] else 0.0
    return [
        f"The bound: the {cores} cores are shared by the render workers, the service, PostgreSQL and RabbitMQ. "
        f"An issued certificate costs {issue['cpu_ms_per_item']} ms of CPU across all of them, so the cores allow "
        f"at most {issue['cpu_bound_per_s']} issues/s ({result['issued_per_s']} measured, "
        f"{_pct(result['issued_per_s'], issue['cpu_bound_per_s'])} of it): the best issue ratio this machine "
        f"allows against the raw pool rate ({raw}/s, render CPU only) is **{issue['best_ratio']}**. A regenerated "
        f"certificate costs {regen['cpu_ms_per_item']} ms, so {result['regenerated_n']} need at least "
        f"{regen_bound_s:.1f} s of the cores ({result['regeneration_s']} s measured): the best regeneration ÷ "
        f"pool-rate ratio here is **{(1 / regen['best_ratio']) if regen['best_ratio'] else 0:.2f}**.",
    ]


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"


to_markdown = markdown


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(markdown(run(*args)))
