"""``make bench``: run every benchmark side by side in one run and write docs/benchmarks.md.

Each module in this package exposes ``run() -> dict`` and optionally ``markdown(result) -> str``.
``python -m bench [name ...]`` runs a subset (the report then keeps the other sections from the previous run).

Every section runs in its own Python process (``python -m bench --section NAME --out FILE``), so one section's
memory, warm caches or leftover tasks never show up in another's figures. The 1-minute load average is printed
before and after every section; a section that ran above load ``LOAD_LIMIT`` is repeated (at most
``MAX_REPEATS`` times, keeping the run with the lowest load), and a section whose kept run was still above the
limit is marked "measured on a loaded machine" in the report. "Ran above load" means the load before the section was
above the limit, or other work took more than ``OTHERS_LIMIT`` cores while it ran: the machine's busy CPU less the
section's own process tree and PostgreSQL's and RabbitMQ's (which the section drives). The load average after a
section is printed but not judged: a section that saturates the cores on purpose (the mixed load) leaves a load of
5 or more by itself. Before each section the orchestrator waits (``--settle``, 60 s at most) for the load to fall
under the limit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

LOAD_LIMIT = 2.0
OTHERS_LIMIT = 0.25  # cores of CPU used by anything else than the section (and the PostgreSQL / RabbitMQ it drives)
MAX_REPEATS = 2
SERVERS = ("postgres", "beam.smp", "epmd", "erl_child_setup", "inet_gethost")
LOADED_NOTE = "_Measured on a loaded machine"

SECTIONS: list[tuple[str, str, str]] = [
    ("bench_floors", "Hot routes against their floor (minimal aiohttp + asyncpg, same SQL)", "issue 21"),
    ("bench_gateway", "Gateway overhead (gateway vs direct vs nginx)", "issue 3"),
    ("bench_bus", "Event pipeline (outbox → relay → RabbitMQ → inbox consumer vs raw aio-pika)", "issue 2"),
    ("bench_pdf", "Certificate render (full certificate vs text-only floor)", "issue 6"),
    ("bench_certificates", "Certificate issuance and regeneration vs raw reportlab", "issue 6"),
    ("bench_catalog", "Course list latency at 1k and 100k courses", "issue 4"),
    ("bench_scorm_import", "SCORM import throughput and peak memory", "issue 7"),
    ("bench_scorm_api", "SCORM upload + import: public API, admin upload and resumable (tus) side by side",
     "issue 20"),
    ("bench_load", "Mixed load through the gateway (50 clients)", "issue 9"),
    ("bench_consistency", "Read-your-writes: added latency with and without a wait", "issue 14"),
    ("bench_webhooks", "Webhook delivery to a local receiver vs the bus pipeline", "issue 19"),
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    pg = _version(["psql", "--version"])
    rmq = _version(["rabbitmqctl", "version"])
    return (f"{os.cpu_count()} × {cpu}{mem}; {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}; PostgreSQL {pg}; RabbitMQ {rmq}")


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        return out.split()[-1] if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def generic_markdown(result: dict[str, Any]) -> str:
    return "```json\n" + json.dumps(result, indent=2, default=str) + "\n```"


def existing_sections() -> dict[str, str]:
    if not REPORT.exists():
        return {}
    found: dict[str, str] = {}
    for block in REPORT.read_text().split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        found[title.strip()] = body.strip()
    return found


def run_section(module_name: str, out: Path) -> int:
    """Child process: run one section and write its rendered markdown (and raw result) to ``out``."""
    try:
        module = importlib.import_module(f"bench.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{module_name}":
            raise
        out.write_text(json.dumps({"missing": True}))
        return 0
    result = module.run()
    render = getattr(module, "markdown", None) or generic_markdown
    out.write_text(json.dumps({"body": render(result), "result": result}, default=str))
    return 0


def load1() -> float:
    return os.getloadavg()[0]


def settle(limit_s: float) -> None:
    """Wait (at most ``limit_s``) for the 1-minute load to fall under LOAD_LIMIT: the previous section's own load
    decays instead of being charged to the next one."""
    deadline = time.monotonic() + limit_s
    while load1() > LOAD_LIMIT and time.monotonic() < deadline:
        time.sleep(2)


def _busy_cpu() -> float:
    """CPU seconds the whole machine has been busy (every core, every process) since boot."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _servers_cpu() -> float:
    """CPU seconds of PostgreSQL and RabbitMQ (their exited children, e.g. finished backends, included)."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        times = proc.info.get("cpu_times")
        if times is not None and (proc.info.get("name") or "").startswith(SERVERS):
            total += times.user + times.system + times.children_user + times.children_system
    return total


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds so far of ``root`` and every process under it (the latest reading per pid wins)."""
    import psutil

    try:
        parent = psutil.Process(root)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seen[proc.pid] = times.user + times.system


