"""``make bench``: run every benchmark side by side in one run and write docs/benchmarks.md.

Each module in this package exposes ``run() -> dict`` and optionally ``markdown(result) -> str``.
``python -m bench [name ...]`` runs a subset (the report then keeps the other sections from the previous run).
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
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

SECTIONS: list[tuple[str, str, str]] = [
    ("bench_gateway", "Gateway overhead (gateway vs direct vs nginx)", "issue 3"),
    ("bench_bus", "Event pipeline (outbox → relay → RabbitMQ → inbox consumer vs raw aio-pika)", "issue 2"),
    ("bench_pdf", "Certificate render (full certificate vs text-only floor)", "issue 6"),
    ("bench_certificates", "Certificate issuance and regeneration vs raw reportlab", "issue 6"),
    ("bench_catalog", "Course list latency at 1k and 100k courses", "issue 4"),
    ("bench_scorm_import", "SCORM import throughput and peak memory", "issue 7"),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="module names to run (default: all)")
    args = parser.parse_args(argv)
    previous = existing_sections()
    bodies: dict[str, str] = {}
    failures = 0
    selected = [s for s in SECTIONS if not args.only or s[0] in args.only]
    for index, (module_name, title, issue) in enumerate(selected, 1):
        sys.stderr.write(f"[{index}/{len(selected)}] {title} ... ")
        sys.stderr.flush()
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{module_name}")
        except ModuleNotFoundError:
            sys.stderr.write("not built yet, skipped\n")
            bodies[title] = f"_Not measured yet ({issue})._"
            continue
        try:
            result = module.run()
            render = getattr(module, "markdown", None) or generic_markdown
            bodies[title] = render(result)
            sys.stderr.write(f"done in {time.perf_counter() - start:.0f} s\n")
        except Exception:
            failures += 1
            sys.stderr.write("FAILED\n")
            traceback.print_exc()
            bodies[title] = previous.get(title, "") + "\n\n_The last run of this benchmark failed; see the log._"
    if args.only:
        for _, title, _ in SECTIONS:
            if title not in bodies and title in previous:
                bodies[title] = previous[title]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Every figure in a section was measured "
        "side by side in the same run, on:",
        "",
        f"> {machine()}",
        "",
        "Each section states its target and whether it holds. Figures move with the machine's load; compare the "
        "ratios, not the absolute numbers.",
    ]
    for _, title, _ in SECTIONS:
        if title in bodies:
            lines += ["", f"## {title}", "", bodies[title]]
    REPORT.write_text("\n".join(lines) + "\n")
    sys.stderr.write(f"Wrote {REPORT}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
