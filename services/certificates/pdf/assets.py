"""Template assets (logo PNG, background PDF): validation, and conversion into PDF objects once.

A background page merged with pypdf costs ~50 ms per certificate and inflates the file. Instead we turn
the page into a form XObject once per template version: its content stream is compressed once and
its resources (fonts, images) keep their original encoded bytes. The result is a small graph of
pre-serialised objects that each render links into its own document and draws with one ``Do``.
The logo is decoded, downscaled and compressed once in the same way.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    PdfObject,
    StreamObject,
)
from reportlab.pdfbase.pdfdoc import PDFObject, xObjectName
from reportlab.pdfgen.canvas import Canvas

MAX_LOGO_BYTES = 1024 * 1024
MIN_LOGO_SIDE = 16
MAX_LOGO_SIDE = 4096
MAX_LOGO_ASPECT = 20
LOGO_EMBED_SIDE = 1000  # ~330 dpi at the 3-inch maximum it is drawn at
MAX_BACKGROUND_BYTES = 10 * 1024 * 1024
MAX_BACKGROUND_OBJECTS = 5000
MAX_BACKGROUND_CONTENT_BYTES = 16 * 1024 * 1024  # decoded drawing operators of the page
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
# Keys that would drag the source document's page tree or structure into ours.
_DROPPED_KEYS = frozenset({"/Parent", "/StructParent", "/StructParents", "/P"})


class TemplateAssetError(ValueError):
    """A template colour, logo or background the renderer refuses; the message says why."""


def validate_color(value: str) -> None:
    if not isinstance(value, str) or not _COLOR.fullmatch(value):
        raise TemplateAssetError(f"colour must look like #rrggbb, got {value!r}")


def validate_logo(data: bytes) -> None:
    if len(data) > MAX_LOGO_BYTES:
        raise TemplateAssetError(f"logo is {len(data)} bytes; the limit is {MAX_LOGO_BYTES} (1 MiB)")
    if not data.startswith(PNG_SIGNATURE):
        raise TemplateAssetError("logo must be a PNG image")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format != "PNG":
                raise TemplateAssetError("logo must be a PNG image")
            width, height = probe.size
            _check_logo_dimensions(width, height)
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # verify() checks chunks; decoding the pixels catches truncated data
    except TemplateAssetError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise TemplateAssetError(f"logo is not a readable PNG: {exc}") from exc


def _check_logo_dimensions(width: int, height: int) -> None:
    if min(width, height) < MIN_LOGO_SIDE or max(width, height) > MAX_LOGO_SIDE:
        raise TemplateAssetError(f"logo is {width}x{height} px; each side must be {MIN_LOGO_SIDE}..{MAX_LOGO_SIDE} px")
    if max(width, height) > MAX_LOGO_ASPECT * min(width, height):
        raise TemplateAssetError(f"logo is {width}x{height} px; too narrow to print legibly")


def validate_background_pdf(data: bytes) -> None:
    prepare_background(data)  # the very conversion a render uses, so a valid file always renders


@dataclass(frozen=True)
class EmbeddedGraph:
    """Pre-serialised PDF objects: each node is bytes interleaved with indexes of other nodes
    (indirect references). Node 0 is the XObject to draw."""

    nodes: tuple[tuple[bytes | int, ...], ...]

    def register(self, canvas: Canvas, name: str) -> None:
        """Link the objects into ``canvas``'s document; draw them with ``canvas.doForm(name)``."""
        _Session(self, canvas._doc, name).reference(0)  # reportlab has no public document accessor


class _Session:
    """Per-document wrappers: object numbers belong to one document, the bytes are shared."""

    def __init__(self, graph: EmbeddedGraph, document: Any, name: str) -> None:
        self.graph = graph
        self.document = document
        self.root_name = xObjectName(name)
        self.prefix = f"{name}."
        self.wrappers: dict[int, _EmbeddedObject] = {}

    def reference(self, index: int) -> bytes:
        wrapper = self.wrappers.get(index)
        if wrapper is None:
            wrapper = self.wrappers[index] = _EmbeddedObject(self, index)
        name = self.root_name if index == 0 else f"{self.prefix}{index}"
        return self.document.Reference(wrapper, name).format(self.document)


class _EmbeddedObject(PDFObject):
    def __init__(self, session: _Session, index: int) -> None:
        self.session = session
        self.index = index

    def format(self, document: Any) -> bytes:
        return b"".join(
            part if isinstance(part, bytes) else self.session.reference(part)
            for part in self.session.graph.nodes[self.index]
        )