def _spawn(module_name: str) -> tuple[int, dict[str, Any], float, float, float, float]:
    """Run one section in a fresh interpreter; returns (exit code, output, load before, load after, seconds,
    cores used by other work meanwhile). The section's own CPU is read from its process tree every 0.25 s
    (render workers, services and tools it starts included, however they end)."""
    with tempfile.TemporaryDirectory(prefix="bench_section_") as tmp:
        out = Path(tmp) / "out.json"
        before = load1()
        start, busy, servers = time.perf_counter(), _busy_cpu(), _servers_cpu()
        section = subprocess.Popen([sys.executable, "-m", "bench", "--section", module_name, "--out", str(out)],
                                   cwd=REPORT.parents[1])
        seen: dict[int, float] = {}
        while section.poll() is None:
            _tree_cpu(section.pid, seen)
            time.sleep(0.25)
        code = section.returncode
        seconds = time.perf_counter() - start
        others = (_busy_cpu() - busy) - (_servers_cpu() - servers) - sum(seen.values())
        after = load1()
        data = json.loads(out.read_text()) if code == 0 and out.exists() else {}
    return code, data, before, after, seconds, max(others, 0.0) / seconds if seconds else 0.0


def loaded_note(before: float, others: float, attempts: int) -> str:
    cores = os.cpu_count() or 1
    return (f"{LOADED_NOTE} (load average {before:.1f} before it; other work used {others:.2f} of the {cores} "
            f"cores while it ran; {attempts} attempt(s), the least loaded kept): absolute figures are not "
            "comparable with a quiet run; compare the ratios measured side by side._")


def write_report(bodies: dict[str, str], previous: dict[str, str]) -> None:
    """docs/benchmarks.md: this run's sections, the previous run's for the others, and hand-written notes
    (sections whose title starts with "Notes", kept as they are)."""
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Every figure in a section was measured "
        "side by side in the same run, on:",
        "",
        f"> {machine()}",
        "",
        "Each section states its target and whether it holds. Figures move with the machine's load; compare the "
        "ratios, not the absolute numbers. Every section runs in its own process; a section that started above "
        f"load {LOAD_LIMIT:g}, or during which other work used more than {OTHERS_LIMIT:g} cores (after up to "
        f"{MAX_REPEATS} repeats), says so at its top.",
    ]
    for _, title, _ in SECTIONS:
        body = bodies.get(title, previous.get(title))
        if body is not None:
            lines += ["", f"## {title}", "", body]
    for title, body in previous.items():
        if title.startswith("Notes"):
            lines += ["", f"## {title}", "", body]
    REPORT.write_text("\n".join(lines) + "\n")
    sys.stderr.write(f"Wrote {REPORT}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="module names to run (default: all)")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-repeat", action="store_true", help="do not repeat sections that ran above load 2")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds to wait at most, before each section, for the load to fall under 2")
    args = parser.parse_args(argv)
    if args.section:
        return run_section(args.section, args.out)
    previous = existing_sections()
    bodies: dict[str, str] = {}
    failures = 0
    selected = [s for s in SECTIONS if not args.only or s[0] in args.only]
    total_start = time.perf_counter()
    for index, (module_name, title, issue) in enumerate(selected, 1):
        best: tuple[tuple[bool, float, float], dict[str, Any], float, float] | None = None
        attempts = 0
        for attempt in range(1 + (0 if args.no_repeat else MAX_REPEATS)):
            attempts += 1
            sys.stderr.write(f"[{index}/{len(selected)}] {title} (attempt {attempt + 1}): load {load1():.2f} ... ")
            sys.stderr.flush()
            settle(args.settle)
            code, data, before, after, seconds, others = _spawn(module_name)
            if code != 0 or not data:
                sys.stderr.write(f"FAILED (exit {code}); load after {after:.2f}\n")
                break
            if data.get("missing"):
                sys.stderr.write("not built yet, skipped\n")
                break
            sys.stderr.write(f"done in {seconds:.0f} s; load before {before:.2f}, after {after:.2f}; other work "
                             f"used {others:.2f} cores meanwhile\n")
            # Judged by what was not the section: the load it started under, and other work's CPU while it ran.
            quiet = before <= LOAD_LIMIT and others <= OTHERS_LIMIT
            rank = (not quiet, others, before)
            if best is None or rank < best[0]:
                best = (rank, data, before, others)
            if quiet:
                break
            if attempt < (0 if args.no_repeat else MAX_REPEATS):
                sys.stderr.write(f"    ran on a busy machine (load above {LOAD_LIMIT:g} before it, or other work "
                                 f"above {OTHERS_LIMIT:g} cores): repeating\n")
        if best is None:
            if attempts and not (data and data.get("missing")):
                failures += 1
                bodies[title] = previous.get(title, "") + "\n\n_The last run of this benchmark failed; see the log._"
            else:
                bodies[title] = f"_Not measured yet ({issue})._"
            continue
        rank, data, before, others = best
        body = data["body"]
        if rank[0]:
            body = loaded_note(before, others, attempts) + "\n\n" + body
        bodies[title] = body
        write_report(bodies, previous)  # after every section: an interrupted run still leaves what it measured
    sys.stderr.write(f"All sections took {time.perf_counter() - total_start:.0f} s\n")
    write_report(bodies, previous)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
