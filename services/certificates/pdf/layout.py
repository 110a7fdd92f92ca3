"""Page layout of a certificate: frame, header, title, recipient, body, footer, QR, revoked mark.

Every size is a multiple of ``unit`` (the short page side / A4's), so A4 and Letter in both
orientations share one design. The layout is computed the same way with or without graphics, so the
text-only render is the full render minus its drawings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog
from reportlab.lib.colors import Color, HexColor
from reportlab.pdfgen.canvas import Canvas

from services.certificates.pdf.assets import PreparedBackground, PreparedLogo
from services.certificates.pdf.qr import encode_qr
from services.certificates.pdf.spec import CertificateData, TemplateSpec
from services.certificates.pdf.text import (
    SERIF_BOLD,
    SERIF_ITALIC,
    SMALL,
    SMALL_BOLD,
    FittedText,
    fit_text,
    visual_order,
)

log = structlog.get_logger()

INK = HexColor("#1e232b")
MUTED = HexColor("#5b6472")
REVOKED_RED = HexColor("#b3261e")
WHITE = HexColor("#ffffff")


@dataclass(frozen=True)
class PageContent:
    title: str
    body: str
    show_course_line: bool  # False when the body already names the course
    values: dict[str, str]  # placeholder values: formatted dates, credit
    primary: Color
    accent: Color
    revoked_note: str | None


def draw_certificate(
    canvas: Canvas,
    template: TemplateSpec,
    cert: CertificateData,
    content: PageContent,
    *,
    logo: PreparedLogo | None,
    background: PreparedBackground | None,
    graphics: bool,
) -> None:
    _Page(canvas, template, cert, content, logo, background, graphics).draw()


def _tint(colour: Color, amount: float) -> Color:
    """``colour`` mixed with white; ``amount`` 0 is white, 1 is the colour."""
    return Color(*(1 - amount * (1 - channel) for channel in (colour.red, colour.green, colour.blue)))


class _Page:
    def __init__(
        self,
        canvas: Canvas,
        template: TemplateSpec,
        cert: CertificateData,
        content: PageContent,
        logo: PreparedLogo | None,
        background: PreparedBackground | None,
        graphics: bool,
    ) -> None:
        self.c = canvas
        self.template = template
        self.cert = cert
        self.content = content
        self.logo = logo
        self.background = background
        self.graphics = graphics
        self.width, self.height = canvas._pagesize
        self.landscape = self.width > self.height
        self.u = min(self.width, self.height) / 595.0
        u = self.u
        self.frame_outer = 18 * u
        self.frame_inner = 26 * u
        self.left = (66 if self.landscape else 54) * u
        self.right = self.width - self.left
        self.content_width = self.right - self.left
        self.centre = self.width / 2
        self.qr_size = (74 if self.landscape else 80) * u
        self._font: tuple[str, float] | None = None  # the text font last set by _line

    def draw(self) -> None:
        if self.graphics:
            self._draw_backdrop()
        y = self._draw_header(self.height - (58 if self.landscape else 66) * self.u)
        y = self._draw_title(y)
        footer_base = self._draw_verification_line()
        footer_top = footer_base + self.qr_size
        self._draw_middle(y, footer_top + 14 * self.u)
        self._draw_dates(footer_base)
        self._draw_signatory(footer_base)
        if self.graphics:
            self._draw_qr(footer_base)
        if self.content.revoked_note:
            self._draw_revoked(self.content.revoked_note)

    # -- graphics -------------------------------------------------------------------------------

    def _draw_backdrop(self) -> None:
        c, u = self.c, self.u
        if self.background is not None:
            self.background.graph.register(c, "Background")
            c.saveState()
            c.transform(*self.background.cover_matrix(self.width, self.height))
            c.doForm("Background")
            c.restoreState()
            return  # a tenant's background is its own frame
        accent, primary = self.content.accent, self.content.primary
        c.setFillColor(_tint(accent, 0.05))
        c.rect(0, 0, self.width, self.height, stroke=0, fill=1)
        outer, inner = self.frame_outer, self.frame_inner
        c.setStrokeColor(primary)
        c.setLineWidth(2.6 * u)
        c.rect(outer, outer, self.width - 2 * outer, self.height - 2 * outer, stroke=1, fill=0)
        c.setStrokeColor(accent)
        c.setLineWidth(0.8 * u)
        c.rect(inner, inner, self.width - 2 * inner, self.height - 2 * inner, stroke=1, fill=0)
        c.setFillColor(accent)
        for x in (inner, self.width - inner):
            for y in (inner, self.height - inner):
                self._diamond(x, y, 4.5 * u)

    def _diamond(self, x: float, y: float, radius: float) -> None:
        path = self.c.beginPath()
        path.moveTo(x, y + radius)
        path.lineTo(x + radius, y)
        path.lineTo(x, y - radius)
        path.lineTo(x - radius, y)
        path.close()
        self.c.drawPath(path, stroke=0, fill=1)

    def _draw_qr(self, base: float) -> None:
        """The QR code as one filled path of module runs, in module units under one matrix."""
        c, size = self.c, self.qr_size
        try:
            matrix = encode_qr(self.cert.verification_url.encode("utf-8"))
        except ValueError:  # over 2 kB: a misconfigured base URL; the URL is still printed below
            log.error("certificate_qr_url_too_long", url_length=len(self.cert.verification_url))
            return
        modules = matrix.size + 8  # the standard 4-module quiet zone on each side
        module = size / modules
        x, y = self.right - size, base
        c.setFillColor(WHITE)
        c.rect(x, y, size, size, stroke=0, fill=1)
        top = matrix.size + 3  # flip rows: PDF's y axis points up
        ops = [f"{col + 4} {top - row} {length} 1 re" for row, col, length in matrix.dark_runs()]
        c.setFillColor(INK)
        c.saveState()
        c.transform(module, 0, 0, module, x, y)
        c.addLiteral("\n".join(ops) + "\nf")
        c.restoreState()
        c.linkURL(self.cert.verification_url, (x, y, x + size, y + size), relative=0, thickness=0)
        self._centred(
            fit_text("SCAN TO VERIFY", SMALL, 5.6 * self.u, 4 * self.u, size),
            x + size / 2,
            y - 7 * self.u,
            MUTED,
            char_space=0.8 * self.u,
        )

    # -- text blocks ----------------------------------------------------------------------------

    def _draw_header(self, top: float) -> float:
        u, y = self.u, top
        if self.logo is not None:
            max_height, max_width = (50 if self.landscape else 64) * u, 210 * u
            scale = min(max_height / self.logo.height_px, max_width / self.logo.width_px)
            width, height = self.logo.width_px * scale, self.logo.height_px * scale
            if self.graphics:
                self.logo.graph.register(self.c, "Logo")
                self.c.saveState()
                self.c.transform(width, 0, 0, height, self.centre - width / 2, y - height)
                self.c.doForm("Logo")
                self.c.restoreState()
            y -= height + 12 * u
        issuer = self.template.issuer_name.strip()
        if issuer:
            fitted = fit_text(issuer.upper(), SMALL, 9 * u, 6.5 * u, self.content_width * 0.7)
            self._block(fitted, y, _tint(self.content.primary, 0.75), char_space=2.2 * u)
            y -= fitted.height + 14 * u
        elif self.logo is None:
            y -= 6 * u
        return y

    def _draw_title(self, top: float) -> float:
        u = self.u
        max_size = (36 if self.landscape else 31) * u
        fitted = fit_text(self.content.title, SERIF_BOLD, max_size, 16 * u, self.content_width * 0.9, 2)
        y = self._block(fitted, top, self.content.primary)
        y -= 12 * u
        if self.graphics:
            c = self.c
            c.setStrokeColor(self.content.accent)
            c.setLineWidth(0.9 * u)
            c.line(self.centre - 90 * u, y, self.centre - 10 * u, y)
            c.line(self.centre + 10 * u, y, self.centre + 90 * u, y)
            c.setFillColor(self.content.accent)
            self._diamond(self.centre, y, 4 * u)
        return y - 10 * u

    def _draw_middle(self, top: float, bottom: float) -> None:
        """Recipient, body, course and credit, centred in the space between title and footer."""
        u, content = self.u, self.content
        shrink = 1.0
        for _ in range(6):  # shrink everything a little until the block fits its space
            blocks = self._middle_blocks(shrink)
            total = sum((block.height if block else 0) + gap for block, _, gap in blocks)
            if total <= top - bottom:
                break
            shrink *= 0.9
        spare = top - bottom - total
        gaps = sum(gap for _, _, gap in blocks)
        # Tall pages: let the lines breathe with up to a third of the spare room, at most 2.5x.
        stretch = 1 + min(1.5, spare / 3 / gaps) if spare > 0 and gaps else 1.0
        spare -= gaps * (stretch - 1)
        y = top - max(0.0, spare * 0.42)  # a little above centre reads as centred
        for block, colour, raw_gap in blocks:
            gap = raw_gap * stretch
            if block is None:  # the rule under the name
                if self.graphics:
                    self.c.setStrokeColor(content.accent)
                    self.c.setLineWidth(0.7 * u)
                    half = min(self.content_width * 0.32, 170 * u)
                    self.c.line(self.centre - half, y, self.centre + half, y)
                y -= gap
                continue
            y = self._block(block, y, colour) - gap

    def _middle_blocks(self, shrink: float) -> list[tuple[FittedText | None, Color, float]]:
        u, content, width = self.u * shrink, self.content, self.content_width
        name = fit_text(self.cert.recipient_name, SERIF_BOLD, 40 * u, 16 * u, width * 0.92, 2)
        blocks: list[tuple[FittedText | None, Color, float]] = [(name, INK, 10 * u), (None, INK, 18 * u)]
        body = fit_text(content.body, SERIF_ITALIC, 14 * u, 9 * u, width * 0.8, 3)
        if body.lines:
            blocks.append((body, MUTED, 10 * u))
        if content.show_course_line:
            course = fit_text(self.cert.course_title, SERIF_BOLD, 22 * u, 11 * u, width * 0.85, 2)
            blocks.append((course, content.primary, 12 * u))
        hours = content.values["credit_hours"]
        if hours:
            kind = content.values["credit_kind"]
            credit = f"{hours} credit hours" + (f" \u00b7 {kind}" if kind else "")
            blocks.append((fit_text(credit.upper(), SMALL, 9.5 * u, 7 * u, width * 0.8), MUTED, 0))
        return blocks

    def _draw_dates(self, base: float) -> None:
        u = self.u
        rows = [("ISSUED", self.content.values["issued_on"])]
        if self.content.values["expires_on"]:
            rows.append(("VALID UNTIL", self.content.values["expires_on"]))
        y = base + 4 * u + (len(rows) - 1) * 34 * u
        width = self.content_width * 0.28
        for label, value in rows:
            self._left(fit_text(value, SERIF_ITALIC, 12.5 * u, 8 * u, width), self.left, y, INK)
            self._left(fit_text(label, SMALL, 6.8 * u, 5 * u, width), self.left, y + 15 * u, MUTED, 1.6 * u)
            y -= 34 * u

    def _draw_signatory(self, base: float) -> None:
        name = (self.template.signatory_name or "").strip()
        if not name:
            return
        u, width = self.u, min(200 * self.u, self.content_width * 0.34)
        line_y = base + 40 * u
        if self.graphics:
            self.c.setStrokeColor(MUTED)
            self.c.setLineWidth(0.6 * u)
            self.c.line(self.centre - width / 2, line_y, self.centre + width / 2, line_y)
        self._centred(fit_text(name, SERIF_ITALIC, 12.5 * u, 8 * u, width), self.centre, line_y - 15 * u, INK)
        title = (self.template.signatory_title or "").strip()
        if title:
            fitted = fit_text(title.upper(), SMALL, 7 * u, 5 * u, width)
            self._centred(fitted, self.centre, line_y - 27 * u, MUTED, char_space=1.2 * u)

    def _draw_verification_line(self) -> float:
        """The certificate id and verification URL along the bottom; returns the footer's base."""
        u = self.u
        text = f"Certificate ID {self.cert.verification_id}   \u00b7   Verify at {self.cert.verification_url}"
        fitted = fit_text(text, SMALL, 7 * u, 4.5 * u, self.content_width, 2)
        y = self.frame_inner + 9 * u + fitted.leading * (len(fitted.lines) - 1)
        self._block(fitted, y + fitted.size, MUTED)
        return y + fitted.size + 26 * u

    def _draw_revoked(self, note: str) -> None:
        c, u = self.c, self.u
        if self.graphics:
            c.saveState()
            c.setFillColor(REVOKED_RED)
            c.setFillAlpha(0.16)
            c.translate(self.centre, self.height / 2)
            c.rotate(math.degrees(math.atan2(self.height, self.width)))
            diagonal = math.hypot(self.width, self.height)
            size = min(150 * u, diagonal * 0.7 / max(c.stringWidth("REVOKED", SERIF_BOLD, 1), 1))
            c.setFont(SERIF_BOLD, size)
            c.drawCentredString(0, -size * 0.35, "REVOKED")
            c.restoreState()
            band = 24 * u
            c.setFillColor(REVOKED_RED)
            c.rect(
                self.frame_outer,
                self.height - self.frame_outer - band,
                self.width - 2 * self.frame_outer,
                band,
                stroke=0,
                fill=1,
            )
        fitted = fit_text(note, SMALL_BOLD, 9.5 * u, 6 * u, self.width - 2 * self.frame_outer - 24 * u)
        band_middle = self.height - self.frame_outer - 12 * u
        self._centred(fitted, self.centre, band_middle - fitted.size * 0.35, WHITE if self.graphics else REVOKED_RED)

    # -- primitives -----------------------------------------------------------------------------

    def _block(self, fitted: FittedText, top: float, colour: Color, char_space: float = 0) -> float:
        """Centred lines hanging from ``top``; returns the y under the block."""
        y = top - fitted.size * 0.8
        for line in fitted.lines:
            self._line(line, fitted, self.centre, y, colour, char_space, centred=True)
            y -= fitted.leading
        return top - fitted.height

    def _centred(self, fitted: FittedText, x: float, baseline: float, colour: Color, char_space: float = 0) -> None:
        for index, line in enumerate(fitted.lines):
            self._line(line, fitted, x, baseline - index * fitted.leading, colour, char_space, centred=True)

    def _left(self, fitted: FittedText, x: float, baseline: float, colour: Color, char_space: float = 0) -> None:
        for index, line in enumerate(fitted.lines):
            self._line(line, fitted, x, baseline - index * fitted.leading, colour, char_space, centred=False)

    def _line(
        self, text: str, fitted: FittedText, x: float, y: float, colour: Color, char_space: float, centred: bool
    ) -> None:
        c = self.c
        c.setFillColor(colour)
        if self._font != (fitted.font, fitted.size):  # each setFont writes to the page stream
            c.setFont(fitted.font, fitted.size)
            self._font = (fitted.font, fitted.size)
        text = visual_order(text)
        if centred:
            c.drawCentredString(x, y, text, charSpace=char_space)
        else:
            c.drawString(x, y, text, charSpace=char_space)
