"""The OpenAPI document declares Idempotency-Key, its 409/422 and Idempotent-Replayed on every public write."""

from __future__ import annotations

from services.gateway.openapi import build_document
from services.gateway.routes import PUBLIC_ROUTES


def test_every_public_write_documents_the_idempotency_key():
    document = build_document()
    writes = [r for r in PUBLIC_ROUTES if r.method in ("POST", "DELETE")]
    assert len(writes) == 15
    for route in writes:
        op = document["paths"][route.path.replace("+}", "}")][route.method.lower()]
        (header,) = [p for p in op["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        assert header["name"] == "Idempotency-Key" and header["required"] is False
        assert header["schema"]["maxLength"] == 255
        assert "idempotency_key_in_flight" in op["responses"]["409"]["description"]
        assert "idempotency_key_reused" in op["responses"]["422"]["description"]
        successes = [code for code in op["responses"] if code.startswith("2")]
        assert successes and all("Idempotent-Replayed" in op["responses"][c]["headers"] for c in successes)
    for route in PUBLIC_ROUTES:
        if route.method == "GET":
            op = document["paths"][route.path.replace("+}", "}")]["get"]
            assert "409" not in op["responses"] and all(p["in"] != "header" for p in op["parameters"])
