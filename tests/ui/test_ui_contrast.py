"""The admin UI's colour pairs meet WCAG 2.1 AA: 4.5:1 for text, 3:1 for large text and control borders."""

from __future__ import annotations

import re

import pytest

from services.gateway.ui.views import HERE

CSS = (HERE / "static" / "admin.css").read_text()
PALETTE = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", CSS))


def luminance(hex_colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def colour(name: str) -> str:
    return PALETTE[name] if not name.startswith("#") else name


TEXT_PAIRS = [
    ("ink", "paper"), ("ink", "canvas"), ("ink-soft", "paper"), ("ink-soft", "canvas"), ("brand", "paper"),
    ("brand", "canvas"), ("brand-dark", "brand-tint"), ("#ffffff", "brand"), ("#ffffff", "brand-dark"),
    ("#ffffff", "danger"), ("danger", "danger-tint"), ("ok", "ok-tint"), ("warn", "warn-tint"),
    ("#1a2f66", "brand-tint"), ("#1a3a8f", "brand-tint"), ("#ffffff", "top"), ("#dbe4f5", "#16264a"),
    ("#b9c5dc", "top"), ("#bcd0ff", "top"), ("#2d3748", "#eceff4"), ("ink-soft", "#eef1f6"),
]


@pytest.mark.parametrize(("text", "background"), TEXT_PAIRS)
def test_text_colours_have_aa_contrast(text: str, background: str) -> None:
    assert contrast(colour(text), colour(background)) >= 4.5


@pytest.mark.parametrize(("border", "background"), [("line-strong", "paper"), ("brand", "paper")])
def test_control_borders_have_aa_non_text_contrast(border: str, background: str) -> None:
    assert contrast(colour(border), colour(background)) >= 3.0


def test_the_contrast_formula_matches_wcags_reference_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
