"""Fonts and text fitting for certificates: embedded DejaVu faces, script fallback, shrink-then-wrap."""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = Path(__file__).with_name("fonts")
SERIF_BOLD = "MobieusCert-SerifBold"
SERIF_ITALIC = "MobieusCert-SerifItalic"
SANS = "MobieusCert-Sans"
SANS_BOLD = "MobieusCert-SansBold"
_FILES = {
    SERIF_BOLD: "DejaVuSerif-Bold.ttf",
    SERIF_ITALIC: "DejaVuSerif-Italic.ttf",
    SANS: "DejaVuSans.ttf",
    SANS_BOLD: "DejaVuSans-Bold.ttf",
}
# Small print (labels, id, URL) uses the PDF's built-in Helvetica while it is Latin-1: every viewer
# has it, so it costs no embedded font program; other text in it falls back to DejaVu Sans.
SMALL = "Helvetica"
SMALL_BOLD = "Helvetica-Bold"
_BUILT_IN = {SMALL: SANS, SMALL_BOLD: SANS_BOLD}
# DejaVu Sans covers more scripts (Arabic, Hebrew, ...) than DejaVu Serif.
_FALLBACK = {SERIF_BOLD: SANS_BOLD, SERIF_ITALIC: SANS}
ELLIPSIS = "\u2026"

_registered = False
_register_lock = threading.Lock()
_glyphs: dict[str, frozenset[int] | set[int]] = {}


def register_fonts() -> None:
    """Load the TrueType faces into reportlab's process-wide registry, once per process."""
    global _registered
    if _registered:
        return
    with _register_lock:
        if _registered:
            return
        for name, filename in _FILES.items():
            # asciiReadable=False: a subset then holds only the glyphs a certificate uses, not
            # all of ASCII; text stays extractable through the ToUnicode map.
            font = TTFont(name, str(FONT_DIR / filename), asciiReadable=False)
            pdfmetrics.registerFont(font)
            _glyphs[name] = frozenset(font.face.charToGlyph)
        _registered = True


def clean_text(text: str) -> str:
    """One line of printable text: control and format characters become spaces, runs collapse."""
    if not text.isprintable():  # the rare case: tabs, newlines, zero-width or bidi controls
        text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    return " ".join(text.split())


def font_for(text: str, font: str) -> str:
    """``font`` unless it lacks glyphs that its fallback has (e.g. Arabic in a Serif title).

    Characters no face has (CJK, ...) still render, as empty boxes, and stay in the text layer.
    """
    if font in _BUILT_IN:
        try:
            text.encode("cp1252")  # the WinAnsi encoding reportlab uses for the built-in fonts
            return font
        except UnicodeEncodeError:
            return _BUILT_IN[font]
    fallback = _FALLBACK.get(font)
    if fallback is None:
        return font
    own = _glyphs[font]
    missing = [ord(ch) for ch in text if ord(ch) not in own and not ch.isspace()]
    if not missing:
        return font
    other = _glyphs[fallback]
    covered_by_fallback = sum(code in other for code in missing)
    return fallback if covered_by_fallback else font


_RTL = frozenset({"R", "AL"})
_LTR = frozenset({"L"})
_MIRROR = str.maketrans("()[]{}<>«»", ")(][}{><»«")


def visual_order(line: str) -> str:
    """A right-to-left line (Hebrew, Arabic) in the left-to-right order PDF text is drawn in.

    Only lines with no left-to-right letters are reordered (a full bidi algorithm and Arabic
    joining need shaping support reportlab lacks here): the line is reversed, digit runs stay
    in reading order and brackets are mirrored. Hebrew comes out right; Arabic letters appear
    in the right order but unjoined.
    """
    if line.isascii():
        return line
    classes = [unicodedata.bidirectional(ch) for ch in line]
    if not _RTL.intersection(classes) or _LTR.intersection(classes):
        return line
    runs: list[str] = []
    for ch, kind in zip(line, classes, strict=True):
        if kind in ("EN", "AN") and runs and runs[-1][-1:].isdigit():
            runs[-1] += ch
        else:
            runs.append(ch)
    return "".join(reversed(runs)).translate(_MIRROR)


