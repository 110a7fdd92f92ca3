"""Certificate PDF renderer: what a certificate shows, how it is built, and what templates may hold."""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject
from reportlab.graphics.barcode import qrencoder
from reportlab.lib.pagesizes import A4, LETTER, landscape, portrait
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from services.certificates.pdf.assets import (
    TemplateAssetError,
    prepare_background,
    validate_background_pdf,
    validate_color,
    validate_logo,
)
from services.certificates.pdf.qr import LEVEL_M, encode_qr
from services.certificates.pdf.render import CertificateRenderer
from services.certificates.pdf.spec import BUILTIN_DEFAULT_TEMPLATE, CertificateData, TemplateSpec, fill_placeholders
from services.certificates.pdf.text import SERIF_BOLD, fit_text, register_fonts, text_width

VID = "k3Jd9QpLx2VbN7mRt5YwZc8HfGa1SeUo4Ti6PqXr"
URL = f"https://acme.learn.mobieus.io/verify/{VID}"


@pytest.fixture(scope="module")
def renderer() -> CertificateRenderer:
    return CertificateRenderer()


def certificate(**changes: object) -> CertificateData:
    cert = CertificateData(
        recipient_name="Zoë Łukasiewicz-Ångström",
        course_title="Intro to Mobieus",
        credit_hours=Decimal("2.50"),
        credit_kind="CEU",
        issued_at=datetime(2026, 6, 2, 10, 0, tzinfo=UTC),
        expires_at=datetime(2028, 6, 2, tzinfo=UTC),
        verification_id=VID,
        verification_url=URL,
    )
    return replace(cert, **changes)


def template(**changes: object) -> TemplateSpec:
    base = replace(
        BUILTIN_DEFAULT_TEMPLATE,
        id=7,
        version=1,
        issuer_name="Acme Academy",
        signatory_name="Dr. Nguyễn Thị Minh Khai",
        signatory_title="Director of Learning",
    )
    return replace(base, **changes)


def png(width: int = 240, height: int = 80, mode: str = "RGBA", noise: bool = False) -> bytes:
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new(mode, (width, height), (0, 0, 0, 0) if mode == "RGBA" else "white")
        ImageDraw.Draw(image).ellipse((4, 4, height - 4, height - 4), fill=(200, 80, 40))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pdf(pages: int = 1, text: str = "Background artwork", size: tuple[float, float] = landscape(A4)) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=size)
    for number in range(pages):
        canvas.setFillColorRGB(0.9, 0.95, 1)
        canvas.rect(0, 0, size[0], size[1], stroke=0, fill=1)
        canvas.setFillColorRGB(0.2, 0.3, 0.6)
        canvas.setFont("Helvetica", 14)
        canvas.drawString(40, 40, f"{text} {number + 1}" if pages > 1 else text)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def text_of(document: bytes) -> str:
    reader = PdfReader(io.BytesIO(document))
    return unicodedata.normalize("NFC", "\n".join(page.extract_text() for page in reader.pages))


def flat(text: str) -> str:
    return " ".join(text.split())


# -- what the certificate shows ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Zoë Łukasiewicz-Ångström", "Nguyễn Thị Minh Khai", "Ægir Þórsson-Øvergård", "Şükrü Çağlayan"]
)
def test_recipient_names_with_latin_extended_letters_are_in_the_text(renderer, name):
    document = renderer.render(template(), certificate(recipient_name=name))

    assert unicodedata.normalize("NFC", name) in text_of(document)


def test_the_font_is_an_embedded_truetype_subset(renderer):
    reader = PdfReader(io.BytesIO(renderer.render(template(), certificate())))
    fonts = reader.pages[0]["/Resources"]["/Font"]
    embedded = [
        font.get_object()
        for font in fonts.values()
        if font.get_object()["/Subtype"] == "/TrueType"
        and "/FontFile2" in font.get_object()["/FontDescriptor"].get_object()
    ]

    assert any("DejaVuSerif-Bold" in str(font["/BaseFont"]) for font in embedded)


def test_course_title_credit_and_dates_are_in_the_text(renderer):
    text = flat(text_of(renderer.render(template(), certificate())))

    assert "Intro to Mobieus" in text
    assert "2.5 CREDIT HOURS · CEU" in text
    assert "2 June 2026" in text
    assert "VALID UNTIL 2 June 2028" in text or "2 June 2028" in text