@dataclass(frozen=True)
class PreparedLogo:
    graph: EmbeddedGraph
    width_px: int
    height_px: int


def prepare_logo(data: bytes) -> PreparedLogo:
    validate_logo(data)
    with Image.open(io.BytesIO(data)) as source:
        image = source.copy()
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    image.thumbnail((LOGO_EMBED_SIDE, LOGO_EMBED_SIDE), Image.Resampling.LANCZOS)
    width, height = image.size
    nodes: list[tuple[bytes | int, ...]] = []
    smask: list[bytes | int] = []
    if has_alpha:
        alpha = image.getchannel("A")
        if alpha.getextrema() != (255, 255):
            smask = [b" /SMask ", 1]
            nodes.append(())  # placeholder for the image itself
            nodes.append(_image_stream(alpha.tobytes(), width, height, b"/DeviceGray"))
        image = image.convert("RGB")
    rgb = _image_stream(image.tobytes(), width, height, b"/DeviceRGB", smask)
    if nodes:
        nodes[0] = rgb
    else:
        nodes.append(rgb)
    return PreparedLogo(EmbeddedGraph(tuple(nodes)), width, height)


def _image_stream(
    raw: bytes, width: int, height: int, colour_space: bytes, extra: list[bytes | int] | None = None
) -> tuple[bytes | int, ...]:
    data = zlib.compress(raw, 6)
    head = (
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s /BitsPerComponent 8"
        b" /Filter /FlateDecode /Length %d" % (width, height, colour_space, len(data))
    )
    return _coalesce([head, *(extra or []), b" >>\nstream\n", data, b"\nendstream"])