def text_width(text: str, font: str, size: float) -> float:
    return pdfmetrics.stringWidth(text, font, size)


@dataclass(frozen=True)
class FittedText:
    font: str
    size: float
    lines: tuple[str, ...]

    @property
    def leading(self) -> float:
        return self.size * 1.22

    @property
    def height(self) -> float:
        return self.size + self.leading * (len(self.lines) - 1) if self.lines else 0.0


def fit_text(
    text: str,
    font: str,
    max_size: float,
    min_size: float,
    max_width: float,
    max_lines: int = 1,
) -> FittedText:
    """The largest size at which ``text`` fits ``max_width`` in as few lines as look right.

    A single line is preferred down to 70% of ``max_size``; below that the text wraps onto up to
    ``max_lines`` lines, shrinking down to ``min_size``; what still does not fit ends in an ellipsis.
    Never wider than ``max_width``.
    """
    # Text that could not show even at the smallest size is cut first (a runaway 50 kB title must
    # not cost a wrap per size step); the cut part would be lost behind the ellipsis anyway.
    text = clean_text(text[: int(8 * max_lines * max_width / min_size) + 1])
    font = font_for(text, font)
    if not text:
        return FittedText(font, max_size, ())
    width_at_one = text_width(text, font, 1.0)
    single_line_floor = max(min_size, max_size * 0.7)
    fits_one_line = width_at_one * single_line_floor <= max_width
    if fits_one_line or (max_lines == 1 and width_at_one * min_size <= max_width):
        size = min(max_size, max_width / width_at_one) if width_at_one else max_size
        return FittedText(font, _floor_half(size), (text,))
    if max_lines > 1:
        size = max_size
        while size >= min_size:
            if width_at_one * size > max_width * max_lines:
                size -= 1  # cannot fit in max_lines even if wrapping wasted no space
                continue
            lines = wrap(text, font, size, max_width)
            if len(lines) <= max_lines:
                return FittedText(font, size, tuple(lines))
            size -= 1
    lines = wrap(text, font, min_size, max_width)
    kept = lines[:max_lines]
    kept[-1] = ellipsize(" ".join(lines[max_lines - 1 :]), font, min_size, max_width)
    return FittedText(font, min_size, tuple(kept))


def wrap(text: str, font: str, size: float, max_width: float) -> list[str]:
    """Greedy word wrap; a word wider than the line is broken between characters."""
    space = text_width(" ", font, size)
    lines: list[str] = []
    current = ""
    current_width = 0.0
    for word in text.split(" "):
        word_width = text_width(word, font, size)
        if current and current_width + space + word_width <= max_width:
            current += " " + word
            current_width += space + word_width
            continue
        if current:
            lines.append(current)
        while word_width > max_width and len(word) > 1:
            head = _longest_prefix(word, font, size, max_width)
            lines.append(head)
            word = word[len(head) :]
            word_width = text_width(word, font, size)
        current, current_width = word, word_width
    if current:
        lines.append(current)
    return lines


def ellipsize(text: str, font: str, size: float, max_width: float) -> str:
    if text_width(text, font, size) <= max_width:
        return text
    room = max_width - text_width(ELLIPSIS, font, size)
    return _longest_prefix(text, font, size, room).rstrip() + ELLIPSIS


def _longest_prefix(text: str, font: str, size: float, max_width: float) -> str:
    low, high = 1, len(text)  # always keep one character so that progress is made
    while low < high:
        middle = (low + high + 1) // 2
        if text_width(text[:middle], font, size) <= max_width:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _floor_half(size: float) -> float:
    return int(size * 2) / 2
