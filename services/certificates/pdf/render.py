"""Certificate PDF renderer: a template plus a certificate's facts in, PDF bytes out (no other I/O).

The fast path (see docs/certificates-pdf.md): fonts are registered once per process; a template's
logo and background PDF are converted into ready-made PDF objects once per template version and
linked into each document; the QR code is one filled path. Output is deterministic: the same
template and certificate give the same bytes.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

import structlog
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.pagesizes import A4, LETTER, landscape, portrait
from reportlab.pdfgen.canvas import Canvas

from services.certificates.pdf.assets import (
    PreparedBackground,
    PreparedLogo,
    TemplateAssetError,
    prepare_background,
    prepare_logo,
    validate_color,
)
from services.certificates.pdf.layout import PageContent, draw_certificate
from services.certificates.pdf.spec import (
    BUILTIN_DEFAULT_TEMPLATE,
    CertificateData,
    TemplateSpec,
    fill_placeholders,
    format_date,
    placeholder_values,
)
from services.certificates.pdf.text import register_fonts

log = structlog.get_logger()

_PAGE_SIZES = {"A4": A4, "Letter": LETTER}
_Asset = TypeVar("_Asset", PreparedLogo, PreparedBackground)


@dataclass(frozen=True)
class _PreparedTemplate:
    logo_source: bytes | None
    background_source: bytes | None
    logo: PreparedLogo | None
    background: PreparedBackground | None

    def matches(self, template: TemplateSpec) -> bool:
        # Same id and version should mean same assets; comparing costs a memcmp (or nothing when it
        # is the same object) and protects against a caller reusing a version number.
        return self.logo_source == template.logo_png and self.background_source == template.background_pdf


class CertificateRenderer:
    """Renders certificates; keep one per process and share it between threads."""

    def __init__(self, cache_size: int = 64) -> None:
        self._cache_size = cache_size
        self._prepared: OrderedDict[tuple[int, int], _PreparedTemplate] = OrderedDict()
        self._lock = threading.Lock()
        register_fonts()

    def render(self, template: TemplateSpec, cert: CertificateData) -> bytes:
        return self._render(template, cert, graphics=True)

    def render_text_only(self, template: TemplateSpec, cert: CertificateData) -> bytes:
        """The same page with its text only (no logo, background, border or QR code): the floor
        the full render is measured against."""
        return self._render(template, cert, graphics=False)

    def _render(self, template: TemplateSpec, cert: CertificateData, *, graphics: bool) -> bytes:
        size = _PAGE_SIZES.get(template.page_size, A4)
        pagesize = portrait(size) if template.orientation == "portrait" else landscape(size)
        prepared = self._prepare(template)  # the text-only page still leaves the logo's room
        out = io.BytesIO()
        canvas = Canvas(out, pagesize=pagesize, pageCompression=1, invariant=1)
        _set_metadata(canvas, template, cert)
        content = PageContent(
            title=fill_placeholders(template.title_text, cert),
            body=fill_placeholders(template.body_text, cert),
            show_course_line="{course_title}" not in template.body_text,
            values=placeholder_values(cert),
            primary=_colour(template.primary_color, BUILTIN_DEFAULT_TEMPLATE.primary_color),
            accent=_colour(template.accent_color, BUILTIN_DEFAULT_TEMPLATE.accent_color),
            revoked_note=_revoked_note(cert),
        )
        draw_certificate(
            canvas,
            template,
            cert,
            content,
            logo=prepared.logo,
            background=prepared.background,
            graphics=graphics,
        )
        canvas.showPage()
        canvas.save()
        return out.getvalue()

    def _prepare(self, template: TemplateSpec) -> _PreparedTemplate:
        key = (template.id, template.version)
        with self._lock:
            cached = self._prepared.get(key)
            if cached is not None and cached.matches(template):
                self._prepared.move_to_end(key)
                return cached
        prepared = _PreparedTemplate(
            logo_source=template.logo_png,
            background_source=template.background_pdf,
            logo=_prepare_asset("logo", template, prepare_logo, template.logo_png),
            background=_prepare_asset("background_pdf", template, prepare_background, template.background_pdf),
        )
        with self._lock:
            self._prepared[key] = prepared
            self._prepared.move_to_end(key)
            while len(self._prepared) > self._cache_size:
                self._prepared.popitem(last=False)
        return prepared


def _prepare_asset(
    field: str, template: TemplateSpec, prepare: Callable[[bytes], _Asset], data: bytes | None
) -> _Asset | None:
    if not data:
        return None
    try:
        return prepare(data)
    except TemplateAssetError as exc:
        # Validation at upload should make this unreachable; a certificate without the asset
        # beats no certificate at all.
        log.error(
            "certificate_template_asset_unusable",
            template_id=template.id,
            template_version=template.version,
            field=field,
            error=str(exc),
        )
        return None


def _colour(value: str, fallback: str) -> Color:
    try:
        validate_color(value)
    except TemplateAssetError:
        value = fallback
    return HexColor(value)


def _revoked_note(cert: CertificateData) -> str | None:
    if not cert.revoked:
        return None
    note = "REVOKED"
    if cert.revoked_at is not None:
        note += f" on {format_date(cert.revoked_at)}"
    if cert.revoked_reason:
        note += f" \u2014 reason: {cert.revoked_reason}"
    return note


def _set_metadata(canvas: Canvas, template: TemplateSpec, cert: CertificateData) -> None:
    title = fill_placeholders(template.title_text, cert)
    canvas.setTitle(f"{title} \u2014 {cert.recipient_name}")
    canvas.setAuthor(template.issuer_name or "mobieusLearn")
    canvas.setSubject(f"{cert.course_title} \u2014 awarded to {cert.recipient_name}")
    canvas.setKeywords(f"certificate, verification {cert.verification_id}")
    canvas.setCreator("mobieusLearn certificates")
    # invariant=1 pins the dates to 2000-01-01 for reproducible bytes; the issue time is just as
    # stable and more truthful.
    stamp = cert.issued_at.astimezone(UTC) if cert.issued_at.tzinfo else cert.issued_at
    pdf_date = stamp.strftime("D:%Y%m%d%H%M%S+00'00'")
    canvas._doc.info._dateFormatter = lambda *_: pdf_date  # reportlab's only hook for the dates
