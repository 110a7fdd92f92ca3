"""Certificate PDF render speed: the full certificate against the text-only floor, in one run.

The full render has everything that costs: an embedded TrueType name with Latin-extended letters,
a logo, a one-page background PDF and a QR code. Every iteration uses a new verification id, so
nothing per certificate can be served from a cache; per-template work (background and logo
conversion) is cached as in production.

    .venv/bin/python -m bench.bench_pdf [n]
"""

from __future__ import annotations

import io
import secrets
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfgen.canvas import Canvas

from services.certificates.pdf.render import CertificateRenderer
from services.certificates.pdf.spec import BUILTIN_DEFAULT_TEMPLATE, CertificateData, TemplateSpec

TARGET_FULL_P50_MS = 10.0


def _logo_png() -> bytes:
    image = Image.new("RGBA", (480, 160), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 150, 150), fill=(200, 80, 40, 255))
    draw.rectangle((170, 50, 470, 110), fill=(40, 60, 120, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _background_pdf() -> bytes:
    out = io.BytesIO()
    width, height = landscape(A4)
    canvas = Canvas(out, pagesize=(width, height))
    canvas.setFillColorRGB(0.95, 0.97, 1)
    canvas.rect(0, 0, width, height, stroke=0, fill=1)
    canvas.setStrokeColorRGB(0.2, 0.4, 0.7)
    canvas.setLineWidth(10)
    canvas.rect(16, 16, width - 32, height - 32)
    canvas.setFont("Helvetica", 12)
    canvas.drawString(40, 40, "Acme Academy background artwork")
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def bench_template() -> TemplateSpec:
    return replace(
        BUILTIN_DEFAULT_TEMPLATE,
        id=1,
        issuer_name="Acme Academy",
        signatory_name="Dr. Nguyễn Thị Minh Khai",
        signatory_title="Director of Learning",
        logo_png=_logo_png(),
        background_pdf=_background_pdf(),
    )


def bench_certificate() -> CertificateData:
    vid = secrets.token_urlsafe(30)[:40]
    return CertificateData(
        recipient_name="Zoë Łukasiewicz-Ångström",
        course_title="Intro to Mobieus: Event-Driven Learning Platforms",
        credit_hours=Decimal("2.5"),
        credit_kind="CEU",
        issued_at=datetime(2026, 6, 2, 10, 0, tzinfo=UTC),
        expires_at=datetime(2028, 6, 2, tzinfo=UTC),
        verification_id=vid,
        verification_url=f"https://acme.learn.mobieus.io/verify/{vid}",
    )


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(n: int = 300) -> dict:
    renderer = CertificateRenderer()
    template = bench_template()
    certificates = [bench_certificate() for _ in range(n)]
    for cert in certificates[:10]:  # warm up: fonts, template conversion, code paths
        renderer.render(template, cert)
        renderer.render_text_only(template, cert)
    full: list[float] = []
    floor: list[float] = []
    full_cpu: list[float] = []
    floor_cpu: list[float] = []
    sizes: list[int] = []
    # Interleaved so that machine noise hits both series alike. CPU time is reported beside wall
    # time because the machine is shared: it moves much less when other work competes for cores.
    for cert in certificates:
        started, started_cpu = time.perf_counter(), time.process_time()
        pdf = renderer.render(template, cert)
        full.append((time.perf_counter() - started) * 1000)
        full_cpu.append((time.process_time() - started_cpu) * 1000)
        sizes.append(len(pdf))
        started, started_cpu = time.perf_counter(), time.process_time()
        renderer.render_text_only(template, cert)
        floor.append((time.perf_counter() - started) * 1000)
        floor_cpu.append((time.process_time() - started_cpu) * 1000)
    full_p50 = _percentile(full, 0.5)
    return {
        "n": n,
        "full_p50_ms": round(full_p50, 2),
        "full_p99_ms": round(_percentile(full, 0.99), 2),
        "text_only_p50_ms": round(_percentile(floor, 0.5), 2),
        "text_only_p99_ms": round(_percentile(floor, 0.99), 2),
        "full_cpu_p50_ms": round(_percentile(full_cpu, 0.5), 2),
        "text_only_cpu_p50_ms": round(_percentile(floor_cpu, 0.5), 2),
        "full_renders_per_s": round(1000 / statistics.fmean(full), 1),
        "text_only_renders_per_s": round(1000 / statistics.fmean(floor), 1),
        "full_pdf_bytes": int(statistics.median(sizes)),
        "target_full_p50_ms": TARGET_FULL_P50_MS,
        "meets_target": full_p50 <= TARGET_FULL_P50_MS,
    }


def to_markdown(result: dict) -> str:
    return "\n".join(
        [
            f"Certificate PDF render, n={result['n']} (one thread, both series in the same run)",
            "",
            "| render | p50 ms | p99 ms | CPU p50 ms | renders/s |",
            "|---|---:|---:|---:|---:|",
            f"| full (TTF name, logo, background PDF, QR) | {result['full_p50_ms']} | "
            f"{result['full_p99_ms']} | {result['full_cpu_p50_ms']} | {result['full_renders_per_s']} |",
            f"| text only (floor) | {result['text_only_p50_ms']} | {result['text_only_p99_ms']} | "
            f"{result['text_only_cpu_p50_ms']} | {result['text_only_renders_per_s']} |",
            "",
            f"Full certificate size: {result['full_pdf_bytes']} bytes. Target: full p50 <= "
            f"{result['target_full_p50_ms']} ms ({'met' if result['meets_target'] else 'NOT met'}).",
        ]
    )


if __name__ == "__main__":
    print(to_markdown(run(int(sys.argv[1]) if len(sys.argv) > 1 else 300)))
