"""Pure logic of shared/http.py: cursors, JSON body validation, error envelopes."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ConfigDict

from shared.http import (
    MAX_JSON_DEPTH,
    ApiError,
    CursorCodec,
    error_middleware,
    ok,
    parse_json_body,
    positive_int,
    read_json,
    service_context_middleware,
    validate_payload,
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str
    title: str
    minutes: int | None = None


def test_cursor_round_trips_for_the_same_list_tenant_and_filters():
    codec = CursorCodec("secret")
    token = codec.encode("courses", 1, {"user_id": 5}, 42)
    assert codec.decode(token, "courses", 1, {"user_id": 5}) == 42


@pytest.mark.parametrize(
    ("list_name", "tenant", "filters"),
    [("enrollments", 1, {"user_id": 5}), ("courses", 2, {"user_id": 5}), ("courses", 1, {"user_id": 6}),
     ("courses", 1, {})],
)
def test_cursor_from_another_list_tenant_or_filter_set_is_rejected(list_name, tenant, filters):
    codec = CursorCodec("secret")
    token = codec.encode("courses", 1, {"user_id": 5}, 42)
    with pytest.raises(ApiError) as err:
        codec.decode(token, list_name, tenant, filters)
    assert (err.value.status, err.value.code) == (400, "invalid_argument")


@pytest.mark.parametrize("token", ["", "abc", "!!!!", "NDI", "x" * 300])
def test_tampered_cursor_is_rejected(token):
    codec = CursorCodec("secret")
    good = codec.encode("courses", 1, {}, 42)
    with pytest.raises(ApiError):
        codec.decode(token or good[:-2] + "AA", "courses", 1, {})


def test_cursor_signed_with_another_secret_is_rejected():
    token = CursorCodec("one").encode("courses", 1, {}, 42)
    with pytest.raises(ApiError):
        CursorCodec("two").decode(token, "courses", 1, {})


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        ({}, "missing_field", "'slug'"),
        ({"slug": "  ", "title": "x"}, "missing_field", "'slug'"),
        ({"slug": "a", "title": None}, "missing_field", "'title'"),
        ({"slug": "a", "title": "b", "tenant_id": 3}, "invalid_argument", "Unknown field 'tenant_id'"),
        ({"slug": "a", "title": "b", "minutes": "lots"}, "invalid_argument", "'minutes'"),
        ([1, 2], "invalid_argument", "JSON object"),
        ({"slug": "a", "title": "x\u0000y"}, "invalid_argument", "'title' must not contain NUL"),
        ({"slug": "a", "title": "x\ud927y"}, "invalid_argument", "'title' is not valid Unicode"),
        ({"slug": "a", "title": "b", "meta": {"k": ["\u0000"]}}, "invalid_argument", "'meta.k[0]'"),
    ],
)
def test_payload_validation_names_the_field(payload, code, fragment):
    with pytest.raises(ApiError) as err:
        validate_payload(payload, Body)
    assert err.value.code == code
    assert fragment in err.value.message


async def _client(handler) -> TestClient:
    app = web.Application(middlewares=[service_context_middleware, error_middleware])
    app.router.add_post("/x", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def echo(request: web.Request) -> web.Response:
    body = await read_json(request, Body)
    return ok(request, body.model_dump())


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals /etc/passwd")


async def test_malformed_json_is_invalid_argument_in_the_envelope():
    client = await _client(echo)
    try:
        resp = await client.post("/x", data=b"{not json", headers={"Content-Type": "application/json"})
        body = await resp.json()
        assert resp.status == 400
        assert body["error"]["code"] == "invalid_argument"
        assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
    finally:
        await client.close()


async def test_non_json_content_type_is_415():
    client = await _client(echo)
    try:
        resp = await client.post("/x", data=b"slug=a", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status == 415
        assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    finally:
        await client.close()


async def test_unknown_exception_is_500_internal_without_a_stack_trace():
    client = await _client(boom)
    try:
        resp = await client.post("/x", json={})
        text = await resp.text()
        assert resp.status == 500
        assert json.loads(text)["error"] == {"code": "internal", "message": "Internal error.",
                                             "request_id": resp.headers["X-Request-Id"]}
        assert "passwd" not in text and "Traceback" not in text
    finally:
        await client.close()


async def test_success_envelope_has_data_cursor_and_request_id():
    client = await _client(echo)
    try:
        resp = await client.post("/x", json={"slug": "a", "title": "b"})
        body = await resp.json()
        assert resp.status == 200
        assert body == {"data": {"slug": "a", "title": "b", "minutes": None}, "next_cursor": None,
                        "request_id": resp.headers["X-Request-Id"]}
        assert body["request_id"].startswith("req_") and len(body["request_id"]) >= 28
    finally:
        await client.close()


async def test_unknown_route_is_not_found_and_wrong_method_is_405():
    client = await _client(echo)
    try:
        resp = await client.get("/nope")
        assert (resp.status, (await resp.json())["error"]["code"]) == (404, "not_found")
        resp = await client.get("/x")
        assert (resp.status, (await resp.json())["error"]["code"]) == (405, "method_not_allowed")
    finally:
        await client.close()


# --- hostile input (issue 15) ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", 1), ("42", 42), ("007", 7), ("9" * 18, int("9" * 18)),
    ("0", None), ("", None), (None, None), ("9" * 19, None), ("-1", None), ("+1", None), (" 1", None),
    ("1 ", None), ("1_000", None), ("²", None), ("١", None), ("١٢", None), ("１", None), ("1²", None), ("1.0", None),
])
def test_positive_int_takes_1_to_18_ascii_digits_only(raw, expected):
    assert positive_int(raw) == expected


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
                                 b'{"a":' + b"[" * 200 + b"]" * 200 + b"}"])
def test_deep_bodies_are_invalid_argument_not_a_recursion_error(raw):
    with pytest.raises(ApiError) as err:
        validate_payload(parse_json_body(raw), Body)
    assert (err.value.status, err.value.code) == (400, "invalid_argument")
    assert f"more than {MAX_JSON_DEPTH} levels" in err.value.message


def test_a_body_at_the_depth_limit_reaches_validation():
    payload = parse_json_body(b'{"slug":"a","title":"b","x":' + b"[" * (MAX_JSON_DEPTH - 1)
                              + b"]" * (MAX_JSON_DEPTH - 1) + b"}")
    with pytest.raises(ApiError) as err:
        validate_payload(payload, Body)
    assert err.value.message == "Unknown field 'x'."


def test_a_deep_body_is_refused_before_the_json_decoder_recurses(monkeypatch):
    """json.loads's RecursionError corrupts CPython 3.11's recursion accounting (a later compile() raises
    "AST constructor recursion depth mismatch"): deep bodies must never reach it."""
    import shared.http

    def decoder_must_not_run(_raw):
        raise AssertionError("json.loads reached with a body nested too deep")

    monkeypatch.setattr(shared.http.json, "loads", decoder_must_not_run)
    for raw in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b"[" * 5000,
                b'[{"s":"]]]]"},' + b"[" * 40 + b"]" * 40 + b"]"):
        with pytest.raises(ApiError) as err:
            parse_json_body(raw)
        assert f"more than {MAX_JSON_DEPTH} levels" in err.value.message


def test_brackets_inside_strings_do_not_count_as_nesting():
    body = b'{"slug":"' + b"[" * 100 + b'","title":"' + b"{" * 100 + b'"}'
    assert parse_json_body(body) == {"slug": "[" * 100, "title": "{" * 100}