def test_a_certificate_without_expiry_shows_no_expiry(renderer):
    text = text_of(renderer.render(template(), certificate(expires_at=None)))

    assert "VALID UNTIL" not in text
    assert "2 June 2026" in text


def test_a_course_without_credit_shows_no_credit_line(renderer):
    text = text_of(renderer.render(template(), certificate(credit_hours=None, credit_kind=None)))

    assert "CREDIT HOURS" not in text


def test_verification_id_and_url_are_in_the_text(renderer):
    text = flat(text_of(renderer.render(template(), certificate())))

    assert VID in text
    assert URL in text


def test_the_qr_code_area_links_to_the_verification_url(renderer):
    page = PdfReader(io.BytesIO(renderer.render(template(), certificate()))).pages[0]
    uris = [annotation.get_object()["/A"]["/URI"] for annotation in page.get("/Annots", [])]

    assert URL in uris


def test_title_body_and_signatory_come_from_the_template(renderer):
    custom = template(
        title_text="Certificate of Achievement",
        body_text="for completing {course_title} on {issued_on}",
        signatory_name="Grace Hopper",
        signatory_title="Rear Admiral",
    )

    text = flat(text_of(renderer.render(custom, certificate())))

    assert "Certificate of Achievement" in text
    assert "for completing Intro to Mobieus on 2 June 2026" in text
    assert "Grace Hopper" in text
    assert "REAR ADMIRAL" in text


def test_metadata_names_the_certificate_its_issuer_and_recipient(renderer):
    metadata = PdfReader(io.BytesIO(renderer.render(template(), certificate()))).metadata

    assert metadata.title == "Certificate of Completion — Zoë Łukasiewicz-Ångström"
    assert metadata.author == "Acme Academy"
    assert metadata.subject == "Intro to Mobieus — awarded to Zoë Łukasiewicz-Ångström"
    assert metadata.creation_date == datetime(2026, 6, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("orientation", "page_size", "expected"),
    [
        ("landscape", "A4", landscape(A4)),
        ("portrait", "A4", portrait(A4)),
        ("landscape", "Letter", landscape(LETTER)),
        ("portrait", "Letter", portrait(LETTER)),
    ],
)
def test_page_size_and_orientation_follow_the_template(renderer, orientation, page_size, expected):
    document = renderer.render(template(orientation=orientation, page_size=page_size), certificate())

    box = PdfReader(io.BytesIO(document)).pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("name", ["山田太郎", "محمد عبد الله", "Ἀριστοτέλης 山田 Zoë"])
def test_names_in_scripts_the_serif_font_lacks_still_render(renderer, name):
    document = renderer.render(template(), certificate(recipient_name=name))

    reader = PdfReader(io.BytesIO(document))
    assert len(reader.pages) == 1
    assert VID in text_of(document)


@pytest.mark.parametrize("name", ["محمد عبد الله", "דוד כהן"])
def test_a_right_to_left_name_is_drawn_right_to_left_with_a_face_that_has_its_letters(renderer, name):
    text = text_of(renderer.render(template(), certificate(recipient_name=name)))

    assert name in text.splitlines()


def test_a_revoked_certificate_says_so_with_date_and_reason(renderer):
    revoked = certificate(revoked=True, revoked_at=datetime(2026, 7, 1, tzinfo=UTC), revoked_reason="Issued in error")

    text = flat(text_of(renderer.render(template(), revoked)))

    assert "REVOKED on 1 July 2026 — reason: Issued in error" in text


def test_a_valid_certificate_carries_no_revoked_mark(renderer):
    assert "REVOKED" not in text_of(renderer.render(template(), certificate()))


@pytest.mark.parametrize(
    "changes",
    [
        {"recipient_name": "Maximilian Alexander Bartholomew Fitzgerald-Montgomery-Wellington " * 3},
        {"recipient_name": "X" * 400},
        {"course_title": "Advanced Distributed Systems and Idempotent Consumers in Practice " * 8},
        {"revoked": True, "revoked_reason": "a very long explanation " * 30},
        {"course_title": "runaway " * 10_000},
    ],
)
def test_very_long_text_still_renders_one_page(renderer, changes):
    for orientation in ("landscape", "portrait"):
        document = renderer.render(template(orientation=orientation), certificate(**changes))

        assert len(PdfReader(io.BytesIO(document)).pages) == 1
        assert VID in text_of(document)


