"""The admin UI's pure rules: flash messages, the failure limiter, sign-in form tokens, forms, redirects."""

from __future__ import annotations

from datetime import date

import pytest

from services.gateway.domain import FailureLimiter as SignInLimiter
from services.gateway.ui import forms
from services.gateway.ui.pages_directory import _safe_next
from services.gateway.ui.security import LoginTokens, Session, tokens_match


def test_flash_messages_are_shown_once() -> None:
    session = Session(id="lss_x", csrf_token="t", expires_at=0.0)
    session.flash("success", "Saved.")
    assert [f.text for f in session.take_flashes()] == ["Saved."]
    assert session.take_flashes() == []


def test_the_limiter_refuses_after_the_allowed_failures_until_the_window_passes() -> None:
    limiter = SignInLimiter(max_failures=3, window=100)
    for t in (0.0, 1.0, 2.0):
        assert limiter.retry_after("10.0.0.1", t) is None
        limiter.failed("10.0.0.1", t)
    assert limiter.retry_after("10.0.0.1", 3.0) == pytest.approx(97.0)
    assert limiter.retry_after("10.0.0.1", 100.5) is None  # the first failure left the window


def test_the_limiter_counts_each_client_apart() -> None:
    limiter = SignInLimiter(max_failures=1, window=100)
    limiter.failed("10.0.0.1", 0.0)
    assert limiter.retry_after("10.0.0.1", 1.0) is not None
    assert limiter.retry_after("10.0.0.2", 1.0) is None


def test_a_successful_sign_in_clears_the_clients_failures() -> None:
    limiter = SignInLimiter(max_failures=2, window=100)
    limiter.failed("10.0.0.1", 0.0)
    limiter.succeeded("10.0.0.1")
    limiter.failed("10.0.0.1", 1.0)
    assert limiter.retry_after("10.0.0.1", 2.0) is None


def test_sign_in_form_tokens_belong_to_their_nonce() -> None:
    tokens = LoginTokens(b"admin-token")
    nonce = tokens.new_nonce()
    assert tokens.valid(nonce, tokens.token_for(nonce))
    assert not tokens.valid(tokens.new_nonce(), tokens.token_for(nonce))
    assert not tokens.valid(None, tokens.token_for(nonce))
    assert not tokens.valid(nonce, None)
    assert not LoginTokens(b"another-token").valid(nonce, tokens.token_for(nonce))


def test_token_comparison_needs_an_exact_match() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match("abc", None)
    assert not tokens_match("abc", "")


@pytest.mark.parametrize("target", ["https://evil.example/admin", "//evil.example/admin", "/admin\\@evil",
                                    "/admin/api/v1/tenants", "/admin/login", "/api/v1/learn/courses", "", None])
def test_after_sign_in_only_the_uis_own_pages_are_followed(target: str | None) -> None:
    assert _safe_next(target) == "/admin"


def test_after_sign_in_the_requested_ui_page_is_followed() -> None:
    assert _safe_next("/admin/learn/courses?tenant=acme") == "/admin/learn/courses?tenant=acme"


def test_blank_form_values_are_absent() -> None:
    assert forms.text({"a": "  "}, "a") is None
    assert forms.text({}, "a") is None
    assert forms.text({"a": " x "}, "a") == "x"


def test_a_required_blank_value_names_the_field() -> None:
    with pytest.raises(forms.FormError, match="Title is required"):
        forms.required({"title": " "}, "title", "Title")


def test_whole_numbers_are_parsed_and_checked() -> None:
    assert forms.integer({"n": "12"}, "n", "Minutes") == 12
    assert forms.integer({"n": ""}, "n", "Minutes") is None
    with pytest.raises(forms.FormError, match="Minutes must be a whole number"):
        forms.integer({"n": "1.5"}, "n", "Minutes")
    with pytest.raises(forms.FormError, match="at least 1"):
        forms.integer({"n": "0"}, "n", "Months", minimum=1)


def test_decimal_numbers_keep_their_fraction() -> None:
    assert forms.number({"h": "2.5"}, "h", "Hours") == 2.5
    assert forms.number({"h": "3"}, "h", "Hours") == 3
    with pytest.raises(forms.FormError):
        forms.number({"h": "nan"}, "h", "Hours")
    with pytest.raises(forms.FormError):
        forms.number({"h": "two"}, "h", "Hours")


def test_an_expiry_date_means_the_end_of_that_day_in_utc() -> None:
    assert forms.end_of_day_utc("2027-01-31", today=date(2026, 6, 1)) == "2027-01-31T23:59:59Z"
    assert forms.end_of_day_utc("", today=date(2026, 6, 1)) is None
    with pytest.raises(forms.FormError, match="past"):
        forms.end_of_day_utc("2026-05-31", today=date(2026, 6, 1))
    with pytest.raises(forms.FormError, match="date"):
        forms.end_of_day_utc("31/01/2027", today=date(2026, 6, 1))


def test_the_sco_picker_value_names_a_package_and_a_sco() -> None:
    assert forms.sco_choice("12|sco-1|part") == (12, "sco-1|part")
    assert forms.sco_choice("") is None
    with pytest.raises(forms.FormError):
        forms.sco_choice("twelve|sco")
    with pytest.raises(forms.FormError):
        forms.sco_choice("|sco-1")
    assert forms.sco_choice("12|") == (12, None)  # the package's first SCO (sco_identifier is optional)


def test_an_update_sends_only_what_changed() -> None:
    assert forms.changed({"title": "A", "summary": None}, {"title": "A", "summary": "B"}) == {"summary": "B"}


def test_scos_nest_under_their_parent_sco_in_manifest_order() -> None:
    from services.gateway.ui.pages_scorm import sco_tree

    scos = [
        {"identifier": "b", "position": 2, "parent_identifier": "a"},
        {"identifier": "a", "position": 1, "parent_identifier": None},
        {"identifier": "c", "position": 3, "parent_identifier": "org-item"},  # its parent is not a SCO
    ]
    tree = sco_tree(scos)
    assert [n["identifier"] for n in tree] == ["a", "c"]
    assert [n["identifier"] for n in tree[0]["children"]] == ["b"]


def test_a_template_form_becomes_the_admin_api_body() -> None:
    from services.gateway.ui.pages_templates import TemplateForm

    form = TemplateForm()
    form.fields = {"name": " Brand ", "title_text": "Well done", "orientation": "portrait", "page_size": "Letter",
                   "body_text": " for {course_title} ", "primary_color": "#112233", "accent_color": "#445566",
                   "signatory_name": " ", "is_default": "on", "remove_background_pdf": "on"}
    form.files = {"logo": b"\x89PNG..."}
    body = form.payload()
    assert body["name"] == "Brand" and body["body_text"] == "for {course_title}"
    assert body["is_default"] is True and body["signatory_name"] is None
    assert body["logo"] == "data:image/png;base64,iVBORy4uLg=="
    assert body["background_pdf"] is None  # ticked "remove"


def test_a_template_preview_needs_no_name_but_a_saved_template_does() -> None:
    from services.gateway.ui.pages_templates import TemplateForm

    form = TemplateForm()
    form.fields = {"title_text": "Hi"}
    assert form.payload(preview=True)["name"] == "Preview"
    with pytest.raises(forms.FormError, match="Name is required"):
        form.payload()