@dataclass(frozen=True)
class PreparedBackground:
    graph: EmbeddedGraph
    bbox: tuple[float, float, float, float]  # the form's own coordinates (the page's crop box)
    rotate: int  # the page's /Rotate, applied when drawing

    @property
    def display_size(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bbox
        width, height = x1 - x0, y1 - y0
        return (height, width) if self.rotate in (90, 270) else (width, height)

    def cover_matrix(self, page_width: float, page_height: float) -> tuple[float, ...]:
        """Affine matrix drawing the background over the whole page: rotated as a viewer shows it,
        scaled uniformly to cover the page, centred (a little is cropped if the aspect differs)."""
        x0, y0, x1, y1 = self.bbox
        width, height = x1 - x0, y1 - y0
        rotations = {
            0: (1, 0, 0, 1, 0, 0),
            90: (0, -1, 1, 0, 0, width),
            180: (-1, 0, 0, -1, width, height),
            270: (0, 1, -1, 0, height, 0),
        }
        shown_width, shown_height = self.display_size
        scale = max(page_width / shown_width, page_height / shown_height)
        matrix = _compose((1, 0, 0, 1, -x0, -y0), rotations[self.rotate])
        matrix = _compose(matrix, (scale, 0, 0, scale, 0, 0))
        offset_x = (page_width - scale * shown_width) / 2
        offset_y = (page_height - scale * shown_height) / 2
        return _compose(matrix, (1, 0, 0, 1, offset_x, offset_y))


def _compose(first: tuple[float, ...], then: tuple[float, ...]) -> tuple[float, ...]:
    """The PDF matrix that applies ``first`` and then ``then``."""
    a, b, c, d, e, f = first
    a2, b2, c2, d2, e2, f2 = then
    return (
        a * a2 + b * c2,
        a * b2 + b * d2,
        c * a2 + d * c2,
        c * b2 + d * d2,
        e * a2 + f * c2 + e2,
        e * b2 + f * d2 + f2,
    )


def prepare_background(data: bytes) -> PreparedBackground:
    if len(data) > MAX_BACKGROUND_BYTES:
        raise TemplateAssetError(f"background PDF is {len(data)} bytes; the limit is {MAX_BACKGROUND_BYTES} (10 MiB)")
    if b"%PDF-" not in data[:1024]:
        raise TemplateAssetError("background must be a PDF file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns about every repaired xref entry
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise TemplateAssetError("background PDF must not be encrypted")
            pages = len(reader.pages)
            if pages != 1:
                raise TemplateAssetError(f"background PDF must have exactly one page, it has {pages}")
            page = reader.pages[0]
            return _page_to_form(page)
    except TemplateAssetError:
        raise
    except (
        PyPdfError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OSError,
        RecursionError,
        zlib.error,
    ) as exc:
        raise TemplateAssetError(f"background is not a readable PDF: {exc}") from exc


def _page_to_form(page: Any) -> PreparedBackground:
    box = page.cropbox
    x0, y0, x1, y1 = (float(v) for v in (box.left, box.bottom, box.right, box.top))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise TemplateAssetError("background PDF page has an empty page box")
    rotate = int(page.rotation) % 360
    if rotate not in (0, 90, 180, 270):
        raise TemplateAssetError(f"background PDF page has an invalid rotation {rotate}")
    contents = page.get_contents()
    drawing = contents.get_data() if contents is not None else b""
    if len(drawing) > MAX_BACKGROUND_CONTENT_BYTES:
        raise TemplateAssetError("background PDF page is too complex (its drawing is over 16 MiB)")
    content = zlib.compress(drawing, 6)

    builder = _GraphBuilder()
    builder.nodes.append(())  # node 0: the form, filled in below
    parts: list[bytes | int] = [
        b"<< /Type /XObject /Subtype /Form /FormType 1 /BBox [%s %s %s %s] /Resources "
        % tuple(_number(v) for v in (x0, y0, x1, y1))
    ]
    resources = page.get("/Resources")
    if resources is None:
        parts.append(b"<< >>")
    else:
        builder.serialise(resources, parts)
    if "/Group" in page:
        parts.append(b" /Group ")
        builder.serialise(page["/Group"], parts)
    parts += [b" /Filter /FlateDecode /Length %d >>\nstream\n" % len(content), content, b"\nendstream"]
    builder.nodes[0] = _coalesce(parts)
    builder.drain()
    return PreparedBackground(EmbeddedGraph(tuple(builder.nodes)), (x0, y0, x1, y1), rotate)


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[tuple[bytes | int, ...]] = []
        self.index_of: dict[tuple[int, int], int] = {}
        self.pending: deque[tuple[int, PdfObject | None]] = deque()

    def serialise(self, obj: Any, parts: list[bytes | int]) -> None:
        if isinstance(obj, IndirectObject):
            key = (obj.idnum, obj.generation)
            index = self.index_of.get(key)
            if index is None:
                if len(self.nodes) >= MAX_BACKGROUND_OBJECTS:
                    raise TemplateAssetError("background PDF is too complex (too many objects)")
                index = self.index_of[key] = len(self.nodes)
                self.nodes.append(())
                self.pending.append((index, obj.get_object()))
            parts.append(index)
        elif isinstance(obj, StreamObject):
            # Keep the encoded bytes and their /Filter: images are copied, never re-encoded.
            raw = obj._data  # pypdf keeps a stream's bytes as read; there is no public accessor
            self._dictionary(obj, parts, skip=("/Length",))
            parts.append(b" /Length %d >>\nstream\n" % len(raw))
            parts.append(raw)
            parts.append(b"\nendstream")
        elif isinstance(obj, DictionaryObject):
            self._dictionary(obj, parts)
            parts.append(b" >>")
        elif isinstance(obj, ArrayObject):
            parts.append(b"[")
            for item in obj:
                parts.append(b" ")
                self.serialise(item, parts)
            parts.append(b" ]")
        elif obj is None:
            parts.append(b"null")
        else:
            out = io.BytesIO()
            obj.write_to_stream(out)
            parts.append(out.getvalue())

    def _dictionary(self, obj: DictionaryObject, parts: list[bytes | int], skip: tuple[str, ...] = ()) -> None:
        parts.append(b"<<")
        for key, value in obj.items():
            if key in skip or key in _DROPPED_KEYS:
                continue
            parts.append(b" ")
            NameObject(key).write_to_stream(out := io.BytesIO())
            parts.append(out.getvalue() + b" ")
            self.serialise(value, parts)

    def drain(self) -> None:
        while self.pending:
            index, obj = self.pending.popleft()
            parts: list[bytes | int] = []
            self.serialise(obj, parts)
            self.nodes[index] = _coalesce(parts)


def _coalesce(parts: list[bytes | int]) -> tuple[bytes | int, ...]:
    """Join neighbouring byte strings so a render does one join per object, not one per token."""
    merged: list[bytes | int] = []
    run: list[bytes] = []
    for part in parts:
        if isinstance(part, bytes):
            run.append(part)
            continue
        if run:
            merged.append(b"".join(run))
            run = []
        merged.append(part)
    if run:
        merged.append(b"".join(run))
    return tuple(merged)


def _number(value: float) -> bytes:
    return (b"%.4f" % value).rstrip(b"0").rstrip(b".") or b"0"