def test_a_verification_url_too_long_for_a_qr_code_still_gives_a_certificate(renderer):
    url = "https://learn.example/verify/" + "x" * 3000

    text = flat(text_of(renderer.render(template(), certificate(verification_url=url))))

    assert "https://learn.example/verify/xxx" in text
    assert VID in text


def test_fitted_text_never_exceeds_its_width():
    register_fonts()
    for text in ["Zoë", "A much longer recipient name that will not fit " * 4, "W" * 300]:
        fitted = fit_text(text, SERIF_BOLD, 40, 16, 500, max_lines=2)

        assert 1 <= len(fitted.lines) <= 2
        assert all(text_width(line, fitted.font, fitted.size) <= 500 for line in fitted.lines)
        assert 16 <= fitted.size <= 40


def test_text_that_cannot_fit_ends_in_an_ellipsis():
    register_fonts()

    fitted = fit_text("W" * 300, SERIF_BOLD, 40, 16, 500, max_lines=2)

    assert fitted.lines[-1].endswith("…")


def test_a_short_name_keeps_the_largest_size_on_one_line():
    register_fonts()

    assert fit_text("Zoë", SERIF_BOLD, 40, 16, 500, max_lines=2).lines == ("Zoë",)
    assert fit_text("Zoë", SERIF_BOLD, 40, 16, 500, max_lines=2).size == 40


# -- template assets in the page ---------------------------------------------------------------


def test_a_background_pdf_is_drawn_under_the_text(renderer):
    document = renderer.render(template(background_pdf=pdf(text="Acme background artwork")), certificate())

    reader = PdfReader(io.BytesIO(document))
    assert len(reader.pages) == 1
    assert "Acme background artwork" in text_of(document)
    stream = reader.pages[0].get_contents().get_data()
    assert stream.index(b"/FormXob.Background Do") < stream.index(b"Tj")


def test_background_images_are_copied_with_their_original_encoding(renderer):
    photo = io.BytesIO()
    Image.new("RGB", (320, 200), (240, 220, 180)).save(photo, "JPEG")
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=landscape(A4))
    canvas.drawImage(ImageReader(io.BytesIO(photo.getvalue())), 0, 0, *landscape(A4))
    canvas.showPage()
    canvas.save()

    source = PdfReader(io.BytesIO(out.getvalue())).pages[0]["/Resources"]["/XObject"]
    (original,) = [xobject.get_object() for xobject in source.values()]

    document = renderer.render(template(background_pdf=out.getvalue()), certificate())

    form = PdfReader(io.BytesIO(document)).pages[0]["/Resources"]["/XObject"]["/FormXob.Background"]
    (copied,) = [xobject.get_object() for xobject in form["/Resources"]["/XObject"].values()]
    assert "/DCTDecode" in copied["/Filter"]
    assert copied["/Filter"] == original["/Filter"]
    assert copied._data == original._data  # the encoded bytes, not a re-encoding


def test_a_rotated_background_is_turned_upright_to_cover_the_page():
    prepared = prepare_background(pdf(size=portrait(A4)))
    rotated = PdfWriter(clone_from=io.BytesIO(pdf(size=portrait(A4))))
    rotated.pages[0].rotate(90)
    out = io.BytesIO()
    rotated.write(out)
    turned = prepare_background(out.getvalue())

    width, height = landscape(A4)
    a, b, c, d, e, f = turned.cover_matrix(width, height)
    corners = [(a * x + c * y + e, b * x + d * y + f) for x in (0, A4[0]) for y in (0, A4[1])]

    assert prepared.display_size == pytest.approx(portrait(A4))
    assert turned.display_size == pytest.approx(landscape(A4))
    assert min(x for x, _ in corners) == pytest.approx(0, abs=0.01)
    assert max(x for x, _ in corners) == pytest.approx(width, abs=0.01)
    assert min(y for _, y in corners) == pytest.approx(0, abs=0.01)
    assert max(y for _, y in corners) == pytest.approx(height, abs=0.01)


def test_a_logo_is_embedded_as_an_image_with_its_transparency(renderer):
    document = renderer.render(template(logo_png=png()), certificate())

    xobjects = PdfReader(io.BytesIO(document)).pages[0]["/Resources"]["/XObject"]
    logo = xobjects["/FormXob.Logo"].get_object()
    assert logo["/Subtype"] == "/Image"
    assert "/SMask" in logo


def test_an_unusable_logo_that_slipped_past_validation_is_left_out(renderer):
    document = renderer.render(template(id=99, logo_png=b"\x89PNG\r\n\x1a\nbroken"), certificate())

    assert VID in text_of(document)


def test_a_template_version_reused_with_new_assets_is_not_served_stale(renderer):
    first = renderer.render(template(id=11, logo_png=png(240, 80)), certificate())
    second = renderer.render(template(id=11, logo_png=png(80, 80)), certificate())

    assert first != second


def test_the_text_only_render_has_the_text_and_no_graphics(renderer):
    full_template = template(logo_png=png(), background_pdf=pdf())
    document = renderer.render_text_only(full_template, certificate())

    page = PdfReader(io.BytesIO(document)).pages[0]
    assert "/XObject" not in page["/Resources"]
    assert "Zoë Łukasiewicz-Ångström" in text_of(document)


# -- determinism and concurrency ---------------------------------------------------------------


def test_the_same_inputs_give_the_same_bytes(renderer):
    assert renderer.render(template(), certificate()) == renderer.render(template(), certificate())


@pytest.mark.parametrize(
    "changes",
    [
        {"primary_color": "#7a1f3d"},
        {"title_text": "Certificate of Achievement"},
        {"orientation": "portrait"},
        {"logo_png": png()},
    ],
)
def test_a_template_change_changes_the_document_hash(renderer, changes):
    before = hashlib.sha256(renderer.render(template(), certificate())).hexdigest()
    after = hashlib.sha256(renderer.render(template(version=2, **changes), certificate())).hexdigest()

    assert before != after


def test_renders_from_many_threads_match_sequential_renders(renderer):
    work = [
        (
            template(id=20 + i % 3, logo_png=png(200 + i % 3, 80), background_pdf=pdf()),
            certificate(recipient_name=f"Learner {i}", verification_id=f"{i:040d}", verification_url=f"{URL}{i}"),
        )
        for i in range(12)
    ]
    sequential = [CertificateRenderer().render(t, c) for t, c in work]

    shared = CertificateRenderer()
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda job: shared.render(*job), work))

    assert concurrent == sequential


def test_the_builtin_default_template_renders():
    assert BUILTIN_DEFAULT_TEMPLATE.id == 0
    assert BUILTIN_DEFAULT_TEMPLATE.version == 1

    document = CertificateRenderer().render(BUILTIN_DEFAULT_TEMPLATE, certificate())

    assert "Certificate of Completion" in text_of(document)


# -- QR code -----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [10, 77, 84, 85, 150, 300])
@pytest.mark.parametrize("mask", range(8))
def test_qr_matrix_matches_reportlabs_reference_encoder(length, mask):
    data = (URL * 10)[:length]
    reference = qrencoder.QRCode(None, LEVEL_M)
    reference.addData(data)
    reference.version = reference.calculate_version()
    reference.makeImpl(False, mask)

    matrix = encode_qr(data.encode(), mask=mask)

    assert matrix.size == reference.getModuleCount()
    assert [[matrix.is_dark(r, c) for c in range(matrix.size)] for r in range(matrix.size)] == reference.modules


def test_qr_runs_cover_exactly_the_dark_modules():
    matrix = encode_qr(URL.encode())
    dark = {(row, col + i) for row, col, length in matrix.dark_runs() for i in range(length)}

    assert dark == {(r, c) for r in range(matrix.size) for c in range(matrix.size) if matrix.is_dark(r, c)}


# -- placeholders ------------------------------------------------------------------------------


def test_placeholders_are_filled_from_the_certificate():
    text = "{recipient_name} / {course_title} / {credit_hours} {credit_kind} / {issued_on} / {expires_on}"

    assert fill_placeholders(text, certificate()) == (
        "Zoë Łukasiewicz-Ångström / Intro to Mobieus / 2.5 CEU / 2 June 2026 / 2 June 2028"
    )


def test_missing_optional_values_fill_as_empty():
    cert = certificate(credit_hours=None, credit_kind=None, expires_at=None)

    assert fill_placeholders("[{credit_hours}][{credit_kind}][{expires_on}]", cert) == "[][][]"


def test_unknown_placeholders_stay_verbatim():
    assert fill_placeholders("{unknown} {0} {} {RECIPIENT_NAME}", certificate()) == (
        "{unknown} {0} {} {RECIPIENT_NAME}"
    )


@pytest.mark.parametrize(
    "text",
    ["{recipient_name.__class__}", "{recipient_name.__class__.__mro__}", "{course_title!r}", "{0.__dict__}"],
)
def test_format_style_injection_is_left_as_text(text):
    assert fill_placeholders(text, certificate()) == text


def test_a_value_that_looks_like_a_placeholder_is_not_expanded_again():
    cert = certificate(recipient_name="{course_title}")

    assert fill_placeholders("{recipient_name}", cert) == "{course_title}"


def test_credit_hours_are_written_without_trailing_zeros():
    assert fill_placeholders("{credit_hours}", certificate(credit_hours=Decimal("10.00"))) == "10"
    assert fill_placeholders("{credit_hours}", certificate(credit_hours=1.25)) == "1.25"


# -- validation --------------------------------------------------------------------------------


def test_a_png_logo_is_accepted():
    validate_logo(png())


def test_a_logo_that_is_not_a_png_is_rejected():
    out = io.BytesIO()
    Image.new("RGB", (100, 100), "red").save(out, "JPEG")

    with pytest.raises(TemplateAssetError, match="PNG"):
        validate_logo(out.getvalue())


def test_a_logo_over_one_mebibyte_is_rejected():
    big = png(700, 700, noise=True)
    assert len(big) > 1024 * 1024

    with pytest.raises(TemplateAssetError, match="1 MiB"):
        validate_logo(big)


def test_a_truncated_png_is_rejected():
    with pytest.raises(TemplateAssetError):
        validate_logo(png(200, 200, noise=True)[:5000])


@pytest.mark.parametrize(("width", "height"), [(8, 8), (5000, 100), (2000, 40)])
def test_a_logo_with_insane_dimensions_is_rejected(width, height):
    with pytest.raises(TemplateAssetError, match=f"{width}x{height}"):
        validate_logo(png(width, height, mode="RGB"))


def test_a_one_page_background_pdf_is_accepted():
    validate_background_pdf(pdf())


def test_a_multi_page_background_pdf_is_rejected():
    with pytest.raises(TemplateAssetError, match="exactly one page"):
        validate_background_pdf(pdf(pages=2))


@pytest.mark.parametrize("data", [b"not a pdf at all", b"%PDF-1.7\n" + os.urandom(2000), pdf()[:300]])
def test_a_corrupt_background_pdf_is_rejected(data):
    with pytest.raises(TemplateAssetError):
        validate_background_pdf(data)


def test_a_background_whose_drawing_inflates_past_16_mib_is_rejected():
    writer = PdfWriter()
    page = writer.add_blank_page(600, 400)
    drawing = DecodedStreamObject()
    drawing.set_data(b"0 0 m 1 1 l S\n" * 1_300_000)
    page.replace_contents(drawing.flate_encode())
    out = io.BytesIO()
    writer.write(out)
    assert len(out.getvalue()) < 100_000

    with pytest.raises(TemplateAssetError, match="too complex"):
        validate_background_pdf(out.getvalue())


def test_an_encrypted_background_pdf_is_rejected():
    writer = PdfWriter(clone_from=io.BytesIO(pdf()))
    writer.encrypt(user_password="secret", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)

    with pytest.raises(TemplateAssetError, match="encrypted"):
        validate_background_pdf(out.getvalue())


@pytest.mark.parametrize("value", ["#1f3a5f", "#ABCDEF", "#000000"])
def test_hex_colours_are_accepted(value):
    validate_color(value)


@pytest.mark.parametrize("value", ["red", "#12345", "#1234567", "#12345g", "1f3a5f", "#1f3a5f\n", "", "#fff"])
def test_anything_but_hash_and_six_hex_digits_is_rejected(value):
    with pytest.raises(TemplateAssetError):
        validate_color(value)
